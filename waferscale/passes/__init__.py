"""Passes: graph passes (canonicalize, fuse, dce) that rewrite the IR, and the wafer stages
(lower, place, route, simulate) on the lowered program; each a small named unit with typed
options, run by one pipeline string (``pipeline.py``)."""

from . import canonicalize, dce, fuse, kv_cache, lower, place, route, simulate  # noqa: F401  (register the passes)
from .base import PASSES, CompileState, Pass
from .pipeline import DEFAULT_GRAPH, DEFAULT_WAFER, PassRecord, check_stages, parse_pipeline, run_pipeline, spec

__all__ = ["DEFAULT_GRAPH", "DEFAULT_WAFER", "PASSES", "CompileState", "Pass", "PassRecord", "check_stages",
           "parse_pipeline", "run_pipeline", "spec"]
