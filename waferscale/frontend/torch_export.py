"""Trace any ``nn.Module`` with example inputs through ``torch.export`` and import it into our IR.
Weights never enter the IR: a model traced on the meta device imports without a byte of them."""

from __future__ import annotations

import time

import torch

from ..errors import UsageError, WaferError
from ..ir import WeightStore
from .fx_import import import_program
from .traced import Traced, graph_name, tied_names, to_numpy


def trace_module(module: torch.nn.Module, example_inputs: tuple, name: str,
                 strip_prefix: str = "") -> Traced:
    """Export any module with example inputs and import it; weights are kept if they are real."""
    module = module.eval()
    t0 = time.perf_counter()
    try:
        ep = torch.export.export(module, example_inputs, strict=False)
    except WaferError:
        raise
    except Exception as e:  # torch's own message is long: keep its first line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"torch.export could not trace {name}: {first}") from e
    t1 = time.perf_counter()
    graph, targets = import_program(ep, graph_name(name), strip_prefix, tied_names(module))
    t2 = time.perf_counter()
    on_meta = any(p.is_meta for p in module.parameters())
    state = dict(module.named_parameters(remove_duplicate=False)) | dict(module.named_buffers())
    weights = None if on_meta else WeightStore({k: to_numpy(state[t]) for k, t in targets.items()})
    return Traced(graph, weights, sum(p.numel() for p in module.parameters()),
                  "meta" if on_meta else "cpu", {"export": t1 - t0, "import": t2 - t1}, module=module)
