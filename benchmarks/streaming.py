"""Weight streaming against the batch: cerebras-gpt-13b on a WSE-2 in weight-streaming mode, batch
1 to 1,024 at seq 2048, each compile in a fresh process.

    python benchmarks/streaming.py [--model cerebras-gpt-13b] [--target wse2] [--seq 2048]
                                   [--batches 1,2,4,...,1024] [--streamed-gemm auto|sparse|all|none]

Writes benchmarks/results/streaming.md and .json. A transformer block's weights take the same time
to stream in whatever the batch; its compute grows with the batch; so time per token falls with
the batch until compute binds. Beside the simulated figures, the closed form: a block takes at
least max(weight bytes / I/O bandwidth, batch x FLOPs per sample / peak), and the crossover batch
is where the two are equal. ``--streamed-gemm`` other than ``auto`` (the default) compiles with
``place{mode=streaming,streamed_gemm=...}`` and writes streaming-<choice>.md/.json beside it (``none``:
every GEMM weight-stationary, the figures before ``auto``).
"""

from __future__ import annotations

import argparse

import results_io  # benchmarks/ is on sys.path when a script here runs
from results_io import command, compile_outputs, write


def one(model: str, target: str, seq: int, batch: int, streamed_gemm: str = "auto") -> dict:
    how = ("--mode", "streaming") if streamed_gemm == "auto" else (
        "-p", f"canonicalize,fuse,lower,place{{mode=streaming,streamed_gemm={streamed_gemm}}},route,simulate")
    out, error = compile_outputs(model, "--seq", str(seq), "--batch", str(batch), "--target", target, *how,
                                 names=("report.json", "placement.json"))
    row = {"batch": batch}
    if error:
        return row | {"fits": False, "error": error}
    rep, pj = out["report.json"], out["placement.json"]
    t, m = rep["time"], rep["machine"]
    block = next(x for x in t["layers"] if ".h." in x["name"])
    group = next(g for g in pj["groups"] if g["name"] == block["name"])
    flops = sum(pj["kernels"][k]["flops"] for k in group["kernels"])  # all samples
    clock = m["clock_hz"]
    stream_s, peak_s = block["weight_bytes"] / m["io_bytes_per_s"], flops / m["peak_flops"]
    return row | {
        "fits": True, "ms": 1e3 * t["seconds"], "tokens_per_s": t["tokens_per_s"], "mfu": t["mfu"],
        "us_per_token": 1e6 * t["seconds"] / t["tokens"], "stream_overlap": t["stream_overlap"],
        "layers_by_bound": t["layers_by_bound"], "block": block["name"], "block_weight_bytes": block["weight_bytes"],
        "block_stream_us": 1e6 * block["stream_cycles"] / clock,
        "block_compute_us": 1e6 * block["compute_cycles"] / clock,
        "block_bound": block["bound"], "closed_stream_us": 1e6 * stream_s, "closed_compute_us": 1e6 * peak_s,
        "block_flops_per_sample": flops / batch, "sram_reserved": rep["placement"]["sram_reserved_bytes_per_core"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="cerebras-gpt-13b")
    p.add_argument("--target", default="wse2")
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--batches", default=",".join(str(2 ** i) for i in range(11)))
    p.add_argument("--streamed-gemm", default="auto", choices=("auto", "sparse", "all", "none"))
    a = p.parse_args()
    rows = []
    for b in map(int, a.batches.split(",")):
        r = one(a.model, a.target, a.seq, b, a.streamed_gemm)
        rows.append(r)
        if r["fits"]:
            print(f"batch {b:5}: {r['ms']:9.2f} ms, {r['us_per_token']:7.3f} us/token, MFU {100 * r['mfu']:5.1f}%, "
                  f"block stream {r['block_stream_us']:7.1f} us compute {r['block_compute_us']:8.1f} us "
                  f"({r['block_bound']})", flush=True)
        else:
            print(f"batch {b:5}: {r['error'][:140]}", flush=True)
    fit = [r for r in rows if r["fits"]]
    closed = None
    if fit:  # the batch at which a block's compute at peak equals its stream
        r0 = fit[0]
        closed = r0["closed_stream_us"] / (r0["closed_compute_us"] / r0["batch"])
    crossover = next((r["batch"] for r in fit if r["block_bound"] == "compute"), None)
    cmd, machine = command(), results_io.machine()
    lines = [f"# Weight streaming against the batch: {a.model} on {a.target}, seq {a.seq}, f16, "
             f"streamed_gemm={a.streamed_gemm}", "",
             f"Command: `{cmd}` on {machine}.", "",
             "Simulated figures (weight-streaming mode; the I/O rate is the machine's, 150 GB/s; its assumed "
             "figures are in waferscale/backends/assumptions.py, its calibration in "
             "benchmarks/results/hardware_fidelity.md). A block is one transformer layer: "
             "its stream is its weights over the system I/O, its compute its run on the whole wafer for the whole "
             "batch. closed form: stream = weight bytes / I/O bandwidth, compute = the block's FLOPs / peak "
             "(the machine's peak_flops), a lower bound on each.", "",
             "| batch | ms | us/token | M tokens/s | MFU | block stream us | block compute us | bound "
             "| closed stream us | closed compute us | stream hidden | SRAM reserved/core |",
             "|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        if not r["fits"]:
            lines.append(f"| {r['batch']} | does not fit | | | | | | | | | | |")
            continue
        lines.append(f"| {r['batch']} | {r['ms']:.2f} | {r['us_per_token']:.3f} | {r['tokens_per_s'] / 1e6:.3f} "
                     f"| {100 * r['mfu']:.1f}% | {r['block_stream_us']:.1f} | {r['block_compute_us']:.1f} "
                     f"| {r['block_bound']} | {r['closed_stream_us']:.1f} | {r['closed_compute_us']:.1f} "
                     f"| {100 * r['stream_overlap']:.1f}% | {r['sram_reserved']:,} B |")
    lines += ["", f"Crossover: a block turns compute-bound at batch {crossover} in the simulation; the closed form "
              f"(compute at peak equal to the stream) puts it at batch {closed:.1f}." if closed else ""]
    misfits = [r for r in rows if not r["fits"]]
    if misfits:
        lines += ["", "What does not fit (the compiler's own message):", ""]
        lines += [f"- batch {r['batch']}: {r['error']}" for r in misfits]
    name = "streaming" if a.streamed_gemm == "auto" else f"streaming-{a.streamed_gemm}"
    write(name, {"command": cmd, "streamed_gemm": a.streamed_gemm, "machine": machine, "model": a.model,
                 "target": a.target, "seq": a.seq, "crossover_batch": crossover,
                 "closed_form_crossover_batch": closed, "rows": rows},
          "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
