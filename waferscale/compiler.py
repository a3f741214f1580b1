"""``wafer compile``: trace a model, import it, verify it, and describe it in a report."""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .backends.machine import get_machine
from .frontend.torch_export import Traced, trace_lm
from .ir import print_graph, verify
from .mesh_plot import mesh_png
from .report import to_json, to_text, write_dir
from .stats import model_stats
from .trace import chrome_trace
from .wafer import Placed, place_on_wafer, placement_json, placement_text, wafer_report


def peak_rss_bytes() -> int:
    # ru_maxrss is in KiB on Linux (bytes on macOS)
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


@dataclass
class Compiled:
    traced: Traced
    report: dict
    ir_text: str
    mlir_text: str | None = None  # the torch-dialect module (--frontend torch-mlir)
    placed: Placed | None = None  # the wafer stage (--target)


def compile_lm(spec: str, batch: int = 1, seq: int | None = None, dtype: str = "f16",
               weights: str = "auto", seed: int = 0, log=lambda msg: None,
               frontend: str = "torch-export", target: str | None = None) -> Compiled:
    """seq None compiles at the model's whole context. target (wse2, wse3, mesh:RxC) adds the wafer
    stage: lowering, placement, routing and the tile-level simulation. A spec ending in .mlir is
    a torch-dialect module (torch-mlir's); its shapes and dtypes are its own, so batch, seq and
    dtype are ignored."""
    t0 = time.perf_counter()
    if target is not None:
        get_machine(target)  # an unknown target fails before any work
    if spec.endswith(".mlir"):
        from .errors import UsageError
        from .frontend.torch_mlir_trace import trace_mlir_file

        if seq is not None or batch != 1:
            raise UsageError(f"{spec} is a torch-dialect module with shapes of its own: drop --batch and --seq")
        traced, frontend = trace_mlir_file(spec, log=log), "torch-mlir"
    else:
        traced = trace_lm(spec, batch=batch, seq=seq, dtype=dtype, weights=weights, seed=seed, log=log,
                          frontend=frontend)
    batch, seq, dtype = traced.info["batch"], traced.info["seq"], traced.info["dtype"]
    log(f"traced on {traced.device} in {traced.seconds['export']:.2f} s; imported "
        f"{len(traced.graph.ops)} ops in {traced.seconds['import']:.2f} s")
    t1 = time.perf_counter()
    g = verify(traced.graph)
    text = print_graph(g)
    stats = model_stats(g, tokens=batch * seq)
    analyze = time.perf_counter() - t1
    info = traced.info
    report = {
        "version": __version__,
        "model": {
            "name": info["name"], "source": info["source"], "layers": info["layers"],
            "d_model": info["d_model"], "heads": info["heads"], "d_ffn": info["d_ffn"],
            "vocab": info["vocab"], "context": info["context"], "activation": info["activation"],
            "batch": batch, "seq": seq, "dtype": dtype, "traced_on": traced.device,
            "torch_params": traced.torch_params, **stats.as_dict(),
        },
        "ir": {"ops": g.op_counts(), "op_count": len(g.ops), "param_count": len(g.params)},
        "pipeline": "",
        "compile": {
            "frontend": "torch.export",
            "seconds": time.perf_counter() - t0,
            "imports_seconds": traced.seconds["imports"],  # loading transformers
            "build_seconds": traced.seconds["build"],
            "export_seconds": traced.seconds["export"],
            "import_seconds": traced.seconds["import"],  # FX graph -> our IR
            "analyze_seconds": analyze,  # verify, print, statistics
            "our_seconds": traced.seconds["import"] + analyze,
            "peak_rss_bytes": peak_rss_bytes(),
        },
    }
    mlir_text = None
    if frontend == "torch-mlir":  # torch-mlir's own import, FX graph -> torch dialect, and what it held
        report["compile"].update(frontend="torch-mlir", mlir_import_seconds=traced.seconds["mlir_import"],
                                 mlir_ops=traced.mlir_ops, **traced.memory)
        mlir_text = traced.mlir_text() if not spec.endswith(".mlir") else None
    placed = None
    if target is not None:
        t2 = time.perf_counter()
        placed = place_on_wafer(g, batch, seq, target, log=log)
        report.update(wafer_report(placed))
        report["compile"]["wafer_seconds"] = time.perf_counter() - t2
        report["compile"]["wafer_stage_seconds"] = placed.seconds
        report["compile"]["seconds"] = time.perf_counter() - t0
        report["compile"]["peak_rss_bytes"] = peak_rss_bytes()
    return Compiled(traced, report, text, mlir_text, placed)


def write_compiled(c: Compiled, out_dir: Path) -> list[Path]:
    files = {"model.ir": c.ir_text, "report.json": to_json(c.report), "report.txt": to_text(c.report)}
    if c.mlir_text is not None:
        files["model.mlir"] = c.mlir_text
    if c.placed is not None:
        pj = placement_json(c.placed)
        files["report.txt"] += placement_text(c.report, pj)
        files["placement.json"] = to_json(pj)
        files["trace.json"] = chrome_trace(c.placed)
        files["mesh.png"] = mesh_png(c.placed)
    write_dir(out_dir, files)
    return [Path(out_dir) / n for n in files]
