"""A Llama training step compiled in both execution modes: llama-3.1-8b (traced on the meta device, its
weights never made) with ``--train`` in weight streaming and layer-pipelined, each compile in a fresh
process. Too slow for the unit tests (about 40 s a compile); tests/test_train_llama.py compiles
tiny-llama.

    python benchmarks/train_llama.py [--models llama-3.1-8b] [--targets wse3] [--modes streaming,pipelined]
                                     [--batch 1] [--seq 2048]

Writes benchmarks/results/train_llama.md and .json: per model, target and mode the step time, tokens/s,
MFU, model FLOPs per token against the closed form, bytes streamed, or the one-line error (a model too
big for layer-pipelined training is refused with its shortfall).
"""

from __future__ import annotations

import argparse
import time

from results_io import command, compile_report, machine, write


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="llama-3.1-8b")
    p.add_argument("--targets", default="wse3")
    p.add_argument("--modes", default="streaming,pipelined")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=2048)
    a = p.parse_args()
    rows = []
    for model in a.models.split(","):
        for target in a.targets.split(","):
            for mode in a.modes.split(","):
                t0 = time.perf_counter()
                rep, error = compile_report(model, "--train", "--batch", str(a.batch), "--seq", str(a.seq),
                                            "--target", target, "--mode", mode)
                row = {"model": model, "target": target, "mode": mode, "batch": a.batch, "seq": a.seq,
                       "compile_s": round(time.perf_counter() - t0, 1)}
                if error:
                    rows.append(row | {"error": error})
                    print(f"{model} on {target}, {mode}: {error}", flush=True)
                    continue
                t = rep["train"]
                row |= {"step_s": t["step_seconds"], "tokens_per_s": t["tokens_per_s"], "mfu": t["mfu"],
                        "flops_per_token": t["flops_per_token"],
                        "flops_per_token_closed_form": t["flops_per_token_closed_form"],
                        "micro_batch": t["micro_batch"], "micro_batches": t["micro_batches"],
                        "stream_in_bytes": t["stream_in_bytes"], "stream_out_bytes": t["stream_out_bytes"],
                        "optimizer_exposed_s": t["optimizer"].get("exposed_seconds"),
                        "backward_ops": sorted(k for k in rep["ir"]["ops"] if k.endswith("_grad"))}
                rows.append(row)
                print(f"{model} on {target}, {t['mode']}: step {row['step_s']:.3f} s, {row['tokens_per_s']:.0f} "
                      f"tokens/s, MFU {100 * row['mfu']:.2f}%, {row['flops_per_token'] / 1e9:.2f} GFLOP/token "
                      f"(closed form {row['flops_per_token_closed_form'] / 1e9:.2f}); compiled in "
                      f"{row['compile_s']} s", flush=True)
    md = [f"# Llama training steps in both execution modes (batch {a.batch}, seq {a.seq})", "",
          f"Command: `{command()}`  ", f"Ran on: {machine()}", "",
          "| model | target | mode | step s | tokens/s | MFU | GFLOP/token (closed form) | streamed in / out GB "
          "| optimizer exposed s | compile s |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            md.append(f"| {r['model']} | {r['target']} | {r['mode']} | {r['error']} | | | | | | {r['compile_s']} |")
            continue
        opt = r["optimizer_exposed_s"]
        md.append(f"| {r['model']} | {r['target']} | {r['mode']} | {r['step_s']:.3f} | {r['tokens_per_s']:.0f} | "
                  f"{100 * r['mfu']:.2f}% | {r['flops_per_token'] / 1e9:.2f} "
                  f"({r['flops_per_token_closed_form'] / 1e9:.2f}) | {r['stream_in_bytes'] / 1e9:.2f} / "
                  f"{r['stream_out_bytes'] / 1e9:.2f} | {'' if opt is None else f'{opt:.3f}'} | {r['compile_s']} |")
    write("train_llama", {"command": command(), "machine": machine(), "rows": rows}, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
