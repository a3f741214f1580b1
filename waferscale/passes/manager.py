"""The pass manager: a pipeline string names passes in order, e.g. ``"dce"``; each pass is a
function from graph to graph, verified after it runs and timed."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import UsageError
from ..ir import Graph, verify
from .dce import dead_code_elimination

PASSES: dict[str, Callable[[Graph], Graph]] = {
    "dce": dead_code_elimination,
}


@dataclass(frozen=True)
class PassTiming:
    name: str
    seconds: float
    ops_before: int
    ops_after: int


def parse_pipeline(pipeline: str) -> list[str]:
    names = [n.strip() for n in pipeline.split(",") if n.strip()]
    for n in names:
        if n not in PASSES:
            raise UsageError(f"unknown pass {n!r} in pipeline {pipeline!r} (known: {', '.join(sorted(PASSES))})")
    return names


def run_pipeline(g: Graph, pipeline: str) -> tuple[Graph, list[PassTiming]]:
    timings = []
    for name in parse_pipeline(pipeline):
        before, t0 = len(g.ops), time.perf_counter()
        g = verify(PASSES[name](g))
        timings.append(PassTiming(name, time.perf_counter() - t0, before, len(g.ops)))
    return g, timings
