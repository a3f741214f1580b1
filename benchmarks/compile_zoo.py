"""Compile time and peak memory of every zoo model, each in a fresh process.

    python benchmarks/compile_zoo.py [--seq 2048] [--dtype f16] [--models a,b,...]

Writes benchmarks/results/compile_zoo.md and .json. Columns: torch.export time, our own time
after the trace (import into the IR, verify, statistics, the graph passes), end to end wall time of
`wafer compile` (interpreter start and imports included), and peak RSS of that process. --models
re-runs only those models' rows: the others are kept from the last results, each row with the
command and machine that measured it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import results_io  # benchmarks/ is on sys.path when a script here runs
from results_io import command, merged_rows, write


def one(model: str, seq: int, dtype: str) -> dict:
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "waferscale.cli", "compile", model, "--seq", str(seq), "--dtype", dtype,
               "-o", d, "-q"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if r.returncode:
            raise SystemExit(f"{model}: {r.stderr.strip()}")
        rep = json.loads(Path(d, "report.json").read_text())
    c = rep["compile"]
    return {"model": model, "params": rep["model"]["params"], "traced_on": rep["model"]["traced_on"],
            "ops": rep["ir"]["op_count"], "export_s": round(c["export_seconds"], 3),
            "ours_s": round(c["our_seconds"], 3), "imports_s": round(c["imports_seconds"], 3),
            "end_to_end_s": round(wall, 3),
            "peak_rss_mb": round(c["peak_rss_bytes"] / 2**20, 1)}


def main() -> None:
    from waferscale.frontend.zoo import ZOO

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--dtype", default="f16")
    p.add_argument("--models", default=",".join(n for n in ZOO if not n.startswith("tiny")))
    a = p.parse_args()
    rows = []
    for m in a.models.split(","):
        seq = min(a.seq, ZOO[m].context)
        rows.append(one(m, seq, a.dtype) | {"seq": seq})
        r = rows[-1]
        print(f"{m:<20} export {r['export_s']:6.2f} s  ours {r['ours_s']:5.2f} s  "
              f"end-to-end {r['end_to_end_s']:6.2f} s  peak RSS {r['peak_rss_mb']:7.1f} MiB", flush=True)
    cmd, machine = command(), results_io.machine()
    rows, commands = merged_rows("compile_zoo", rows, list(ZOO), cmd, machine)
    lines = [f"# Compile time and memory of the zoo ({a.dtype})", "",
             "Commands: " + "; ".join(commands) + ".", "",
             "`wafer compile` without a target, so the pipeline is its default graph pass, canonicalize. "
             "ours = everything after torch.export: import into the IR, verify, statistics and the graph "
             "passes (report.json compile.our_seconds). ops = after canonicalize. transformers = loading the "
             "transformers package. end-to-end = the whole `wafer compile` process, Python start, imports "
             "and writing the files included; peak RSS is read after the files are written.", "",
             "| model | params | seq | traced on | ops | transformers s | torch.export s | ours s "
             "| end-to-end s | peak RSS MiB |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['params']:,} | {r['seq']} | {r['traced_on']} | {r['ops']} | {r['imports_s']:.2f} "
              f"| {r['export_s']:.2f} | {r['ours_s']:.2f} | {r['end_to_end_s']:.2f} | {r['peak_rss_mb']:.0f} |"
              for r in rows]
    write("compile_zoo", {"command": cmd, "machine": machine, "rows": rows}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
