"""The torch-mlir frontend end to end: module -> torch dialect (torch-mlir) -> our IR.

The counterpart of ``torch_export.trace_module``; ``trace_lm(..., frontend="torch-mlir")`` uses
it. Besides the graph it keeps the torch-dialect module (so that ``wafer compile`` can write it
out) and what the import cost in time and memory.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass, field

import torch
from torch_mlir import ir

from ..ir import WeightStore
from .torch_mlir_export import export_to_torch_dialect, new_context
from .torch_mlir_import import import_module, parse_file
from .traced import Traced, graph_name, tied_names, to_numpy


@dataclass
class MlirTraced(Traced):
    mlir: ir.Module | None = None  # the torch-dialect module, free of weight data
    memory: dict[str, int] = field(default_factory=dict)  # report key -> bytes
    mlir_ops: int = 0  # ops in the module's function, constants included

    def mlir_text(self) -> str:
        """The module as torch-mlir prints it, with locations (module paths, source lines)."""
        return self.mlir.operation.get_asm(enable_debug_info=True)


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def count_ops(m: ir.Module) -> int:
    return sum(len(r.blocks[0].operations) for op in m.body.operations for r in op.operation.regions)


def trace_module_mlir(module: torch.nn.Module, example_inputs: tuple, name: str,
                      strip_prefix: str = "") -> MlirTraced:
    """Export any module through torch-mlir and import the module; weights are kept if they are real."""
    module = module.eval()
    m, targets, cost = export_to_torch_dialect(module, example_inputs, graph_name(name), strip_prefix,
                                               tied_names(module))
    t0 = time.perf_counter()
    graph, keys = import_module(m)
    seconds = {"export": cost.export_seconds, "mlir_import": cost.import_seconds, "import": time.perf_counter() - t0}
    # the process's peak by the end of the import (export included): a 13B model shows it holds no weights
    memory = {"mlir_import_peak_rss_bytes": peak_rss_bytes(),
              "mlir_import_rss_growth_bytes": cost.import_rss_growth_bytes}
    on_meta = any(p.is_meta for p in module.parameters())
    state = dict(module.named_parameters(remove_duplicate=False)) | dict(module.named_buffers())
    weights = None if on_meta else WeightStore({k: to_numpy(state[targets[key]]) for k, key in keys.items()})
    return MlirTraced(graph, weights, sum(p.numel() for p in module.parameters()), "meta" if on_meta else "cpu",
                      seconds, module=module, mlir=m, memory=memory, mlir_ops=count_ops(m))


def trace_mlir_file(path: str, log=lambda msg: None) -> MlirTraced:
    """Read a torch-dialect module that torch-mlir wrote; shapes and dtypes are the module's own.

    Parameter data is never read (the file may hold none), so there are no weights."""

    log(f"parsing {path} as a torch-dialect module")
    t0 = time.perf_counter()
    m = parse_file(path, new_context())
    t1 = time.perf_counter()
    graph, _ = import_module(m, source=str(path))
    t2 = time.perf_counter()
    ids = graph.inputs[0].type if graph.inputs else None
    batch, seq = ids.shape if ids is not None and ids.rank == 2 and ids.dtype.startswith("i") else (1, 1)
    floats = [v.type.dtype for v in [*graph.outputs, *graph.params] if v.type.dtype in ("f16", "bf16", "f32", "f64")]
    params = sum(p.type.numel for p in graph.params)
    info = {"name": graph.name, "source": "mlir", "layers": None, "d_model": None, "heads": None, "d_ffn": None,
            "vocab": None, "context": None, "activation": None, "batch": batch, "seq": seq,
            "dtype": floats[0] if floats else None, "seed": None}
    seconds = {"imports": 0.0, "build": 0.0, "export": 0.0, "mlir_import": t1 - t0, "import": t2 - t1}
    memory = {"mlir_import_peak_rss_bytes": peak_rss_bytes(), "mlir_import_rss_growth_bytes": 0}
    return MlirTraced(graph, None, params, "file", seconds, info, mlir=m, memory=memory, mlir_ops=count_ops(m))
