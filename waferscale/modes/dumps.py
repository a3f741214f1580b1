"""The IR dumps of ``--print-ir-after`` and the check of the pass names it is given."""

from __future__ import annotations

from ..backends.program import program_text
from ..errors import UsageError
from ..frontend.ir_file import header
from ..ir import print_graph
from ..passes import CompileState, Pass, spec
from ..passes.base import GRAPH


def check_names(names: tuple[str, ...], passes: list[Pass], what: str) -> None:
    known = {p.name for p in passes}
    for n in names:
        if n not in known:
            raise UsageError(f"{what} {n}: the pipeline has no pass of that name ({spec(passes) or 'it is empty'})")


def dump(state: CompileState, done: list[Pass], model: dict, title: str) -> str:
    """The text of a dump: a graph with the header that lets it resume, or the lowered program."""
    if state.stage == GRAPH:
        return header(spec(done), model, title) + print_graph(state.graph)
    busy = [t.busy for t in state.sim.kernels] if state.sim is not None else None
    return f"# {title}\n" + program_text(state.program, state.placement, state.routing, busy)
