"""Data-parallel training on N systems: a weight-streaming training step of each model at a fixed
global batch on N = 1, 2, 4, 8, 16 CS-2 systems (SwarmX broadcasting weights and reducing
gradients), each compile in a fresh process.

    python benchmarks/train_scaling.py [--models cerebras-gpt-1.3b,cerebras-gpt-13b]
                                       [--batches 528,720] [--systems 1,2,4,8,16] [--seq 2048]

Writes benchmarks/results/train_scaling.md and .json: step time, tokens/s, speed-up over the fewest
systems that ran (one, unless the batch's share does not fit one) and efficiency against linear.
The global batches default to the Cerebras-GPT model cards' (1.3B: 528 sequences; 13B: 720, its
starting batch).
"""

from __future__ import annotations

import argparse

from results_io import command, compile_report, machine, write


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="cerebras-gpt-1.3b,cerebras-gpt-13b")
    p.add_argument("--batches", default="528,720", help="global batch of each model, in order")
    p.add_argument("--systems", default="1,2,4,8,16")
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--target", default="wse2")
    a = p.parse_args()
    rows = []
    for model, batch in zip(a.models.split(","), map(int, a.batches.split(","))):
        base = None  # (systems, step seconds) of the fewest systems that ran: efficiency is against it
        for n in map(int, a.systems.split(",")):
            rep, error = compile_report(model, "--train", "--batch", str(batch), "--seq", str(a.seq), "--target",
                                        a.target, "--systems", str(n))
            row = {"model": model, "batch": batch, "systems": n}
            if error:
                rows.append(row | {"error": error})
                print(f"{model} on {n}: {error}", flush=True)
                continue
            t = rep["train"]
            base = base or (n, t["step_seconds"])
            speedup = base[1] / t["step_seconds"]
            row |= {"step_s": t["step_seconds"], "tokens_per_s": t["tokens_per_s"], "mfu": t["mfu"],
                    "micro_batch": t["micro_batch"], "micro_batches": t["micro_batches"],
                    "optimizer_exposed_s": t["optimizer"]["exposed_seconds"],
                    "swarmx_levels": t.get("swarmx", {}).get("levels", 0), "base_systems": base[0],
                    "speedup": speedup, "efficiency": speedup * base[0] / n}
            rows.append(row)
            print(f"{model} batch {batch} on {n:2} system(s): step {row['step_s']:.3f} s, "
                  f"{row['tokens_per_s'] / 1e3:.1f} k tokens/s, MFU {100 * row['mfu']:.1f}%, efficiency "
                  f"{100 * row['efficiency']:.1f}% (against {base[0]} system(s))", flush=True)
    md = [f"# Data-parallel training scaling (weight streaming, {a.target}, seq {a.seq})", "",
          f"Command: `{command()}`  ", f"Ran on: {machine()}", "",
          "Speed-up: step time of the fewest systems that ran over this one's; efficiency: the speed-up over the "
          "ideal (N / that fewest).", "",
          "| model | batch | systems | micro-batch x count | step s | k tokens/s | MFU | speed-up | efficiency |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            md.append(f"| {r['model']} | {r['batch']} | {r['systems']} | {r['error']} | | | | | |")
            continue
        md.append(f"| {r['model']} | {r['batch']} | {r['systems']} | {r['micro_batch']} x {r['micro_batches']} | "
                  f"{r['step_s']:.3f} | {r['tokens_per_s'] / 1e3:.1f} | {100 * r['mfu']:.1f}% | "
                  f"{r['speedup']:.2f} | {100 * r['efficiency']:.1f}% |")
    write("train_scaling", {"command": command(), "machine": machine(), "rows": rows}, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
