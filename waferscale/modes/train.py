"""train: a training step (forward, backward, optimizer), simulated on one system or a
data-parallel cluster (``wafer compile MODEL --train``).

The graph passes are ``canonicalize,autodiff`` (with ``lora{..},autodiff{wrt=lora}`` to fine-tune
adapters only, ``sparsify{density=D}`` after canonicalize for sparse training), then ``adamw``
makes the whole step (graph ``step``: ``model.ir``). The wafer runs the forward and backward
(graph ``train``); the optimizer runs where the execution mode keeps its state:

- **layer-pipelined** (one system, only when everything fits): every forward and backward kernel
  on its own rectangle, their weights in SRAM (a weight's forward and backward kernels each hold
  it), the weight gradients accumulating in their kernels, and the optimizer's state (f32 moments,
  and master weights for 16-bit ones) spread over every core; the optimizer runs on the wafer. A
  model whose weights, gradients and state exceed the SRAM is refused with its shortfall.
- **weight streaming** (``recompute`` added to the graph passes): each layer's weights stream in
  for the forward and again for the backward, the gradients stream out, MemoryX runs the
  optimizer. The batch (per system) runs in micro-batches of the most samples whose activations
  fit (``streaming.largest_batch``, rounded down to a divisor of the batch); MemoryX sums their
  gradients.
- ``systems`` > 1 (split ``data``, the default): weight streaming, data parallel, the batch split
  evenly; the SwarmX tree's latency is part of every weight stream the simulation times
  (``CompileState.stream_latency``, ``modes/systems.py``).
- ``systems`` > 1, split ``pipeline``: the lowered forward and backward cut into a pipeline of
  layers (``modes/systems.split_pipeline``: a layer's forward and backward kernels on one system),
  each part layer-pipelined with its weights, gradients and its share of the optimizer state in
  SRAM. A step is the whole batch forward through the systems and back (``2 (N - 1)`` crossings),
  then every system's optimizer on its share at once (our assumption: a part's share of the
  optimizer's work is its share of the weight bytes). The report's ``systems`` has each part.

``auto`` picks layer-pipelined when it fits (with the optimizer state's share of each core set
aside, which ``place{mode=auto}`` cannot know) and weight streaming otherwise. The report gains a
``train`` section (the step; ``modes/train_report.py``); ``time`` and ``placement`` describe the
simulated micro-batch. With ``lora`` or ``sparsity`` the report's ``baseline`` is a second run,
full fine-tuning or dense training of the same model, batch and execution mode, recorded with its
own run spec, and the ``train`` section sets the step beside it.
"""

from __future__ import annotations

from dataclasses import replace
from math import ceil

from .. import limits as L
from ..errors import FitError, UsageError
from ..frontend.ir_file import header
from ..ir import print_graph
from ..ir.ops.grad import MASK
from ..passes import CompileState, parse_pipeline
from ..passes.place import MODES, place
from ..passes.route import RoutingError
from ..passes.streaming import largest_batch
from ..report.energy import train_energy
from ..report.summary import to_json
from ..report.wafer import placement_json
from ..runtime import train_time as TT
from ..version import __version__
from . import train_report as R
from .base import Context, Mode, Outcome, RunSpec, register_mode
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

GRAPH_PIPELINE = "canonicalize,autodiff"
MICRO_BATCH_TRIES = 6
WAFER_PIPELINE = "fuse,lower,place{mode=%s},route,simulate"
# Weight streaming takes ``place``'s default kernels, ``streamed_gemm=auto``: each layer the stationary GEMMs or
# the streamed-weight ones, whichever places it faster (passes/streaming.choose_per_layer). cerebras-gpt-13b,
# batch 720 on 8 WSE-2s: 9.73 s a step, against 10.43 s with ``streamed_gemm=sparse`` (the stationary kernel
# for every dense GEMM, what training ran before; such a pipeline still runs: docs/sparsity.md).
STREAM_TRAIN_PIPELINE = "fuse,lower,place{mode=streaming},route,simulate"
SUMMARY_KEYS = ("step_seconds", "tokens_per_s", "stream_in_bytes", "stream_out_bytes", "micro_batch", "micro_batches")


