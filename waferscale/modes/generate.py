"""generate: generation on the wafer, a prefill and a one-token decode step with a KV cache, placed together
and simulated; time to first token, decode time per token and tokens/s.

The model is traced twice as a step of generation (``frontend/lm.py`` ``StepLM``: token ids and
their positions in): over the prompt (``P`` tokens) and over one token. The ``kv-cache`` pass
turns each into a graph whose KV caches (``P + T`` rows) are state, read and appended and handed
on (``passes/kv_cache.py``); then both are canonicalized, fused and lowered. They lower to the
same kernels, as they hold the same weights: the wafer holds one copy, so the decode step is
placed (layer-pipelined, every weight and every sequence's KV cache in SRAM) and the prefill runs
on the same rectangles.

- **Time to first token** is the prefill's simulated time: all ``B`` prompts through the
  pipeline, the first token sampled from the last position's logits at the wafer's edge.
- **A decode step** is one token of each of the ``B`` sequences through the pipeline. Its cost
  grows with its position (attention reads one more cached row per step), so it is simulated at
  the first and at the last of the ``T - 1`` steps (positions ``P`` and ``P + T - 2``), and the
  time per token is their mean: the mean over all the steps, where the cost is linear in the
  position (the ceilings of the rows' shares of keys aside).
- **Across systems** (``systems`` > 1): the kernels are cut, at transformer blocks, into ``N``
  consecutive parts of about equal weight, each placed on a wafer of its own; a token's activations
  cross from one system to the next over the link of ``backends/assumptions.py``
  (the machine file's ``inter_system_*``): the next system's simulation streams them in at the link's rate, as it
  streams a graph input, and each crossing adds the link's latency. A run takes every system's
  latency and every crossing's once, plus the longest any one system spends on the rest of the batch.
- **The roofline**: a decode step cannot beat reading the weights once and each sequence's cached
  keys and values once from SRAM, at every core's read ports on every system.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from ..backends import assumptions as A
from ..backends.fit import systems_needed
from ..backends.kernels.moe import experts_report
from ..backends.machine import Machine
from ..backends.routing import check_spec, with_routing
from ..errors import FitError, UsageError
from ..frontend.lm import trace_lm
from ..frontend.traced import Traced
from ..ir import print_graph, verify
from ..ir.ops.cache import CACHED_ATTENTION, cache_bytes_read, cache_dtype
from ..passes import CompileState, parse_pipeline, run_pipeline, spec
from ..passes.placement_kind import KINDS
from ..report.energy import decode_energy
from ..report.summary import to_json
from ..report.wafer import placement_json
from ..sources import frontend_timings, model_section
from ..version import __version__
from .base import Context, Mode, Outcome, RunSpec, register_mode
from .generate_placement import Candidate, latency_candidate, place_system
from .generate_split import (
    System,
    check_context,
    check_options,
    head_on_last_position,
    kv_bytes_per_core,
    same_kernels,
    split_seconds,
)
from .systems import crossing_bytes, link_section, part_program, split_pipeline
from .systems import pipeline_seconds as run_seconds


@dataclass
class Steps:
    """The prefill and decode-step graphs of a model, after the graph passes."""

    decode: Traced  # the frontend's decode step (its weights, when real, serve both graphs)
    prefill: Traced
    decode_state: CompileState  # .graph: the decode step's graph
    prefill_state: CompileState
    records: list  # the decode graph's pass records
    capacity: int  # KV cache rows
    passes: list


def step_graphs(spec_: str, *, prompt_len: int, new_tokens: int, batch: int = 1, dtype: str = "f32", seed: int = 0,
                weights: str = "auto", machine: Machine | None = None, log=lambda msg: None,
                ctx: Context | None = None, quantize: str | None = None, expert_routing: str | None = None) -> Steps:
    """Trace the model as a step of generation over the prompt and over one token, give both a KV
    cache of prompt_len + new_tokens rows, and run the graph passes (canonicalize, fuse) on them
    (recorded in ``ctx`` as the graphs ``decode`` and ``prefill`` when one is given)."""
    check_options(prompt_len, new_tokens, batch, 1)
    dec = trace_lm(spec_, batch=batch, seq=1, dtype=dtype, weights=weights, seed=seed, log=log, positions=True)
    capacity = check_context(dec.info["name"], dec.info["context"], prompt_len, new_tokens)
    pre = trace_lm(spec_, batch=batch, seq=prompt_len, dtype=dtype, weights=weights, seed=seed, log=log,
                   positions=True)
    if expert_routing is not None:  # a MoE model's load per expert on the mesh (backends/routing.py), both steps
        dec.graph, pre.graph = with_routing(dec.graph, expert_routing), with_routing(pre.graph, expert_routing)
    # canonicalize first: it folds the repetition of grouped-query key/value heads into the attention,
    # so the caches hold the key/value heads once
    passes = parse_pipeline(f"canonicalize,kv-cache{{capacity={capacity}}},canonicalize,"
                            + (f"{quantize}," if quantize else "") + "fuse")
    if ctx is not None:
        ctx.begin("decode")
        ctx.begin("prefill")
        run = ctx.pipeline
    else:
        def run(name, state, ps):
            return run_pipeline(state, ps, log=log)
    dstate, records = run("decode", CompileState(verify(dec.graph), samples=batch, tokens=1, position=prompt_len,
                                                 machine=machine, log=log), passes)
    pstate, _ = run("prefill", CompileState(verify(pre.graph), samples=batch, tokens=prompt_len, machine=machine,
                                            log=log), passes)
    return Steps(dec, pre, dstate, pstate, records, capacity, passes)


def _fit_error(e: FitError, state: CompileState, systems: int, part: int) -> FitError:
    """Place's refusal, as generation says it: its advice is for a forward pass."""
    why = str(e)
    why = why[:why.rfind("; use ")] if "; use " in why else why
    if systems > 1:
        prog, m = state.program, state.machine
        what = (f"the part of system {part + 1} of {systems} ({prog.kernels[0].name} .. {prog.kernels[-1].name}) "
                f"does not fit on its {m.name}")
        why = why.replace(f"{prog.graph.name} does not fit on {m.name} in layer-pipelined mode", what, 1)
    hint = "more --systems" if systems > 1 else "--systems N (a pipeline of layers over N wafers)"
    return FitError(f"generation keeps every weight and KV cache in SRAM (layer-pipelined), and {why}; use "
                    f"{hint}, a bigger --target, a smaller --batch or fewer --prompt-len + --new-tokens")


