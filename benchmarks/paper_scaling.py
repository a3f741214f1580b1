"""The Cerebras-GPT paper's runs on 1 to 16 systems: each model at its published batch (paper_runs.RUNS),
weight streaming, data parallel over N CS-2 systems (SwarmX, MemoryX), each compile in a fresh process.

    python benchmarks/paper_scaling.py [--models ...] [--systems 1,4,16] [--jobs 2]

Writes benchmarks/results/paper_scaling.md and .json (a row per model and systems count: step time,
MFU, speed-up and scaling efficiency against the fewest systems that ran, the exposed MemoryX
tail, time to train on the paper's tokens) and docs/training-scale.png (efficiency vs systems).
Every model also runs at its published system count (paper_runs.RUNS) where that is not in the list.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from paper_runs import RUNS, SEQ
from results_io import RESULTS, command, compile_report, machine, write

PNG = Path(__file__).resolve().parent.parent / "docs" / "training-scale.png"


def one(model: str, batch: int, n: int, target: str) -> dict:
    rep, error = compile_report(model, "--train", "--batch", str(batch), "--seq", str(SEQ), "--target", target,
                                "--systems", str(n), "--mode", "streaming")
    row = {"model": model, "batch": batch, "systems": n, "published_systems": RUNS[model][1]}
    if error:
        return row | {"error": error}
    t = rep["train"]
    tt = t["time_to_train"]
    return row | {"step_s": t["step_seconds"], "tokens_per_s": t["tokens_per_s"], "mfu": t["mfu"],
                  "micro_batch": t["micro_batch"], "micro_batches": t["micro_batches"],
                  "optimizer_s": t["optimizer"]["seconds"], "optimizer_exposed_s": t["optimizer"]["exposed_seconds"],
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
    ax.axhline(100, color="grey", lw=0.8, ls="--")
    ax.axhline(75, color="red", lw=0.8, ls=":", label="75% (goal: within 25%)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("CS-2 systems (weight streaming, data parallel)")
    ax.set_ylabel("scaling efficiency, % of linear")
    ax.set_ylim(50, 115)
    ax.set_title("Cerebras-GPT at its published batch, simulated (wse2, seq 2048)", fontsize=10)
    ax.legend(fontsize=8, ncol=2, loc="lower left")
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
    work = [(m, RUNS[m][0], n) for m in models for n in sorted(set(counts) | {RUNS[m][1]})]
    rows = []
    with ThreadPoolExecutor(a.jobs) as pool:  # the results are rewritten as each compile ends
        for done in as_completed([pool.submit(one, *w, a.target) for w in reversed(work)]):  # big first
            rows.append(done.result())
            r = rows[-1]
            print(f"{r['model']} on {r['systems']:2}: " + (r["error"] if "error" in r else
                  f"step {r['step_s']:.3f} s, MFU {100 * r['mfu']:.1f}%, MemoryX tail "
                  f"{r['optimizer_exposed_s']:.3f} s, {r['train_days']:.2f} days"), flush=True)
            rows.sort(key=lambda r: (models.index(r["model"]), r["systems"]))
            finish(rows, models, counts, a.target, final=len(rows) == len(work))


def finish(rows: list[dict], models: list[str], counts: list[int], target: str, final: bool) -> None:
    for m in models:  # efficiency against the fewest systems of this model that ran
        ran = [r for r in rows if r["model"] == m and "error" not in r]
        if not ran:
            continue
        base = min(ran, key=lambda r: r["systems"])
        for r in ran:
            speedup = base["step_s"] / r["step_s"]
            r |= {"base_systems": base["systems"], "speedup": speedup,
                  "efficiency": speedup * base["systems"] / r["systems"], "mfu_vs_base": r["mfu"] / base["mfu"]}
    md = [f"# The Cerebras-GPT runs on 1 to 16 systems, simulated ({target}, seq {SEQ}, weight streaming)", "",
          f"Command: `{command()}`  ", f"Ran on: {machine()}", "" if final else "\n(partial: still running)\n",
          "Efficiency: the step time of the fewest systems that ran over this one's, over the ideal N / fewest. "
          "Days: the paper's training tokens in steps of this step time (no warm-up, evaluation or checkpoints). "
          "Bold: the system count the model was trained on (paper_runs.RUNS).", "",
          "| model | batch | systems | micro-batch x count | step s | MFU | MemoryX tail s | speed-up | efficiency "
          "| days |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        n = f"**{r['systems']}**" if r["systems"] == r["published_systems"] else str(r["systems"])
        if "error" in r:
            md.append(f"| {r['model']} | {r['batch']} | {n} | {r['error']} | | | | | | |")
            continue
        md.append(f"| {r['model']} | {r['batch']} | {n} | {r['micro_batch']} x {r['micro_batches']} | "
                  f"{r['step_s']:.3f} | {100 * r['mfu']:.1f}% | {r['optimizer_exposed_s']:.3f} | "
                  f"{r['speedup']:.2f} | {100 * r['efficiency']:.1f}% | {r['train_days']:.2f} |")
    write("paper_scaling", {"command": command(), "machine": machine(), "models": models, "systems": counts,
                            "complete": final, "rows": [r for r in rows if r["systems"] in counts],
                            "published": [r for r in rows if r["systems"] not in counts]}, "\n".join(md) + "\n")
    plot(rows, models)


if __name__ == "__main__":
    main()