def graph_pipeline(lora: str | None, sparsity: float | None) -> str:
    pipe = GRAPH_PIPELINE if lora is None else f"canonicalize,{lora},autodiff{{wrt=lora}}"
    if sparsity is not None:
        pipe = pipe.replace("canonicalize,", f"canonicalize,sparsify{{density={sparsity!r}}},", 1)
    return pipe


def compile_section(src, records, wafer_records) -> dict:
    """The report's compile section of a step: the frontend's timings, then every pass record (the
    graph passes, then the wafer's), our seconds and the wafer's by stage."""
    c = dict(src.compile)
    c["passes"] = [r.as_dict() for r in records + wafer_records]
    c["our_seconds"] = c["import_seconds"] + c.get("analyze_seconds", 0.0) + sum(r.seconds for r in records)
    c["wafer_seconds"] = sum(r.seconds for r in wafer_records)
    c["wafer_stage_seconds"] = {r.name: r.seconds for r in wafer_records}
    return c


@register_mode
class Train(Mode):
    name = "train"
    section = "train"
    graphs = ("train", "step")
    options = {"lora": None, "sparsity": None, "micro_batch": None, "tokens": None}
    splits = ("data", "pipeline")
    summary = "a training step: forward, backward and AdamW; data parallel over several systems"

    def check(self, run: RunSpec) -> None:
        if run.target is None:
            raise UsageError("--train simulates a training step on a machine: give --target wse2, wse3 or mesh:RxC")
        if not isinstance(run.model, str) or run.model.endswith((".ir", ".mlir")):
            raise UsageError("--train takes a zoo name or a Hugging Face config (the loss needs the model's logits)")
        if run.pipeline is not None or run.compile_to is not None or run.print_ir_after or run.print_ir_after_all:
            raise UsageError("not supported: a pipeline, --compile-to or --print-ir-after with --train (its passes "
                             "are fixed)")
        systems = run.systems or 1
        L.check_int("--systems", systems, 1, L.MAX_SYSTEMS)
        if systems > 1 and run.split == "pipeline":
            if run.execution == "streaming":
                raise UsageError("--split pipeline places each system's part layer-pipelined: drop --mode streaming")
            if run.options["sparsity"] is not None:
                raise UsageError("not supported: --sparsity with --split pipeline (give --split data)")
        elif run.batch % systems:
            raise UsageError(f"--batch {run.batch} does not split evenly over --systems {systems}: give a multiple "
                             f"of {systems}")
        if systems > 1 and run.split != "pipeline" and run.execution == "pipelined":
            raise UsageError("--systems runs weight streaming data-parallel; layer-pipelined training is one system: "
                             "drop --mode pipelined")
        lora, sparsity = run.options["lora"], run.options["sparsity"]
        if sparsity is not None and lora is not None:
            raise UsageError("not supported: --sparsity with --lora (sparse frozen weights under adapters); give one")
        if sparsity is not None and not 0.0 < sparsity <= 1.0:
            raise UsageError(f"--sparsity {sparsity} must be in (0, 1]: the fraction of each linear weight kept (0.25 "
                             "keeps a quarter)")
        micro, budget, per_system = run.options["micro_batch"], run.options["tokens"], run.batch // systems
        if micro is not None:
            L.check_int("--micro-batch", micro, 1, per_system)
            if per_system % micro:
                raise UsageError(f"--micro-batch {micro} does not divide the batch per system ({per_system}): give a "
                                 f"divisor of {per_system}")
            if run.execution == "pipelined":
                raise UsageError("--micro-batch accumulates gradients over micro-batches in weight streaming; "
                                 "layer-pipelined training runs the whole batch at once: drop --mode pipelined")
        if budget is not None and not budget > 0:
            raise UsageError(f"--tokens {budget:g} must be positive: the tokens to train on")

    def _build(self, ctx: Context, batch: int, pipe: str):
        src = ctx.trace("train", batch=batch)
        state, records = ctx.pipeline("train", CompileState(src.graph, samples=batch, tokens=src.model["seq"],
                                                            log=ctx.log), pipe)
        step = self._step(ctx, state, pipe)
        return src, state, step, records

    @staticmethod
    def _step(ctx: Context, state: CompileState, pipe: str):
        ctx.begin("step", parse_pipeline(pipe))
        return ctx.pipeline("step", state, "adamw")[0].graph

    def run(self, ctx: Context) -> Outcome:
        run, machine, log = ctx.run, ctx.machine, ctx.log
        mode, systems, batch = run.execution or "auto", run.systems or 1, run.batch
        per_system = batch // systems
        lora, sparsity = run.options["lora"], run.options["sparsity"]
        graph_pipe = graph_pipeline(lora, sparsity)
        if systems > 1 and run.split == "pipeline":
            return self._pipeline(ctx, graph_pipe)
        stream_pipe = graph_pipe + ",recompute"
        src, state, step, records = self._build(ctx, per_system, graph_pipe)
        train = state.graph
        tokens, name = src.model["seq"], src.model["name"]
        need = R.pipelined_need(step, train)
        reason = ""
        forced = run.options["micro_batch"]
        chosen = "streaming" if systems > 1 or mode == "streaming" or forced is not None else "pipelined"
        wafer = None
        if chosen == "pipelined":
            usable = machine.cores * machine.usable_sram_bytes
            if sum(need.values()) > usable:
                if mode == "pipelined":
                    raise R.refuse_pipelined(name, machine, need)
                refused = R.refuse_pipelined(name, machine, need)
                chosen, reason = "streaming", f"layer-pipelined does not fit ({refused})"
            else:
                spread = -(-need["optimizer_state"] // machine.cores)  # the state, spread over every core
                small = replace(machine, sram_bytes=machine.sram_bytes - spread)
                try:
                    wafer = ctx.pipeline("train", CompileState(train, samples=per_system, tokens=tokens, machine=small,
                                                               log=log), WAFER_PIPELINE % "pipelined")
                except (FitError, RoutingError) as e:
                    if mode == "pipelined" and isinstance(e, RoutingError) and e.needed:
                        raise RoutingError(
                            f"{name} does not fit layer-pipelined training on {machine.name}: {e.needed} colors needed "
                            f"on one link, {e.available} available ({e.why or 'its flows cross there'}; XY routes, "
                            "one color per distinct value on a link); use weight streaming (--mode streaming)",
                            e.needed, e.available, e.why) from None
                    if mode == "pipelined":
                        raise type(e)(f"{e} (with {spread:,} B per core kept for the optimizer state)") from None
                    chosen, reason = "streaming", f"layer-pipelined does not fit ({e})"
                else:
                    reason = (f"it fits: weights, gradients and optimizer state take {R.size_text(sum(need.values()))} "
                              f"of {R.size_text(usable)} usable")
        micro = per_system
        latency = swarmx_latency_cycles(systems, machine)
        if chosen == "streaming":
            # only the blocks' inputs stay in SRAM from the forward
            train = ctx.pipeline("train", CompileState(train, samples=per_system, tokens=tokens, log=log),
                                 "recompute")[0].graph
            step = self._step(ctx, CompileState(train, samples=per_system, tokens=tokens, log=log), stream_pipe)
            lowered, _ = ctx.pipeline("train", CompileState(train, samples=per_system, tokens=tokens, machine=machine,
                                                            log=log), "fuse,lower", record=False)  # a probe
            most = largest_batch(lowered.program, machine, place, per_system)
            if most == 0:
                raise FitError(f"{name} does not fit on {machine.name} for weight-streaming training even at a "
                               f"micro-batch of 1 sample of {tokens} tokens: use a shorter --seq or a bigger --target")
            # the largest micro-batch that fits and routes: a smaller one leaves the layers more SRAM, so
            # their kernels spread wider and fewer flows share a link's colors (and the graph traced at the
            # micro-batch itself may need a few bytes more than the estimate from the whole batch's)
            tries = [d for d in range(most, 0, -1) if per_system % d == 0][:MICRO_BATCH_TRIES]
            if forced is not None:  # it fits or the compile stops here
                if forced > most:
                    raise FitError(f"--micro-batch {forced} does not fit {name} on {machine.name} in weight "
                                   f"streaming: at most {most} sample(s) of {tokens} tokens fit per micro-batch (their "
                                   f"activations stay in SRAM between layers); give --micro-batch {tries[0]} or less")
                tries = [forced]
            for i, micro in enumerate(tries):
                if micro != per_system:
                    log(f"micro-batches of {micro} sample(s): {per_system // micro} per step on each system")
                    src, state, step, records = self._build(ctx, micro, stream_pipe)
                    train = state.graph
                try:
                    wafer = ctx.pipeline("train", CompileState(train, samples=micro, tokens=tokens, machine=machine,
                                                               stream_latency=latency, log=log),
                                         STREAM_TRAIN_PIPELINE)
                    break
                except (RoutingError, FitError) as e:  # traced at this micro-batch, a layer may need a little more
                    if i == len(tries) - 1:
                        raise type(e)(f"{e} (tried micro-batches of {', '.join(map(str, tries))})") from None
                    log(f"micro-batch {micro} does not fit or route ({e}); trying a smaller one")
            reason = reason or ("asked for (--mode streaming)" if mode == "streaming" else
                                f"--micro-batch {forced} accumulates gradients" if forced is not None else
                                f"data parallel on {systems} systems" if systems > 1 else reason)
        state, wafer_records = wafer
        state = replace(state, placement=replace(state.placement, reason=f"{MODES[chosen]}: {reason}"))
        # what baseline() and compare() need: the execution mode chosen, the step's state and graph
        self.chosen, self.state, self.train = chosen, state, train
        section = R.train_section(state, src, train, step, chosen, systems, batch, per_system, micro, need)
        section["time_to_train"] = TT.time_to_train(name, src.model.get("params") or 0, section["step_seconds"],
                                                    section["tokens_per_step"], systems, section["flops_per_token"],
                                                    run.options["tokens"])
        ran = ctx.executed["step"]
        ir_text = header(",".join(ran), src.model, f"waferscale {__version__}: {name} training step") \
            + print_graph(step)
        c = compile_section(src, records, wafer_records)
        pipeline = ",".join(ran) + "," + ",".join(r.spec for r in wafer_records)
        extra = {"energy": train_energy(state, section)}
        if systems > 1:  # data parallel: every system runs its share of the batch (modes/systems.py)
            one = {"cores_used": state.placement.cores_used, "batch": per_system, "micro_batch": micro,
                   "step_seconds": section["step_seconds"], "stream_in_bytes": section["stream_in_bytes"],
                   "stream_out_bytes": section["stream_out_bytes"]}
            extra["systems"] = data_parallel(section["step_seconds"], per_system * tokens, systems, machine,
                                             weight_bytes=section["stream_in_bytes"],
                                             grad_bytes=section["stream_out_bytes"], streamed=True) \
                | {"batch": batch, "batch_per_system": per_system, "detail": [one] * systems}
        return Outcome(state, step, ir_text, dict(src.model), c, pipeline, section, traced=src.traced, extra=extra)

    def _pipeline(self, ctx: Context, graph_pipe: str) -> Outcome:
        """The step as a pipeline of layers over the systems (module docstring)."""
        run, machine, log = ctx.run, ctx.machine, ctx.log
        n, batch = run.systems, run.batch
        src, state, step, records = self._build(ctx, batch, graph_pipe)
        train, tokens = state.graph, src.model["seq"]
        need = R.pipelined_need(step, train)
        lowered, low = ctx.pipeline("train", CompileState(train, samples=batch, tokens=tokens, machine=machine,
                                                          log=log), "fuse,lower")
        prog = lowered.program
        parts = split_pipeline(prog, n)
        done = parse_pipeline(ctx.executed_pipelines()["train"])
        del ctx.executed["train"]  # each system ran the rest: recorded under its own name
        states, wafer_records, shares = [], list(low), []
        for i, ks in enumerate(parts):
            sub = part_program(prog, ks, n)
            share = sub.weight_bytes / max(prog.weight_bytes, 1)
            spread = -(-int(need["optimizer_state"] * share) // machine.cores)  # its optimizer state, on every core
            name = f"train/system-{i + 1}"
            ctx.begin(name, done)
            log(f"system {i + 1} of {n}: placing {len(ks)} forward and backward kernels")
            try:
                s, recs = ctx.pipeline(name, replace(lowered, program=sub, machine=replace(
                    machine, sram_bytes=machine.sram_bytes - spread)), WAFER_PIPELINE.split(",", 2)[2] % "pipelined")
            except (FitError, RoutingError) as e:
                raise type(e)(f"system {i + 1} of {n}: {str(e).splitlines()[0]} (with {spread:,} B per core kept for "
                              "its optimizer state); use more --systems or --split data") from None
            states.append(replace(s, machine=machine))
            wafer_records += recs
            shares.append(share)
        m = machine
        micro = pipeline_seconds([s.sim for s in states], m, crossings=2 * (n - 1))
        opt = max(TT.wafer_optimizer_cycles(step, m) * sh for sh in shares)  # every system's share at once
        seconds = micro + opt / m.clock_hz
        self.chosen, self.state, self.train = "pipelined", states[0], train
        section = R.train_section(states[0], src, train, step, "pipelined", n, batch, batch, batch, need)
        step_tokens = batch * tokens
        section |= {
            "split": "pipeline", "step_cycles": ceil(seconds * m.clock_hz), "step_seconds": seconds,
            "micro_batch_seconds": micro, "tokens_per_s": step_tokens / seconds,
            "tokens_per_s_per_system": step_tokens / seconds / n,
            "mfu": section["flops_per_token"] * step_tokens / (seconds * m.mfu_peak_flops * n),
            "optimizer": {"where": "the wafers: each system's share of the parameters on its cores",
                          "seconds": opt / m.clock_hz, "exposed_seconds": opt / m.clock_hz},
            "layers": [x for s in states for x in R.layers_section(s)],
        }
        section.pop("swarmx", None)  # no SwarmX in a pipeline of systems: the link between them
        detail = [system_detail(prog, ks, s) | {"optimizer_share": sh} for ks, s, sh in zip(parts, states, shares)]
        systems = {"split": "pipeline", "systems": n, "seconds": seconds, "tokens": step_tokens,
                   "tokens_per_s": step_tokens / seconds, "crossings": 2 * (n - 1),
                   "inter_system_link": link_section(m, crossing_bytes(prog, parts)), "detail": detail}
        ran = ctx.executed["step"]
        ir_text = header(",".join(ran), src.model, f"waferscale {__version__}: {src.model['name']} training step") \
            + print_graph(step)
        c = compile_section(src, records, wafer_records)
        pipeline = ",".join(ran) + ",fuse,lower," + WAFER_PIPELINE.split(",", 2)[2] % "pipelined"
        files = {f"system-{i + 1}/placement.json": to_json(placement_json(s)) for i, s in enumerate(states)}
        return Outcome(lowered, step, ir_text, dict(src.model), c, pipeline, section, traced=src.traced,
                       files=files, extra={"systems": systems})

    def baseline(self, run: RunSpec) -> RunSpec | None:
        """Full fine-tuning beside LoRA, dense training beside sparse: the same model, batch and
        execution mode."""
        if run.options["lora"] is None and run.options["sparsity"] is None:
            return None
        return replace(run, options={**run.options, "lora": None, "sparsity": None}, execution=self.chosen)

    def compare(self, report: dict, baseline: dict) -> None:
        t, base = report["train"], baseline["train"]
        lora, sparsity = report["run"]["options"]["lora"], report["run"]["options"]["sparsity"]
        summary = {k: base[k] for k in SUMMARY_KEYS} | {"optimizer_seconds": base["optimizer"]["seconds"]}
        if lora is not None:
            trained = sum(p.type.numel for p in self.train.params if p.name.startswith("lora."))
            frozen = sum(p.type.numel for p in self.train.params if not p.name.startswith(MASK)) - trained
            t["lora"] = {"pass": lora, "trainable_params": trained, "frozen_params": frozen,
                         "full_fine_tuning": summary}
        if sparsity is not None:
            t["sparsity"] = R.sparsity_section(f"sparsify{{density={sparsity!r}}}", self.state, self.train, t, base)

