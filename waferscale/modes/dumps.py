"""The IR dumps of ``--print-ir-after``."""

from __future__ import annotations

from ..backends.program import program_text
from ..frontend.ir_file import header
from ..ir import print_graph
from ..passes import CompileState, Pass, spec
from ..passes.base import GRAPH


def dump(state: CompileState, done: list[Pass], model: dict, title: str) -> str:
    """The text of a dump: a graph with the header that lets it resume, or the lowered program."""
    if state.stage == GRAPH:
        return header(spec(done), model, title) + print_graph(state.graph)
    busy = [t.busy for t in state.sim.kernels] if state.sim is not None else None
    return f"# {title}\n" + program_text(state.program, state.placement, state.routing, busy)
