"""Every zoo model placed and simulated on WSE-2 and WSE-3, layer-pipelined where it fits (weight
streaming otherwise: the compiler's auto mode, the row says which), each in a fresh process.

    python benchmarks/wafer_zoo.py [--seq 2048] [--batch 4] [--targets wse2,wse3] [--models a,b,...]

--models re-runs only those models' rows: the others are kept from the last results, each row with
the command and machine that measured it.

Writes benchmarks/results/wafer_zoo.md and .json: whether the model fits, and if it does its
occupancy, simulated time and throughput, MFU, the simulated time over the roofline, and the
wafer stage's own compile time (lower, place, route, simulate) and the process's peak RSS.
The simulated figures rest on the assumptions of waferscale/backends/assumptions.py.
"""

from __future__ import annotations

import results_io  # benchmarks/ is on sys.path when a script here runs
from results_io import command, compile_report, merged_rows, write, zoo_on_wafer_args


def one(model: str, target: str, seq: int, batch: int) -> dict:
    rep, error = compile_report(model, "--seq", str(seq), "--batch", str(batch), "--target", target)
    row = {"model": model, "target": target, "seq": seq, "batch": batch}
    if error:
        return row | {"fits": False, "error": error}
    t, pl, c = rep["time"], rep["placement"], rep["compile"]
    return row | {
        "fits": True, "mode": rep["mode"], "kernels": pl["kernels"], "occupancy": round(pl["occupancy"], 4),
        "cycles": t["cycles"], "ms": round(1e3 * t["seconds"], 3), "tokens_per_s": round(t["tokens_per_s"]),
        "steady_tokens_per_s": round(t["steady_tokens_per_s"]), "mfu": round(t["mfu"], 4),
        "over_roofline": round(t["cycles"] / t["roofline_cycles"], 2),
        "slowest_over_mean": round(pl["slowest_stage_over_mean"], 2), "mean_hops": round(pl["mean_hops"], 1),
        "wafer_stage_s": round(c["wafer_seconds"], 2), "compile_s": round(c["seconds"], 2),
        "peak_rss_mb": round(c["peak_rss_bytes"] / 2**20, 1),
    }


def main() -> None:
    from waferscale.frontend.zoo import ZOO

    a = zoo_on_wafer_args(__doc__)
    rows = []
    for m in a.models.split(","):
        for target in a.targets.split(","):
            r = one(m, target, min(a.seq, ZOO[m].context), a.batch)
            rows.append(r)
            if r["fits"]:
                print(f"{m:<18} {target} ({r['mode']}): {r['ms']:8.3f} ms, {r['tokens_per_s'] / 1e6:7.3f} M tok/s, MFU "
                      f"{100 * r['mfu']:5.1f}%, occupancy {100 * r['occupancy']:5.1f}%, wafer stage "
                      f"{r['wafer_stage_s']:.2f} s", flush=True)
            else:
                print(f"{m:<18} {target}: does not fit ({r['error'][:100]}...)", flush=True)
    cmd, machine = command(), results_io.machine()
    rows, commands = merged_rows("wafer_zoo", rows, list(ZOO), cmd, machine)
    lines = [f"# The zoo on the wafer (layer-pipelined where it fits, else weight streaming; batch {a.batch}, f16)", "",
             "Commands: " + "; ".join(commands) + ".", "",
             "Simulated figures (tile-level model; its assumed figures are in waferscale/backends/assumptions.py, "
             "its calibration in "
             "benchmarks/results/hardware_fidelity.md). tokens/s is for the whole batch with pipeline fill and drain; "
             "steady = one sample per slowest stage. x roofline = simulated cycles / program roofline. "
             "wafer s = lower + place + route + simulate; compile s and peak RSS are the whole `wafer compile`.", "",
             "| model | target | mode | kernels | occupancy | ms | M tokens/s | steady M tokens/s | MFU "
             "| x roofline | slowest/mean stage | wafer s | compile s | peak RSS MiB |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["fits"]:
            mode = r.get("mode", "layer-pipelined")  # rows from before the mode column all fit pipelined
            lines.append(f"| {r['model']} | {r['target']} | {mode} | {r['kernels']} | {100 * r['occupancy']:.1f}% "
                         f"| {r['ms']:.3f} | {r['tokens_per_s'] / 1e6:.3f} | {r['steady_tokens_per_s'] / 1e6:.3f} "
                         f"| {100 * r['mfu']:.1f}% | {r['over_roofline']:.2f} | {r['slowest_over_mean']:.2f} "
                         f"| {r['wafer_stage_s']:.2f} | {r['compile_s']:.2f} | {r['peak_rss_mb']:.0f} |")
        else:
            lines.append(f"| {r['model']} | {r['target']} | does not fit | | | | | | | | | | | |")
    misfits = [r for r in rows if not r["fits"]]
    if misfits:
        lines += ["", "Why the others do not fit (the compiler's own message):", ""]
        lines += [f"- {r['model']} on {r['target']}: {r['error']}" for r in misfits]
    write("wafer_zoo", {"command": cmd, "machine": machine, "rows": rows}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
