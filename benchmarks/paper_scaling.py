"""The Cerebras-GPT paper's runs on 1 to 16 systems: each model near its published batch (paper_runs.RUNS),
weight streaming, data parallel over N CS-2 systems (SwarmX, MemoryX), each compile in a fresh process.

    python benchmarks/paper_scaling.py [--models ...] [--systems 1,4,16] [--jobs 2]

Strong scaling at equal per-system work: for each model one global batch and one micro-batch for
every system count, so N systems each run 1/N of the micro-batches of one system, each of the same
size (the micro-batch decides the kernels' SRAM, hence their speed). The global batch is the
published one rounded to a multiple of every count's (1, 4, 16 and the published count), since
120 and 264 do not split over 16; the micro-batch is the largest divisor of the smallest per-system
batch that fits on the wafer (a probe compile on the most systems says what fits).

Writes benchmarks/results/paper_scaling.md and .json (a row per model and systems count: step time,
MFU, tokens/s per system, scaling efficiency (tokens/s per system against one system's), the exposed
MemoryX tail and the efficiency at half and twice its assumed update rate, time to train on the
paper's tokens) and docs/training-scale.png (efficiency vs systems).
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor, as_completed
from math import lcm
from pathlib import Path

from paper_runs import RUNS, SEQ
from results_io import RESULTS, command, compile_report, machine, write

PNG = Path(__file__).resolve().parent.parent / "docs" / "training-scale.png"
RATES = ("0.5", "2")  # the MemoryX update rate's sensitivity (runtime/train_time.py RATE_FACTORS)


def plan(model: str, counts: list[int]) -> tuple[int, int, list[int]]:
    """(global batch, the unit every count's per-system batch is a multiple of, the counts) of ``model``:
    the published batch rounded to the nearest multiple of the counts' least common multiple."""
    ns = sorted(set(counts) | {RUNS[model][1]})
    step = lcm(*ns)
    batch = max(step, round(RUNS[model][0] / step) * step)
    return batch, batch // step, ns


def args(model: str, batch: int, n: int, target: str, micro: int | None) -> list[str]:
    extra = ["--micro-batch", str(micro)] if micro else []
    return [model, "--train", "--batch", str(batch), "--seq", str(SEQ), "--target", target, "--systems", str(n),
            "--mode", "streaming", *extra]


def probe(model: str, counts: list[int], target: str) -> tuple[int, int, str | None]:
    """(global batch, micro-batch, error): the compiler's own micro-batch on the most systems, brought down
    to a divisor of every count's per-system batch."""
    batch, unit, ns = plan(model, counts)
    rep, error = compile_report(*args(model, batch, ns[-1], target, None))
    if error:
        return batch, 0, error
    most = rep["train"]["micro_batch"]
    return batch, max(d for d in range(1, unit + 1) if unit % d == 0 and d <= most), None


def one(model: str, batch: int, micro: int, n: int, target: str) -> dict:
    rep, error = compile_report(*args(model, batch, n, target, micro))
    row = {"model": model, "batch": batch, "published_batch": RUNS[model][0], "systems": n,
           "published_systems": RUNS[model][1]}
    if error:
        return row | {"error": error}
    t = rep["train"]
    tt, opt = t["time_to_train"], t["optimizer"]
    return row | {"step_s": t["step_seconds"], "tokens_per_s": t["tokens_per_s"],
                  "tokens_per_s_per_system": t["tokens_per_s_per_system"], "mfu": t["mfu"],
                  "micro_batch": t["micro_batch"], "micro_batches": t["micro_batches"],
                  "optimizer_s": opt["seconds"], "optimizer_exposed_s": opt["exposed_seconds"],
                  "update_bytes_per_s": t["memoryx"]["update_bytes_per_s"],
                  "step_s_at_rate": {f: v["step_seconds"] for f, v in opt["rate_sensitivity"].items()},
                  "swarmx_levels": t.get("swarmx", {}).get("levels", 0), "train_days": tt["days"],
                  "train_tokens": tt["tokens"], "train_flops": tt["flops"],
                  "paper_flops": tt.get("paper", {}).get("flops")}


def plot(rows: list[dict], models: list[str], made_by: str | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for m in models:
        pts = [(r["systems"], 100 * r["efficiency"]) for r in rows if r["model"] == m and "efficiency" in r]
        if pts:
            ax.plot(*zip(*sorted(pts)), marker="o", label=m.removeprefix("cerebras-gpt-"))
    ax.axhline(100, color="grey", lw=0.8, ls="--", label="linear (Cerebras: \"near-perfect\")")
    ax.axhline(75, color="red", lw=0.8, ls=":", label="75% (goal: within 25%)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("CS-2 systems (weight streaming, data parallel)")
    ax.set_ylabel("tokens/s per system, % of one system's")
    ax.set_ylim(50, 105)
    ax.set_title("Cerebras-GPT, one batch and micro-batch per model, simulated (wse2, seq 2048)", fontsize=10)
    ax.legend(fontsize=7, ncol=2, loc="lower left")
    fig.text(0.01, 0.01, f"made by: {made_by or command()}", fontsize=6, color="grey")
    fig.tight_layout()
    PNG.parent.mkdir(exist_ok=True)
    fig.savefig(PNG, metadata={"Software": None})
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(RUNS))
    p.add_argument("--systems", default="1,4,16")
    p.add_argument("--target", default="wse2")
    p.add_argument("--jobs", type=int, default=1, help="compiles at once (each a process)")
    p.add_argument("--replot", action="store_true", help="only redraw the PNG from the results JSON")
    a = p.parse_args()
    if a.replot:
        rec = json.loads((RESULTS / "paper_scaling.json").read_text())
        return plot(rec["rows"] + rec["published"], rec["models"], rec["command"])
    models = a.models.split(",")
    counts = sorted({int(n) for n in a.systems.split(",")})
    rows, work = [], []
    with ThreadPoolExecutor(a.jobs) as pool:
        for m, (batch, micro, error) in zip(models, pool.map(lambda m: probe(m, counts, a.target), models)):
            print(f"{m}: batch {batch}, micro-batch {micro}" + (f": {error}" if error else ""), flush=True)
            ns = plan(m, counts)[2]
            if error:
                rows += [{"model": m, "batch": batch, "published_batch": RUNS[m][0], "systems": n,
                          "published_systems": RUNS[m][1], "error": error} for n in ns]
            else:
                work += [(m, batch, micro, n) for n in ns]
        total = len(rows) + len(work)
        for done in as_completed([pool.submit(one, *w, a.target) for w in reversed(work)]):  # big first
            rows.append(done.result())
            r = rows[-1]
            print(f"{r['model']} on {r['systems']:2}: " + (r["error"] if "error" in r else
                  f"step {r['step_s']:.3f} s, MFU {100 * r['mfu']:.1f}%, MemoryX tail "
                  f"{r['optimizer_exposed_s']:.3f} s, {r['train_days']:.2f} days"), flush=True)
            rows.sort(key=lambda r: (models.index(r["model"]), r["systems"]))
            finish(rows, models, counts, a.target, final=len(rows) == total)


def finish(rows: list[dict], models: list[str], counts: list[int], target: str, final: bool) -> None:
    for m in models:  # efficiency: tokens/s per system against the fewest systems of this model that ran
        ran = [r for r in rows if r["model"] == m and "error" not in r]
        if not ran:
            continue
        base = min(ran, key=lambda r: r["systems"])
        for r in ran:
            r |= {"base_systems": base["systems"], "speedup": base["step_s"] / r["step_s"],
                  "efficiency": r["tokens_per_s_per_system"] / base["tokens_per_s_per_system"],
                  "mfu_vs_base": r["mfu"] / base["mfu"],
                  "efficiency_at_rate": {f: base["step_s_at_rate"][f] * base["systems"] / (s * r["systems"])
                                         for f, s in r["step_s_at_rate"].items()}}
    md = [f"# The Cerebras-GPT runs on 1 to 16 systems, simulated ({target}, seq {SEQ}, weight streaming)", "",
          f"Command: `{command()}`  ", f"Ran on: {machine()}", "" if final else "\n(partial: still running)\n",
          "One global batch and one micro-batch per model for every system count (the published batch rounded "
          "to a multiple of every count's; `batch` shows it, `published` the paper's). Efficiency: tokens/s per "
          "system over the fewest systems' (the same global batch, so also the speed-up over the ideal). At "
          "0.5x / 2x: the efficiency with MemoryX's update rate (our assumption) halved / doubled. Days: the "
          "paper's training tokens in steps of this step time (no warm-up, evaluation or checkpoints). Bold: "
          "the system count the model was trained on (paper_runs.RUNS).", "",
          "| model | batch (published) | systems | micro-batch x count | step s | MFU | MemoryX tail s | speed-up "
          "| efficiency | at 0.5x / 2x rate | days |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        n = f"**{r['systems']}**" if r["systems"] == r["published_systems"] else str(r["systems"])
        b = f"{r['batch']} ({r['published_batch']})"
        if "error" in r:
            md.append(f"| {r['model']} | {b} | {n} | {r['error']} | | | | | | | |")
            continue
        at = " / ".join(f"{100 * r['efficiency_at_rate'][f]:.1f}%" for f in RATES)
        md.append(f"| {r['model']} | {b} | {n} | {r['micro_batch']} x {r['micro_batches']} | "
                  f"{r['step_s']:.3f} | {100 * r['mfu']:.1f}% | {r['optimizer_exposed_s']:.3f} | "
                  f"{r['speedup']:.2f} | {100 * r['efficiency']:.1f}% | {at} | {r['train_days']:.2f} |")
    write("paper_scaling", {"command": command(), "machine": machine(), "models": models, "systems": counts,
                            "complete": final, "rows": [r for r in rows if r["systems"] in counts],
                            "published": [r for r in rows if r["systems"] not in counts]}, "\n".join(md) + "\n")
    plot(rows, models)


if __name__ == "__main__":
    main()
