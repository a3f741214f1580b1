"""How long a design-space sweep takes: 200 points of cerebras-gpt-111m (5 meshes x 4 SRAM sizes x 2
FMAC widths x 5 batches, seq 2048) through `wafer sweep` on a local Ray, timed from the command's
start to its exit, in a fresh process and a fresh output directory.

    python benchmarks/sweep_scale.py [--model cerebras-gpt-111m] [--seq 2048] [--workers N]

Writes benchmarks/results/sweep_scale.md and .json. The five traces (one per batch) run in the
driver; the 200 compiles run as Ray tasks. The run is then repeated in the same directory, which
resumes every point and runs none (the cost of reading points.jsonl and writing the outputs).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_io import command, machine, write

MESHES = "64x64,128x128,256x256,512x512,994x750"
SRAM_KIB = "48,64,96,128"
FMAC = "4,8"
BATCH = "1,2,4,8,16"


def sweep(args: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "waferscale.cli", "sweep", *args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode:
        sys.exit(f"wafer sweep failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    return wall, r.stdout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="cerebras-gpt-111m")
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--workers", type=int, default=None, help="Ray CPUs (default: every CPU)")
    a = p.parse_args()
    out = Path(tempfile.mkdtemp(prefix="sweep_scale."))
    flags = ["--models", a.model, "--meshes", MESHES, "--sram-kib", SRAM_KIB, "--fmac", FMAC, "--batch", BATCH,
             "--seq", str(a.seq), "-o", str(out), "-q", *(["--workers", str(a.workers)] if a.workers else [])]
    try:
        wall, stdout = sweep(flags)
        rows = list(csv.DictReader((out / "sweep.csv").open()))
        resume_wall, resume_out = sweep(flags)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    ok = [r for r in rows if r["ok"] == "True"]
    compile_s = sum(float(r["compile_s"]) for r in rows)
    slowest = max(rows, key=lambda r: float(r["compile_s"]))
    shown = " ".join("DIR" if x == str(out) else x for x in flags)
    record = {
        "command": command(), "machine": machine(), "sweep": f"wafer sweep {shown}",
        "model": a.model, "seq": a.seq, "points": len(rows), "ok": len(ok), "failed": len(rows) - len(ok),
        "wall_s": round(wall, 2), "points_per_s": round(len(rows) / wall, 2),
        "compile_s_sum": round(compile_s, 2), "compile_s_mean": round(compile_s / len(rows), 3),
        "compile_s_max": float(slowest["compile_s"]), "slowest": slowest["target"] + f" batch {slowest['batch']}",
        "resume_wall_s": round(resume_wall, 2), "summary": stdout.splitlines()[0].replace(str(out), "DIR"),
        "resume_summary": resume_out.splitlines()[0].replace(str(out), "DIR"),
    }
    print(f"{len(rows)} points ({len(ok)} ok) in {wall:.1f} s = {len(rows) / wall:.2f} points/s; "
          f"resumed in {resume_wall:.1f} s")
    md = f"""# Sweep at scale: {len(rows)} points of {a.model} through `wafer sweep` on a local Ray

Command: `{record['command']}` on {record['machine']}. It runs, in a fresh process and output directory:

    {record['sweep']}

({MESHES.count(',') + 1} meshes x {SRAM_KIB.count(',') + 1} SRAM sizes x {FMAC.count(',') + 1} FMAC widths x \
{BATCH.count(',') + 1} batches, seq {a.seq}, mode auto; each batch traced once in the driver, each point a Ray task.)

| points | ok | failed | wall s | points/s | compile s (sum of points) | mean s/point | slowest point | rerun s |
|---:|---:|---:|---:|---:|---:|---:|---|---:|
| {len(rows)} | {len(ok)} | {len(rows) - len(ok)} | {wall:.1f} | {len(rows) / wall:.2f} | {compile_s:.1f} | \
{compile_s / len(rows):.3f} | {record['compile_s_max']:.2f} s ({record['slowest']}) | {resume_wall:.1f} |

Wall time is the whole command: Python and Ray start-up, the {BATCH.count(',') + 1} traces, every compile and \
simulation, and the outputs (sweep.csv, sweep.json, pareto.png). The compile seconds are the passes' own, summed \
over the points (they run in parallel). The rerun in the same directory resumes every point from points.jsonl and \
runs none.

`wafer sweep` printed: {record['summary']}
"""
    write("sweep_scale", record, md)


if __name__ == "__main__":
    main()
