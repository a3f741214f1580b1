"""Passes: graph passes (canonicalize, fuse, dce, autodiff, adamw) that rewrite the IR, and the wafer stages
(lower, place, route, simulate) on the lowered program; each a small named unit with typed
options, run by one pipeline string (``pipeline.py``)."""

from . import (  # noqa: F401  (register the passes)
    adamw,
    autodiff,
    canonicalize,
    dce,
    fuse,
    kv_cache,
    lora,
    lower,
    place,
    quantize,
    recompute,
    route,
    simulate,
    sparsify,
)
from .base import PASSES, CompileState, Pass
from .pipeline import DEFAULT_GRAPH, DEFAULT_WAFER, PassRecord, check_stages, parse_pipeline, run_pipeline, spec

__all__ = ["DEFAULT_GRAPH", "DEFAULT_WAFER", "PASSES", "CompileState", "Pass", "PassRecord", "check_stages",
           "parse_pipeline", "run_pipeline", "spec"]
