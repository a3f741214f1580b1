"""inference: a forward pass. One graph (``model``), traced (or read from a dump), run through
one pipeline: the given one, or the default (the graph passes, then, with a target, lower, place in
the run's execution mode, route and simulate). Its times are the simulation's; it writes no
section of its own (the report's ``time`` and ``placement`` are its)."""

from __future__ import annotations

from ..errors import UsageError
from ..frontend.ir_file import header
from ..ir import print_graph
from ..passes import CompileState, Pass, parse_pipeline, spec
from ..passes.plan import plan_passes
from ..version import __version__
from .base import Context, Mode, Outcome, RunSpec, register_mode
from .dumps import dump


def passes_of(run: RunSpec, done: list[Pass]) -> list[Pass]:
    """The passes to run (``plan.plan_passes``: the given pipeline or the default one, every name
    and stage checked), less what a resumed dump already ran."""
    given = parse_pipeline(run.pipeline) if run.pipeline is not None else None
    return plan_passes(given, run.target, done, run.compile_to, run.execution, run.options["sparsity"],
                       run.print_ir_after)


@register_mode
class Inference(Mode):
    name = "inference"
    graphs = ("model",)
    options = {"sparsity": None}
    summary = "a forward pass: one graph, one pipeline"

    def check(self, run: RunSpec) -> None:
        if run.systems not in (None, 1):
            raise UsageError("--systems N is data-parallel training (add --train) or a pipeline of wafers for "
                             "generation (add --generate)")
        if not (isinstance(run.model, str) and run.model.endswith(".ir")):  # a dump's done passes are in it
            passes_of(run, [])  # the options checked before the trace: a typo is one line at once, not after the work
        elif run.pipeline is not None:
            parse_pipeline(run.pipeline)  # a bad pipeline fails before any work

    def run(self, ctx: Context) -> Outcome:
        run, machine, log = ctx.run, ctx.machine, ctx.log
        src = ctx.trace("model")
        passes = passes_of(run, src.done)
        model = src.model
        files: dict[str, str] = {}
        if src.mlir_text is not None:
            files["model.mlir"] = src.mlir_text
        total = len(src.done) + len(passes)
        if run.print_ir_after_all and not src.done:
            files["ir/00-input.ir"] = header("", model, f"waferscale {__version__}: {model['name']} as imported") \
                + print_graph(src.graph)

        def after(i: int, p: Pass, state: CompileState) -> None:
            if run.print_ir_after_all or p.name in run.print_ir_after:
                n = len(src.done) + i + 1
                title = f"waferscale {__version__}: {model['name']} after pass {n} of {total}, {p.spec()}"
                files[f"ir/{n:02d}-{p.name}.ir"] = dump(state, src.done + passes[:i + 1], model, title)

        state = CompileState(src.graph, samples=model["batch"], tokens=model["seq"], machine=machine, log=log,
                             weights=src.traced.weights if src.traced is not None else None)
        state, records = ctx.pipeline("model", state, passes, after=after)
        graph_passes = [p for p in passes if p.is_graph_pass]
        ir_text = header(spec(src.done + graph_passes), model, f"waferscale {__version__}: {model['name']}") \
            + print_graph(state.graph)
        c = dict(src.compile)
        graph_seconds = sum(r.seconds for r, p in zip(records, passes) if p.is_graph_pass)
        c["our_seconds"] = c["import_seconds"] + c.get("analyze_seconds", 0.0) + graph_seconds
        c["passes"] = [r.as_dict() for r in records]
        wafer = {r.name: r.seconds for r, p in zip(records, passes) if not p.is_graph_pass}
        if wafer:
            c["wafer_seconds"] = sum(wafer.values())
            c["wafer_stage_seconds"] = wafer
        return Outcome(state, state.graph, ir_text, model, c, spec(src.done + passes), traced=src.traced,
                       files=files)