DECODE_WAFER = "place{mode=pipelined},route,simulate{chunk=1}"
# what the latency candidate runs after lower (modes/generate_placement.py; the placer is not a pass): run.executed
# records it under "decode/latency", "decode_last/latency" and "prefill/latency" (".../system-N/latency")
LATENCY_STEPS = ("latency-placement,route,simulate{chunk=1}", "simulate{chunk=1}",
                 f"route,simulate{{chunk={A.CHUNK_TOKENS}}}")


@register_mode
class Generate(Mode):
    name = "generate"
    section = "generate"
    graphs = ("decode", "decode_last", "prefill")
    options = {"prompt_len": None, "new_tokens": None, "quantize": None, "placement": "auto", "expert_routing": None}
    splits = ("pipeline",)
    summary = "a prefill and KV-cache decode steps; a pipeline of layers over several systems"

    def check(self, run: RunSpec) -> None:
        if run.target is None:
            raise UsageError("--generate simulates the prefill and the decode steps on a machine: give --target "
                             "wse2, wse3 or mesh:RxC")
        if not isinstance(run.model, str) or run.model.endswith((".ir", ".mlir")):
            raise UsageError(f"--generate traces a model twice (prompt and one token): give a zoo name or a Hugging "
                             f"Face config, not {run.model}")
        o = run.options
        if o["placement"] not in KINDS:
            raise UsageError(f"--placement {o['placement']}: choose one of {', '.join(KINDS)}")
        if o["prompt_len"] is None or o["new_tokens"] is None:
            raise UsageError("--generate needs --prompt-len P and --new-tokens T")
        if run.seq is not None or run.execution is not None or run.pipeline is not None or run.compile_to is not None:
            raise UsageError("--seq, --mode, a pipeline and --compile-to do not go with --generate (its pipeline is "
                             "fixed, its lengths are --prompt-len and --new-tokens)")
        check_options(o["prompt_len"], o["new_tokens"], run.batch, run.systems or 1)
        if o["expert_routing"] is not None:
            check_spec(o["expert_routing"])

    def _system(self, ctx: Context, name: str, lowered: CompileState, sub, systems: int, i: int) -> CompileState:
        try:
            state, _ = ctx.pipeline(name, replace(lowered, program=sub), DECODE_WAFER)
        except FitError as e:
            raise _fit_error(e, replace(lowered, program=sub), systems, i) from None
        prog, placement = state.program, state.placement
        need = sum(sum(k.model.sram(r.rows, r.cols).values()) * r.cores for k, r in zip(prog.kernels, placement.rects))
        why = (f"generation: the weights and every sequence's KV cache stay in SRAM, {need / 1e9:.2f} GB on "
               f"{placement.cores_used:,} cores")
        return replace(state, placement=replace(placement, reason=f"layer-pipelined: {why}"))

    def run(self, ctx: Context) -> Outcome:
        run, machine, log = ctx.run, ctx.machine, ctx.log
        prompt_len, new_tokens, batch = run.options["prompt_len"], run.options["new_tokens"], run.batch
        systems = run.systems or 1
        st = step_graphs(run.model, prompt_len=prompt_len, new_tokens=new_tokens, batch=batch,
                         dtype=run.dtype or "f16", seed=run.seed, weights=run.weights, machine=machine, log=log,
                         ctx=ctx, quantize=run.options["quantize"], expert_routing=run.options["expert_routing"])
        dec, pre, dstate, pstate, drecords, capacity, graph_passes = (
            st.decode, st.prefill, st.decode_state, st.prefill_state, st.records, st.capacity, st.passes)
        first, last = prompt_len, prompt_len + max(new_tokens - 2, 0)
        t_graph = time.perf_counter()
        ctx.begin("decode_last", graph_passes)
        dlow = ctx.pipeline("decode", dstate, "lower")[0]
        dlast = ctx.pipeline("decode_last", replace(dstate, position=last), "lower")[0].program
        plow = ctx.pipeline("prefill", pstate, "lower")[0]
        dprog, pprog = dlow.program, head_on_last_position(plow.program)
        same_kernels(dprog, pprog)
        parts = split_pipeline(dprog, systems)
        crossing = crossing_bytes(dprog, parts)
        out: list[System] = []
        kinds: list = []  # each system's placement, as generate_placement.choose made it
        names = ("decode", "decode_last", "prefill")
        for i, ks in enumerate(parts):
            if systems > 1:
                for n in names:
                    ctx.begin(f"{n}/system-{i + 1}", parse_pipeline(ctx.executed_pipelines()[n]))
            at = (lambda n: f"{n}/system-{i + 1}") if systems > 1 else (lambda n: n)
            sub = part_program(dprog, ks, systems)
            log(f"system {i + 1} of {systems}: placing {len(ks)} kernels" if systems > 1 else "placing the decode step")
            sub_last, sub_pre = part_program(dlast, ks, systems), part_program(pprog, ks, systems)

            def throughput():  # the recorded pipeline: place, route, simulate the decode; its last step; the prefill
                state = self._system(ctx, at("decode"), dlow, sub, systems, i)
                sim_last = ctx.pipeline(at("decode_last"), replace(state, program=sub_last, sim=None),
                                        "simulate{chunk=1}")[0].sim
                sim_pre = ctx.pipeline(at("prefill"), replace(plow, program=sub_pre, placement=state.placement),
                                       f"route,simulate{{chunk={A.CHUNK_TOKENS}}}")[0].sim
                return Candidate(state, sim_last, sim_pre)

            base = {n: list(ctx.executed[at(n)]) for n in names}  # the graph passes, lower: both candidates' start
            chosen = place_system(throughput, lambda: latency_candidate(dlow, sub, sub_last, sub_pre, machine, log),
                                  run.options["placement"])
            if "latency" in chosen.decode_cycles:  # what the latency candidate ran, beside the recorded pipeline
                for n, steps in zip(names, LATENCY_STEPS):
                    ctx.executed[f"{at(n)}/latency"] = base[n] + steps.split(",")
            log(f"decode placement: {chosen.state.placement.kind_reason}")
            kinds.append(chosen)
            state, sim_last, sim_pre = chosen.state, chosen.decode_last, chosen.prefill
            kv = round(sum(2 * k.model.resident * k.model.key_rows * (k.model.kv_heads or k.model.heads)
                           * k.model.d_head * k.model.cache_elem for k in sub.kernels
                           if k.op.kind in CACHED_ATTENTION))
            out.append(System(ks, state, sim_last, sim_pre, sub.weight_bytes, kv))
        if systems > 1:
            for n in names:
                del ctx.executed[n]  # each system's part ran the rest: recorded under its own name
        wafer_seconds = time.perf_counter() - t_graph

        ttft = run_seconds([s.prefill for s in out], machine)
        d_first = run_seconds([s.decode.sim for s in out], machine)
        d_last = run_seconds([s.decode_last for s in out], machine)
        per_token = (d_first + d_last) / 2
        # held: every row of the caches, but a sliding-window layer's window (a ring: backends/kernels/sinks.py)
        kv_total = round(cache_bytes_read(dstate.graph, capacity - 1))
        param_bytes = sum(p.type.nbytes for p in dstate.graph.params)
        read_bw = systems * machine.cores * machine.sram_read_ports * machine.sram_port_bytes * machine.clock_hz

        def roofline(position: int) -> float:
            return (param_bytes + cache_bytes_read(dstate.graph, position)) / read_bw

        gen = {
            "prompt_len": prompt_len, "new_tokens": new_tokens, "batch": batch, "systems": systems,
            "kv_capacity": capacity, "kv_cache_bytes": kv_total, "kv_dtype": cache_dtype(dstate.graph),
            "kv_cache_bytes_per_core": max(kv_bytes_per_core(s.decode) for s in out),
            "ttft_seconds": ttft,
            "decode_positions": [first, last],
            "decode_seconds_first": d_first, "decode_seconds_last": d_last,
            "decode_seconds_per_token": per_token,
            "decode_basis": f"mean of the simulated first and last decode steps (positions {first} and {last}); a "
                            "step's cost grows linearly with its position",
            "decode_tokens_per_second": batch / per_token,
            "decode_tokens_per_second_per_user": 1 / per_token,
            "generate_seconds": ttft + max(new_tokens - 1, 0) * per_token,
            "decode_roofline_seconds": (roofline(first) + roofline(last)) / 2,
            "decode_roofline_seconds_first": roofline(first), "decode_roofline_seconds_last": roofline(last),
            "decode_roofline_basis": f"the weights ({param_bytes:,} B) read once per step and the batch's cached keys "
                                     f"and values up to the step's position, at {read_bw / 1e15:.2f} PB/s (every "
                                     f"core's SRAM read ports on {systems} system(s))",
            "prefill_tokens_per_second": batch * prompt_len / ttft,
            "decode_time_split_seconds": split_seconds(out, machine),
            "placement_kind": kinds[0].kind, "placement_asked": run.options["placement"],
            "placement_kind_reason": out[0].decode.placement.kind_reason,
            "prefill_placement_kind": kinds[0].prefill_kind, "prefill_placement_reason": kinds[0].prefill_reason,
            "weight_bytes": param_bytes,
            "fit": systems_needed(param_bytes, kv_total, machine),
            "systems_detail": [{
                "kernels": len(s.kernels), "first_kernel": dprog.kernels[s.kernels[0]].name,
                "last_kernel": dprog.kernels[s.kernels[-1]].name, "cores_used": s.decode.placement.cores_used,
                "occupancy": s.decode.placement.occupancy, "weight_bytes": s.weight_bytes,
                "kv_cache_bytes": s.kv_cache_bytes,
                "kv_cache_bytes_per_core": kv_bytes_per_core(s.decode),
                "sram_peak_bytes_per_core": max(sum(k.model.sram(r.rows, r.cols).values()) for k, r in zip(
                    s.decode.program.kernels, s.decode.placement.rects)),
                "decode_cycles_first": s.decode.sim.cycles, "decode_cycles_last": s.decode_last.cycles,
                "decode_latency_cycles": s.decode.sim.latency, "prefill_cycles": s.prefill.cycles,
                "prefill_latency_cycles": s.prefill.latency,
                "placement_kind": k.kind, "placement_kind_reason": s.decode.placement.kind_reason,
                "prefill_placement_kind": k.prefill_kind, "decode_cycles_by_placement": k.decode_cycles,
                "prefill_cycles_by_placement": k.prefill_cycles,
            } for s, k in zip(out, kinds)],
        }
        if systems > 1:
            gen["inter_system_link"] = link_section(machine, crossing)

        passes = [*graph_passes, *parse_pipeline("lower," + DECODE_WAFER)]
        model = model_section(dec, dstate.graph)
        fd, fp = frontend_timings(dec), frontend_timings(pre)
        c = {k: fd[k] + fp[k] if k != "frontend" else fd[k] for k in fd}
        c["passes"] = [r.as_dict() for r in drecords]
        c["our_seconds"] = c["import_seconds"] + sum(r.seconds for r in drecords)
        c["wafer_seconds"] = wafer_seconds
        files: dict = {"prefill.ir": f"# waferscale {__version__}: {model['name']} prefill of {prompt_len} tokens "
                                     f"(the decode step is model.ir)\n" + print_graph(pstate.graph)}
        state = out[0].decode if systems == 1 else dstate
        if systems > 1:
            for i, s in enumerate(out):
                files[f"system-{i + 1}/placement.json"] = to_json(placement_json(s.decode))
        header = f"# waferscale {__version__}: {model['name']} decode step, KV cache of {capacity} rows\n"
        g = dstate.graph
        energy = decode_energy(machine, [(p, s.decode.placement, s.decode.routing) for s in out for p in (
            s.decode.program, part_program(dlast, s.kernels, systems))], per_token, batch, systems)
        extra = {"energy": energy}
        if (moe := decode_experts(out)) is not None:
            extra["moe"] = {"routing": run.options["expert_routing"] or "uniform", **moe}
        return Outcome(state, g, header + print_graph(g), model, c, spec(passes), gen, traced=dec, files=files,
                       program=dprog, extra=extra)


def decode_experts(systems: list) -> dict | None:
    """report.json's ``moe`` for a decode step: every system's MoE layers (``experts_report``), one token
    per sequence; the first layer's table at the top."""
    layers = [x for s in systems if (r := experts_report(s.decode)) is not None for x in r["layers"]]
    if not layers:
        return None
    return {"experts": layers[0]["experts"], "busiest": layers[0]["busiest"], "layers": layers,
            "assumption": "a decode step's expected routed tokens per expert from the routing distribution "
                          "(docs/moe.md)"}


def decode_roofline_tokens_per_second(report: dict) -> float:
    """The most decode tokens/s the roofline allows (the batch's tokens per step over its bound)."""
    g = report["generate"]
    return g["batch"] / g["decode_roofline_seconds"]

