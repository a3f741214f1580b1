"""dce: drop ops whose results nothing reads, and parameters that no op reads."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..ir.rewrite import dead_code_elimination
from .base import GRAPH, CompileState, Pass, register


@register
@dataclass(frozen=True)
class DeadCodeElimination(Pass):
    name = "dce"
    stage = GRAPH
    summary = "drop ops nothing reads and parameters no op reads"

    def run(self, s: CompileState) -> CompileState:
        return replace(s, graph=dead_code_elimination(s.graph))
