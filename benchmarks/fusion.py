"""What the ``fuse`` pass is worth: every zoo model compiled with the default wafer pipeline and
with the same pipeline less ``fuse``, both layer-pipelined, each compile in a fresh process.

    python benchmarks/fusion.py [--seq 2048] [--batch 4] [--targets wse2,wse3] [--models a,b,...]

Writes benchmarks/results/fusion.md and .json: kernels, flows, the bytes the flows carry (and
times the hops they travel), the largest SRAM per core, simulated time, tokens/s (whole batch
and steady state) and MFU, unfused against fused. The simulated figures rest on the
assumptions of waferscale/backends/assumptions.py.
"""

from __future__ import annotations

import results_io  # benchmarks/ is on sys.path when a script here runs
from results_io import command, compile_report, write, zoo_on_wafer_args

FUSED = "canonicalize,fuse,lower,place{mode=pipelined},route,simulate"
UNFUSED = "canonicalize,lower,place{mode=pipelined},route,simulate"


def one(model: str, target: str, seq: int, batch: int, pipeline: str) -> dict:
    rep, error = compile_report(model, "--seq", str(seq), "--batch", str(batch), "--target", target, "-p", pipeline)
    if error:
        return {"fits": False, "error": error}
    t, pl = rep["time"], rep["placement"]
    return {
        "fits": True, "pipeline": rep["pipeline"], "kernels": pl["kernels"], "flows": pl["flows"],
        "flow_bytes": pl["flow_bytes"], "flow_byte_hops": pl["flow_byte_hops"],
        "sram_peak": pl["sram_peak_bytes_per_core"], "occupancy": round(pl["occupancy"], 4),
        "cycles": t["cycles"], "ms": round(1e3 * t["seconds"], 4), "tokens_per_s": round(t["tokens_per_s"]),
        "steady_tokens_per_s": round(t["steady_tokens_per_s"]), "mfu": round(t["mfu"], 4),
        "fill_cycles": t["critical_path_cycles"],
    }


def _pct(new: float, old: float) -> str:
    return f"{100 * (new / old - 1):+.1f}%"


def main() -> None:
    from waferscale.frontend.zoo import ZOO

    a = zoo_on_wafer_args(__doc__)
    rows = []
    for m in a.models.split(","):
        for target in a.targets.split(","):
            seq = min(a.seq, ZOO[m].context)
            row = {"model": m, "target": target, "seq": seq, "batch": a.batch,
                   "unfused": one(m, target, seq, a.batch, UNFUSED), "fused": one(m, target, seq, a.batch, FUSED)}
            rows.append(row)
            u, f = row["unfused"], row["fused"]
            if u["fits"] and f["fits"]:
                print(f"{m:<18} {target}: kernels {u['kernels']} -> {f['kernels']}, {u['ms']:.3f} -> {f['ms']:.3f} ms "
                      f"({_pct(f['ms'], u['ms'])}), steady {_pct(f['steady_tokens_per_s'], u['steady_tokens_per_s'])}",
                      flush=True)
            else:
                print(f"{m:<18} {target}: unfused {'fits' if u['fits'] else 'does not fit'}, fused "
                      f"{'fits' if f['fits'] else 'does not fit'}", flush=True)
    cmd, machine = command(), results_io.machine()
    lines = [f"# What fusion is worth (layer-pipelined, batch {a.batch}, f16)", "",
             f"Command: `{cmd}` on {machine}.", "",
             f"Each model compiled twice, layer-pipelined: `-p {UNFUSED}` and `-p {FUSED}` (with fuse's default "
             "options: epilogues and layernorm prologues). Simulated figures (tile-level model; its assumed figures "
             "are in waferscale/backends/assumptions.py, its calibration in "
             "benchmarks/results/hardware_fidelity.md). flow MB: the bytes the flows "
             "between kernels carry in the whole run; GB-hops: the same times the hops each travels; SRAM: the "
             "largest per core. ms and M tok/s: the whole batch with pipeline fill and drain; steady: one sample "
             "per slowest stage. fill: the critical-path latency bound of a first chunk through the pipeline.", "",
             "| model | target | kernels | flows | flow MB | flow GB-hops | SRAM/core KiB | ms | M tok/s "
             "| steady M tok/s | MFU | fill kcycles | time |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def pair(u, f, key, fmt):
        return f"{fmt(u[key]) if u['fits'] else 'no fit'} -> {fmt(f[key]) if f['fits'] else 'no fit'}"

    for r in rows:
        u, f = r["unfused"], r["fused"]
        if not (u["fits"] or f["fits"]):
            lines.append(f"| {r['model']} | {r['target']} | does not fit | | | | | | | | | | |")
            continue
        lines.append(
            f"| {r['model']} | {r['target']} | {pair(u, f, 'kernels', str)} | {pair(u, f, 'flows', str)} "
            f"| {pair(u, f, 'flow_bytes', lambda x: f'{x / 1e6:.0f}')} "
            f"| {pair(u, f, 'flow_byte_hops', lambda x: f'{x / 1e9:.1f}')} "
            f"| {pair(u, f, 'sram_peak', lambda x: f'{x / 1024:.1f}')} | {pair(u, f, 'ms', lambda x: f'{x:.3f}')} "
            f"| {pair(u, f, 'tokens_per_s', lambda x: f'{x / 1e6:.3f}')} "
            f"| {pair(u, f, 'steady_tokens_per_s', lambda x: f'{x / 1e6:.3f}')} "
            f"| {pair(u, f, 'mfu', lambda x: f'{100 * x:.1f}%')} "
            f"| {pair(u, f, 'fill_cycles', lambda x: f'{x / 1e3:.0f}')} "
            f"| {_pct(f['ms'], u['ms']) if u['fits'] and f['fits'] else 'fits only fused'} |")
    misfits = [(r, v) for r in rows for v in ("unfused", "fused") if not r[v]["fits"]]
    if misfits:
        lines += ["", "What does not fit (the compiler's own message):", ""]
        lines += [f"- {r['model']} on {r['target']}, {v}: {r[v]['error']}" for r, v in misfits]
    write("fusion", {"command": cmd, "machine": machine, "rows": rows}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
