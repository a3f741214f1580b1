"""inference: a forward pass. One graph (``model``), traced (or read from a dump), run through
one pipeline: the given one, or the default (the graph passes, then, with a target, lower, place in
the run's execution mode, route and simulate). Its times are the simulation's; it writes no
section of its own (the report's ``time`` and ``placement`` are its).

On several systems (``modes/systems.py``): split ``data`` (the default) runs the batch's share on
each, the report's ``time`` and ``placement`` one system's, ``systems`` the whole run's; split
``pipeline`` cuts the lowered program into a pipeline of layer-pipelined parts, one per system
(``systems`` has each one's placement and time; ``system-N/placement.json`` its placement)."""

from __future__ import annotations

from dataclasses import replace

from .. import limits as L
from ..errors import UsageError
from ..frontend.ir_file import header
from ..ir import print_graph
from ..passes import CompileState, Pass, parse_pipeline, spec
from ..passes.plan import plan_passes
from ..report.summary import to_json
from ..report.wafer import placement_json
from ..version import __version__
from .base import Context, Mode, Outcome, RunSpec, register_mode
from .dumps import dump
from .systems import (
    crossing_bytes,
    data_parallel,
    link_section,
    part_program,
    pipeline_seconds,
    split_pipeline,
    swarmx_latency_cycles,
    system_detail,
)

PIPELINE_PART = "place{mode=pipelined},route,simulate"


def passes_of(run: RunSpec, done: list[Pass]) -> list[Pass]:
    """The passes to run (``plan.plan_passes``: the given pipeline or the default one, every name
    and stage checked), less what a resumed dump already ran."""
    given = parse_pipeline(run.pipeline) if run.pipeline is not None else None
    return plan_passes(given, run.target, done, run.compile_to, run.execution, run.options["sparsity"],
                       run.print_ir_after, run.options["quantize"])


@register_mode
class Inference(Mode):
    name = "inference"
    graphs = ("model",)
    options = {"sparsity": None, "quantize": None}
    splits = ("data", "pipeline")
    summary = "a forward pass: one graph, one pipeline; data parallel or a pipeline of layers over several systems"

    def check(self, run: RunSpec) -> None:
        systems = run.systems or 1
        L.check_int("--systems", systems, 1, L.MAX_SYSTEMS)
        if systems > 1:
            if run.target is None:
                raise UsageError("--systems N simulates N systems: give --target wse2, wse3 or mesh:RxC")
            if isinstance(run.model, str) and run.model.endswith(".ir"):
                raise UsageError("not supported: --systems with a graph dump (its batch is its own): compile the "
                                 "model itself")
            if run.split == "data" and run.example_inputs is not None:
                raise UsageError("not supported: --split data with example inputs (their batch is their own): give "
                                 "the model by name or config, or split pipeline")
            if run.split == "data" and run.batch % systems:
                raise UsageError(f"--batch {run.batch} does not split evenly over --systems {systems}: give a "
                                 f"multiple of {systems} (or --split pipeline)")
            if run.split == "pipeline" and (run.pipeline is not None or run.compile_to is not None
                                            or run.execution not in (None, "pipelined")):
                raise UsageError("not supported: a pipeline, --compile-to or --mode with --split pipeline (each "
                                 "system's part is placed layer-pipelined)")
        if not (isinstance(run.model, str) and run.model.endswith(".ir")):  # a dump's done passes are in it
            passes_of(run, [])  # the options checked before the trace: a typo is one line at once, not after the work
        elif run.pipeline is not None:
            parse_pipeline(run.pipeline)  # a bad pipeline fails before any work

    def run(self, ctx: Context) -> Outcome:
        run, machine, log = ctx.run, ctx.machine, ctx.log
        systems = run.systems or 1
        src = ctx.trace("model", batch=run.batch // systems if run.split == "data" else None)
        if systems > 1 and run.split == "pipeline":
            return self._pipeline(ctx, src)
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
                             weights=src.traced.weights if src.traced is not None else None,
                             stream_latency=swarmx_latency_cycles(systems, machine) if systems > 1 else 0)
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
        extra = {}
        if systems > 1 and state.sim is not None:
            t = state.sim.cycles / machine.clock_hz
            dp = data_parallel(t, model["batch"] * model["seq"], systems, machine,
                               weight_bytes=state.program.weight_bytes, streamed=state.placement.is_streaming)
            one = {"cores_used": state.placement.cores_used, "batch": model["batch"], "cycles": state.sim.cycles}
            extra["systems"] = dp | {"batch": run.batch, "batch_per_system": model["batch"],
                                     "latency_seconds": state.sim.latency / machine.clock_hz,
                                     "detail": [one] * systems}
        return Outcome(state, state.graph, ir_text, model, c, spec(src.done + passes), traced=src.traced,
                       files=files, extra=extra)

    def _pipeline(self, ctx: Context, src) -> Outcome:
        """The forward pass as a pipeline of layers over the systems (``modes/systems.py``)."""
        run, machine, log = ctx.run, ctx.machine, ctx.log
        systems, model = run.systems, src.model
        passes = passes_of(run, src.done)
        lower = next(i for i, p in enumerate(passes) if p.name == "lower")
        state = CompileState(src.graph, samples=model["batch"], tokens=model["seq"], machine=machine, log=log,
                             weights=src.traced.weights if src.traced is not None else None)
        lowered, records = ctx.pipeline("model", state, passes[:lower + 1])
        prog = lowered.program
        parts = split_pipeline(prog, systems)
        done = parse_pipeline(ctx.executed_pipelines()["model"])
        del ctx.executed["model"]  # each system ran the rest: recorded under its own name
        states = []
        for i, ks in enumerate(parts):
            name = f"model/system-{i + 1}"
            ctx.begin(name, done)
            log(f"system {i + 1} of {systems}: placing {len(ks)} kernels")
            s, recs = ctx.pipeline(name, replace(lowered, program=part_program(prog, ks, systems)), PIPELINE_PART)
            records += recs
            states.append(s)
        seconds = pipeline_seconds([s.sim for s in states], machine)
        tokens = model["batch"] * model["seq"]
        section = {"split": "pipeline", "systems": systems, "seconds": seconds, "tokens": tokens,
                   "tokens_per_s": tokens / seconds,
                   "latency_seconds": pipeline_seconds([replace(s.sim, cycles=s.sim.latency) for s in states],
                                                       machine),
                   "inter_system_link": link_section(machine, crossing_bytes(prog, parts)),
                   "detail": [system_detail(prog, ks, s) for ks, s in zip(parts, states)]}
        graph_passes = [p for p in passes if p.is_graph_pass]
        ir_text = header(spec(src.done + graph_passes), model, f"waferscale {__version__}: {model['name']}") \
            + print_graph(lowered.graph)
        c = dict(src.compile)
        c["passes"] = [r.as_dict() for r in records]
        files = {f"system-{i + 1}/placement.json": to_json(placement_json(s)) for i, s in enumerate(states)}
        return Outcome(lowered, lowered.graph, ir_text, model, c,
                       spec(src.done + passes[:lower + 1] + parse_pipeline(PIPELINE_PART)), traced=src.traced,
                       files=files, extra={"systems": section})
