"""Unstructured weight sparsity against density: cerebras-gpt-1.3b as auto mode places it, and
cerebras-gpt-13b in weight-streaming mode at a stream-bound and a compute-bound batch, each at
density 1.0, 0.5, 0.25, 0.1 and 0.03 (`wafer compile --sparsity D`), each compile in a fresh process.

    python benchmarks/sparsity.py [--densities 1.0,0.5,0.25,0.1,0.03] [--target wse2] [--seq 2048]
                                  [--cases cerebras-gpt-1.3b:auto:4,cerebras-gpt-13b:streaming:1,...]

Writes benchmarks/results/sparsity.md and .json: step time, tokens/s, streamed bytes, weight bytes,
peak SRAM per core and the speed-up against the same model dense, with 1/density beside it (the
ideal that skipping every zero at no cost would give). Meta-device weights: their masks are seeded
random, drawn whole up to SPARSE_DRAW_LIMIT elements and in distribution beyond
(waferscale/backends/sparse.py).
"""

from __future__ import annotations

import argparse
import time

import results_io  # benchmarks/ is on sys.path when a script here runs
from results_io import command, compile_outputs, write

CASES = "cerebras-gpt-1.3b:auto:4,cerebras-gpt-13b:streaming:1,cerebras-gpt-13b:streaming:64"


def one(model: str, mode: str, batch: int, density: float, target: str, seq: int) -> dict:
    args = ["--seq", str(seq), "--batch", str(batch), "--target", target, "--mode", mode]
    if density < 1.0:
        args += ["--sparsity", repr(density)]
    t0 = time.perf_counter()
    out, error = compile_outputs(model, *args)
    row = {"model": model, "mode_asked": mode, "batch": batch, "density": density,
           "seconds_to_compile": time.perf_counter() - t0}
    if error:
        return row | {"fits": False, "error": error}
    rep = out["report.json"]
    t, pl = rep["time"], rep["placement"]
    sp = rep.get("sparsity", {})
    return row | {
        "fits": True, "mode": rep["mode"], "ms": 1e3 * t["seconds"], "tokens_per_s": t["tokens_per_s"],
        "mfu": t["mfu"], "stream_bytes": t["stream_bytes"], "weight_bytes": rep["program"]["weight_bytes"],
        "sram_peak_bytes_per_core": pl["sram_peak_bytes_per_core"], "cores_used": pl["cores_used"],
        "layers_by_bound": t.get("layers_by_bound"), "kernels_by_bound": t["kernels_by_bound"],
        "sparse_kernels": sp.get("kernels", 0), "kernel_speedup": sp.get("kernel_speedup", 1.0),
        "masks": sp.get("masks", []),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--densities", default="1.0,0.5,0.25,0.1,0.03")
    p.add_argument("--target", default="wse2")
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--cases", default=CASES, help="MODEL:MODE:BATCH,...")
    a = p.parse_args()
    densities = [float(x) for x in a.densities.split(",")]
    rows = []
    for case in a.cases.split(","):
        model, mode, batch = case.split(":")
        base = None
        for d in densities:
            r = one(model, mode, int(batch), d, a.target, a.seq)
            if r["fits"]:
                base = base or (r if d == 1.0 else None)
                r["speedup"] = base["ms"] / r["ms"] if base else None
            rows.append(r)
            if r["fits"]:
                print(f"{model} {r['mode']} batch {batch} density {d:5}: {r['ms']:9.3f} ms, "
                      f"{r['tokens_per_s'] / 1e6:7.3f} M tokens/s, speed-up {r['speedup'] or 0:5.2f} "
                      f"(1/d {1 / d:5.1f}), "
                      f"streamed {r['stream_bytes'] / 1e9:6.2f} GB, SRAM {r['sram_peak_bytes_per_core']:,} B/core "
                      f"[{r['seconds_to_compile']:.0f} s]", flush=True)
            else:
                print(f"{model} batch {batch} density {d}: {r['error'][:160]}", flush=True)
    cmd, machine = command(), results_io.machine()
    lines = [f"# Unstructured weight sparsity on {a.target}, seq {a.seq}, f16", "",
             f"Command: `{cmd}` on {machine}.", "",
             "Simulated figures. Every linear weight but lm_head is pruned to the density (`--sparsity D`); "
             "speed-up is the dense step time over the sparse one, 1/d the ideal. A sparse weight is stored per "
             "core tile as values with 16-bit column indices and a 16-bit count per tile row (a row too full "
             "to gain stays dense); each core's cycles come from its own tile's non-zeros and the slowest core "
             "paces its rectangle (waferscale/backends/sparse.py; the assumptions SPARSE_* in "
             "waferscale/backends/assumptions.py). streamed = weight bytes over the system I/O (weight "
             "streaming only); weights = the program's weight bytes as stored; SRAM = the fullest core's.", "",
             "| model | mode | batch | density | ms | M tokens/s | speed-up | 1/d | kernels' own speed-up "
             "| streamed GB | weights GB | SRAM B/core | bounds |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if not r["fits"]:
            lines.append(f"| {r['model']} | {r['mode_asked']} | {r['batch']} | {r['density']} | - | - | - | - | - | - "
                         f"| - | - | {r['error'][:100]} |")
            continue
        bounds = r["layers_by_bound"] or r["kernels_by_bound"]
        lines.append(
            f"| {r['model']} | {r['mode']} | {r['batch']} | {r['density']} | {r['ms']:.3f} | "
            f"{r['tokens_per_s'] / 1e6:.4f} | {r['speedup']:.2f} | {1 / r['density']:.1f} | "
            f"{r['kernel_speedup']:.2f} | {r['stream_bytes'] / 1e9:.2f} | {r['weight_bytes'] / 1e9:.2f} | "
            f"{r['sram_peak_bytes_per_core']:,} | {', '.join(f'{n} {b}' for b, n in bounds.items())} |")
    write("sparsity", {"command": cmd, "machine": machine, "target": a.target, "seq": a.seq, "rows": rows},
          "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
