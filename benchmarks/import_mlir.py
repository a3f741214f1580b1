"""The torch-mlir frontend on every zoo model: time, memory, and agreement with torch.export.

    python benchmarks/import_mlir.py [--seq 2048] [--dtype f16] [--models a,b,...]

Each model is compiled twice, each time in a fresh process: `wafer compile MODEL --frontend
torch-mlir` and the default torch.export frontend; the two model.ir files must be identical.
Writes benchmarks/results/import_mlir.md and .json. Columns: torch.export time, torch-mlir's FX
import to the torch dialect, our walk of the module into the IR, end to end wall time, the peak
RSS of the process by the end of the import and at the end, and the weight bytes that a
materialized model would need (the peak staying far below them shows no weight was allocated).
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
from results_io import command, write


def compile_once(model: str, seq: int, dtype: str, out: Path, frontend: str) -> tuple[dict, float]:
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "waferscale.cli", "compile", model, "--seq", str(seq), "--dtype", dtype,
           "--frontend", frontend, "-o", str(out), "-q"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"{model} ({frontend}): {r.stderr.strip()}")
    return json.loads((out / "report.json").read_text()), wall


def one(model: str, seq: int, dtype: str) -> dict:
    with tempfile.TemporaryDirectory() as d:
        mlir_dir, fx_dir = Path(d, "mlir"), Path(d, "fx")
        rep, wall = compile_once(model, seq, dtype, mlir_dir, "torch-mlir")
        compile_once(model, seq, dtype, fx_dir, "torch-export")
        same = (mlir_dir / "model.ir").read_text() == (fx_dir / "model.ir").read_text()
        mlir_bytes = (mlir_dir / "model.mlir").stat().st_size
    c, m = rep["compile"], rep["model"]
    return {"model": model, "params": m["params"], "traced_on": m["traced_on"], "weight_gb": m["weight_bytes"] / 1e9,
            "mlir_ops": c["mlir_ops"], "ir_ops": rep["ir"]["op_count"], "same_ir": same,
            "mlir_file_mb": round(mlir_bytes / 2**20, 2), "export_s": round(c["export_seconds"], 3),
            "mlir_import_s": round(c["mlir_import_seconds"], 3), "walk_s": round(c["import_seconds"], 3),
            "end_to_end_s": round(wall, 3),
            "import_peak_rss_mb": round(c["mlir_import_peak_rss_bytes"] / 2**20, 1),
            "import_rss_growth_mb": round(c["mlir_import_rss_growth_bytes"] / 2**20, 1),
            "peak_rss_mb": round(c["peak_rss_bytes"] / 2**20, 1)}


def main() -> None:
    from waferscale.frontend.zoo import ZOO

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--dtype", default="f16")
    p.add_argument("--models", default=",".join(ZOO))
    a = p.parse_args()
    rows = []
    for m in a.models.split(","):
        seq = min(a.seq, ZOO[m].context)
        rows.append(one(m, seq, a.dtype) | {"seq": seq})
        r = rows[-1]
        print(f"{m:<20} export {r['export_s']:5.2f} s  torch-mlir {r['mlir_import_s']:5.2f} s  walk "
              f"{r['walk_s']:5.2f} s  end-to-end {r['end_to_end_s']:6.2f} s  peak RSS {r['peak_rss_mb']:7.1f} MiB  "
              f"same IR: {r['same_ir']}", flush=True)
    cmd, machine = command(), results_io.machine()
    lines = [f"# The torch-mlir frontend on the zoo ({a.dtype})", "",
             f"Command: `{cmd}` on {machine}.", "",
             "torch-mlir s = torch-mlir's FX importer, FX graph to torch dialect (compile.mlir_import_seconds); "
             "walk s = ours, torch dialect to our IR (compile.import_seconds); end-to-end = the whole "
             "`wafer compile --frontend torch-mlir` process. RSS at import = the process's peak by the end of the "
             "import (compile.mlir_import_peak_rss_bytes); peak RSS = at the end of the compile, writing model.mlir "
             "included. weights GB = what the weights would take if they were allocated. same IR = model.ir equal, "
             "byte for byte, to the torch.export frontend's.", "",
             "| model | params | seq | traced on | weights GB | torch ops | IR ops | same IR | torch.export s "
             "| torch-mlir s | walk s | end-to-end s | RSS at import MiB | peak RSS MiB | model.mlir MiB |",
             "|---|---:|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['params']:,} | {r['seq']} | {r['traced_on']} | {r['weight_gb']:.2f} "
              f"| {r['mlir_ops']} | {r['ir_ops']} | {'yes' if r['same_ir'] else 'NO'} | {r['export_s']:.2f} "
              f"| {r['mlir_import_s']:.2f} | {r['walk_s']:.2f} | {r['end_to_end_s']:.2f} "
              f"| {r['import_peak_rss_mb']:.0f} | {r['peak_rss_mb']:.0f} | {r['mlir_file_mb']:.1f} |" for r in rows]
    write("import_mlir", {"command": cmd, "machine": machine, "rows": rows}, "\n".join(lines) + "\n")
    if not all(r["same_ir"] for r in rows):
        raise SystemExit("the two frontends disagree on " + ", ".join(r["model"] for r in rows if not r["same_ir"]))


if __name__ == "__main__":
    main()
