"""lower: the graph to mesh kernels and the flows between them (``backends/lowering.py``)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..backends.lowering import lower
from .base import GRAPH, PROGRAM, CompileState, Pass, register


@register
@dataclass(frozen=True)
class Lower(Pass):
    name = "lower"
    stage = GRAPH
    gives = PROGRAM
    summary = "one mesh kernel per op that computes (or fused region); layout ops vanish into the flows"

    def run(self, s: CompileState) -> CompileState:
        return replace(s, program=lower(s.graph, samples=s.samples, tokens=s.tokens, position=s.position,
                                             machine=s.machine))
