"""inference: a forward pass. One graph (``model``), traced (or read from a dump), run through
one pipeline: the given one, or the default (the graph passes, then, with a target, lower, place in
the run's execution mode, route and simulate). Its times are the simulation's; it writes no
section of its own (the report's ``time`` and ``placement`` are its)."""

from __future__ import annotations

from dataclasses import replace

from ..errors import UsageError
from ..frontend.ir_file import header
from ..ir import print_graph
from ..passes import DEFAULT_GRAPH, DEFAULT_WAFER, CompileState, Pass, check_stages, parse_pipeline, spec
from ..passes.base import GRAPH
from ..version import __version__
from .base import Context, Mode, Outcome, RunSpec, register_mode
from .dumps import check_names, dump


def passes_of(run: RunSpec, done: list[Pass], sparsity: float | None) -> list[Pass]:
    """The passes to run: the given ones, or the default pipeline (its place in the run's execution
    mode, with sparsify{density=sparsity} after canonicalize) less what a resumed dump already ran;
    up to the pass named compile_to."""
    if run.pipeline is not None:
        if run.execution is not None:
            raise UsageError("--mode sets the mode of the default pipeline; with -p write place{mode=...} instead")
        if sparsity is not None:
            raise UsageError("--sparsity adds sparsify to the default pipeline; with -p write "
                             "sparsify{density=...} into it instead")
        passes = parse_pipeline(run.pipeline)
    else:
        passes = parse_pipeline(DEFAULT_WAFER if run.target is not None else DEFAULT_GRAPH)
        if sparsity is not None:
            passes.insert(1, parse_pipeline(f"sparsify{{density={sparsity!r}}}")[0])
        if run.execution is not None:
            if run.target is None:
                raise UsageError(f"--mode {run.execution} is the mode of placement on a machine: give --target too")
            passes = [replace(p, mode=run.execution) if p.name == "place" else p for p in passes]
        if done and [p.spec() for p in passes[:len(done)]] == [p.spec() for p in done]:
            passes = passes[len(done):]
    if run.compile_to is not None:
        check_names((run.compile_to,), passes, "--compile-to")
        passes = passes[:[p.name for p in passes].index(run.compile_to) + 1]
    return passes


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
        if run.pipeline is not None:
            parse_pipeline(run.pipeline)  # a bad pipeline fails before any work

    def run(self, ctx: Context) -> Outcome:
        run, machine, log = ctx.run, ctx.machine, ctx.log
        src = ctx.trace("model")
        passes = passes_of(run, src.done, run.options["sparsity"])
        check_stages(passes, GRAPH)
        check_names(run.print_ir_after, passes, "--print-ir-after")
        if machine is None and any(p.needs_machine for p in passes):
            raise UsageError(f"the pipeline places the program on a machine ({spec(passes)}): give --target wse2, "
                             "wse3 or mesh:RxC")
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
