"""Generation on the wafer: a prefill and a one-token decode step with a KV cache, placed together
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
  (``INTER_SYSTEM_*``): the next system's simulation streams them in at the link's rate, as it
  streams a graph input, and each crossing adds the link's latency. A run takes every system's
  latency and every crossing's once, plus the longest any one system spends on the rest of the batch.
- **The roofline**: a decode step cannot beat reading the weights once and each sequence's cached
  keys and values once from SRAM, at every core's read ports on every system.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from . import __version__
from .backends import assumptions as A
from .backends.kernels.last_position import LastPosition
from .backends.lowering import lower
from .backends.machine import Machine, get_machine
from .backends.program import IO, RESIDENT, Placement, Program, sub_program
from .driver import Compiled, _model_section, peak_rss_bytes
from .errors import FitError, UsageError
from .frontend.lm import trace_lm
from .frontend.traced import Traced
from .ir import print_graph, verify
from .ir.ops.cache import cache_inputs
from .passes import CompileState, parse_pipeline, run_pipeline, spec
from .passes.place import place
from .passes.placement_check import verify_placement
from .passes.placement_kind import KINDS, kind_of, place_generation
from .passes.streaming import groups_of
from .report.summary import to_json
from .report.wafer import placement_json, wafer_report
from .runtime.tile_sim import SimResult
from .runtime.time_split import PARTS, time_split


@dataclass
class System:
    """One wafer's part of the model: its kernels (ids of the whole decode program), placed once,
    and its decode steps and prefill simulated on that placement."""

    kernels: tuple[int, ...]
    decode: CompileState  # the first decode step's program, placement, routing and simulation
    decode_last: SimResult
    prefill: SimResult
    weight_bytes: int
    kv_cache_bytes: int


def check_options(prompt_len: int, new_tokens: int, batch: int, systems: int) -> None:
    for flag, v in (("--prompt-len", prompt_len), ("--new-tokens", new_tokens), ("--batch", batch),
                    ("--systems", systems)):
        if v < 1:
            raise UsageError(f"{flag} must be at least 1 (got {v})")


def check_context(name: str, context: int | None, prompt_len: int, new_tokens: int) -> int:
    """The KV cache's rows, P + T, if the model's context holds them (a config may name none)."""
    if context is not None and prompt_len + new_tokens > context:
        fix = (f"ask for at most {context - prompt_len} new tokens" if prompt_len < context
               else f"use a prompt of at most {context - 1} tokens")
        raise UsageError(f"a prompt of {prompt_len} tokens + {new_tokens} new tokens = {prompt_len + new_tokens} "
                         f"positions, more than {name}'s context of {context}: {fix}")
    return prompt_len + new_tokens


def _split(prog: Program, systems: int) -> list[tuple[int, ...]]:
    """N consecutive runs of the kernels, cut between transformer blocks, of about equal weight."""
    if systems == 1:
        return [tuple(range(len(prog.kernels)))]
    groups = [ks for _, ks in groups_of(prog)]
    if systems > len(groups):
        raise UsageError(f"--systems {systems} is more than the {len(groups)} parts {prog.graph.name} can be cut into "
                         "(its transformer blocks, embeddings and head)")
    cum, total = [], 0
    for ks in groups:
        total += sum(prog.kernels[k].weight_bytes for k in ks)
        cum.append(total)
    cuts, lo = [], 0
    for j in range(1, systems):  # part j ends after the group whose running weight is nearest j/N of all
        i = min(range(lo, len(groups) - systems + j), key=lambda i: (abs(cum[i] - total * j / systems), i))
        cuts.append(i + 1)
        lo = i + 1
    bounds = [0, *cuts, len(groups)]
    return [tuple(k for ks in groups[a:b] for k in ks) for a, b in zip(bounds, bounds[1:])]


def _crossing_bytes(prog: Program, parts: list[tuple[int, ...]]) -> list[float]:
    """Bytes per token that cross from each part to the next (each value once)."""
    part_of = {k: i for i, ks in enumerate(parts) for k in ks}
    out = []
    for b in range(len(parts) - 1):
        crossing = {(f.src, f.value): f.bytes_per_token for f in prog.flows
                    if f.src != IO and part_of[f.src] <= b < part_of[f.dst]}
        out.append(sum(crossing.values()))
    return out


def _place(prog: Program, machine: Machine, systems: int, part: int, log) -> Placement:
    what = None
    if systems > 1:
        what = (f"the part of system {part + 1} of {systems} ({prog.kernels[0].name} .. {prog.kernels[-1].name}) "
                f"does not fit on its {machine.name}")
    try:
        placement = place(prog, machine, log=log, what=what)
    except FitError as e:
        why = str(e)
        why = why[:why.rfind("; use ")] if "; use " in why else why  # its advice is for a forward pass
        hint = "more --systems" if systems > 1 else "--systems N (a pipeline of layers over N wafers)"
        raise FitError(f"generation keeps every weight and KV cache in SRAM (layer-pipelined), and {why}; use "
                       f"{hint}, a bigger --target, a smaller --batch or fewer --prompt-len + --new-tokens") from None
    need = sum(sum(k.model.sram(r.rows, r.cols).values()) * r.cores for k, r in zip(prog.kernels, placement.rects))
    why = (f"generation: the weights and every sequence's KV cache stay in SRAM, {need / 1e9:.2f} GB on "
           f"{placement.cores_used:,} cores")
    return verify_placement(prog, replace(placement, reason=f"layer-pipelined: {why}"))


def _same_kernels(a: Program, b: Program) -> None:
    if [k.name for k in a.kernels] != [k.name for k in b.kernels]:
        raise AssertionError("the prefill and decode graphs lowered to different kernels: "
                             f"{[k.name for k in a.kernels]} and {[k.name for k in b.kernels]}")


def _part(prog: Program, kernels: tuple[int, ...], systems: int) -> Program:
    """One system's kernels as a program of their own; what an earlier system computed comes in over
    the link, which the simulation streams in as it streams a graph input over the system I/O."""
    if systems == 1:
        return prog
    sub = sub_program(prog, kernels)
    return replace(sub, flows=tuple(replace(f, src=IO) if f.src == RESIDENT else f for f in sub.flows))


def _run_seconds(sims: list[SimResult], machine: Machine) -> float:
    """One run (a prefill or a decode step) through the systems in turn: every system's latency and
    every crossing's, then the longest any system spends on the rest of the batch. A crossing's
    transfer at the link's rate is in the receiving system's simulation (its input stream)."""
    first = sum(s.latency for s in sims) / machine.clock_hz + (len(sims) - 1) * A.INTER_SYSTEM_LATENCY_S
    return first + max((s.cycles - s.latency) / machine.clock_hz for s in sims)


def _split_seconds(out: list, machine: Machine) -> dict[str, float]:
    """The first decode step's time by part (runtime/time_split.py), over the systems in turn; the links
    between systems count as fabric."""
    total = dict.fromkeys(PARTS, 0.0)
    for s in out:
        for p, v in time_split(s.decode.program, s.decode.placement, s.decode.sim).items():
            total[p] += v / machine.clock_hz
    total["fabric"] += (len(out) - 1) * A.INTER_SYSTEM_LATENCY_S
    return total


def head_on_last_position(prog: Program) -> Program:
    """The prefill with its LM head (the kernel of the logits, the graph's first output) computing the
    last position only: the first new token is sampled from it (runtime/generate.py)."""
    logits = prog.graph.outputs[0].name
    kernels = tuple(replace(k, model=LastPosition.of(k.model)) if k.op.result.name == logits and k.op.kind in
                    ("linear", "matmul", "fused") else k for k in prog.kernels)
    return replace(prog, kernels=kernels)


def _kv_bytes_per_core(s: CompileState) -> int:
    return max((k.model.sram(r.rows, r.cols).get("kv_cache", 0) for k, r in zip(s.program.kernels,
                                                                                 s.placement.rects)), default=0)


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
                weights: str = "auto", machine: Machine | None = None, log=lambda msg: None) -> Steps:
    """Trace the model as a step of generation over the prompt and over one token, give both a KV
    cache of prompt_len + new_tokens rows, and run the graph passes (canonicalize, fuse) on them."""
    check_options(prompt_len, new_tokens, batch, 1)
    dec = trace_lm(spec_, batch=batch, seq=1, dtype=dtype, weights=weights, seed=seed, log=log, positions=True)
    capacity = check_context(dec.info["name"], dec.info["context"], prompt_len, new_tokens)
    pre = trace_lm(spec_, batch=batch, seq=prompt_len, dtype=dtype, weights=weights, seed=seed, log=log,
                   positions=True)
    # canonicalize first: it folds the repetition of grouped-query key/value heads into the attention,
    # so the caches hold the key/value heads once
    passes = parse_pipeline(f"canonicalize,kv-cache{{capacity={capacity}}},canonicalize,fuse")
    dstate, records = run_pipeline(CompileState(verify(dec.graph), samples=batch, tokens=1, position=prompt_len,
                                                machine=machine, log=log), passes, log=log)
    pstate, _ = run_pipeline(CompileState(verify(pre.graph), samples=batch, tokens=prompt_len, machine=machine,
                                          log=log), passes, log=log)
    return Steps(dec, pre, dstate, pstate, records, capacity, passes)


def compile_generate(spec_: str, *, prompt_len: int, new_tokens: int, batch: int = 1, dtype: str = "f16",
                     target: str | None = None, systems: int = 1, seed: int = 0, weights: str = "auto",
                     placement: str = "auto", log=lambda msg: None) -> Compiled:
    t0 = time.perf_counter()
    if target is None:
        raise UsageError("--generate simulates the prefill and the decode steps on a machine: give --target wse2, "
                         "wse3 or mesh:RxC")
    if spec_.endswith((".ir", ".mlir")):
        raise UsageError(f"--generate traces a model twice (prompt and one token): give a zoo name or a Hugging Face "
                         f"config, not {spec_}")
    check_options(prompt_len, new_tokens, batch, systems)
    if placement not in KINDS:
        raise UsageError(f"--placement {placement}: choose one of {', '.join(KINDS)}")
    machine = get_machine(target)
    st = step_graphs(spec_, prompt_len=prompt_len, new_tokens=new_tokens, batch=batch, dtype=dtype, seed=seed,
                     weights=weights, machine=machine, log=log)
    dec, pre, dstate, pstate, drecords, capacity, graph_passes = (st.decode, st.prefill, st.decode_state,
                                                                  st.prefill_state, st.records, st.capacity, st.passes)
    first, last = prompt_len, prompt_len + max(new_tokens - 2, 0)
    t_graph = time.perf_counter()
    dprog = lower(dstate.graph, batch, 1, first)
    dlast = lower(dstate.graph, batch, 1, last)
    pprog = lower(pstate.graph, batch, prompt_len, 0)
    pprog = head_on_last_position(pprog)
    _same_kernels(dprog, pprog)
    parts = _split(dprog, systems)
    crossing = _crossing_bytes(dprog, parts)
    out: list[System] = []
    kinds = []  # each system's placement kind and the prefill's
    for i, ks in enumerate(parts):
        sub = _part(dprog, ks, systems)
        log(f"system {i + 1} of {systems}: placing {len(ks)} kernels" if systems > 1 else "placing the decode step")
        gp = place_generation(sub, _part(dlast, ks, systems), _part(pprog, ks, systems), machine, placement,
                              lambda: _place(sub, machine, systems, i, log), A.CHUNK_TOKENS, log)
        sim, sim_last, sim_pre = gp.decode, gp.decode_last, gp.prefill
        state = replace(dstate, program=sub, placement=gp.placed.placement, routing=gp.placed.routing, sim=sim)
        kinds.append(gp)
        kv = sum(2 * k.model.resident * k.model.key_rows * (k.model.kv_heads or k.model.heads) * k.model.d_head
                 * k.model.elem for k in sub.kernels if k.op.kind == "cached_attention")
        out.append(System(ks, state, sim_last, sim_pre, sub.weight_bytes, kv))
    t_wafer = time.perf_counter()

    ttft = _run_seconds([s.prefill for s in out], machine)
    d_first = _run_seconds([s.decode.sim for s in out], machine)
    d_last = _run_seconds([s.decode_last for s in out], machine)
    per_token = (d_first + d_last) / 2
    kv_total = sum(v.type.nbytes for v in cache_inputs(dstate.graph))
    param_bytes = sum(p.type.nbytes for p in dstate.graph.params)
    read_bw = systems * machine.cores * machine.sram_read_ports * machine.sram_port_bytes * machine.clock_hz

    def roofline(position: int) -> float:
        return (param_bytes + kv_total * (position + 1) / capacity) / read_bw

    gen = {
        "prompt_len": prompt_len, "new_tokens": new_tokens, "batch": batch, "systems": systems,
        "kv_capacity": capacity, "kv_cache_bytes": kv_total,
        "kv_cache_bytes_per_core": max(_kv_bytes_per_core(s.decode) for s in out),
        "ttft_seconds": ttft,
        "decode_positions": [first, last],
        "decode_seconds_first": d_first, "decode_seconds_last": d_last,
        "decode_seconds_per_token": per_token,
        "decode_basis": f"mean of the simulated first and last decode steps (positions {first} and {last}); a step's "
                        "cost grows linearly with its position",
        "decode_tokens_per_second": batch / per_token,
        "decode_tokens_per_second_per_user": 1 / per_token,
        "generate_seconds": ttft + max(new_tokens - 1, 0) * per_token,
        "decode_roofline_seconds": (roofline(first) + roofline(last)) / 2,
        "decode_roofline_seconds_first": roofline(first), "decode_roofline_seconds_last": roofline(last),
        "decode_roofline_basis": f"the weights ({param_bytes:,} B) read once per step and the batch's cached keys and "
                                 f"values up to the step's position, at {read_bw / 1e15:.2f} PB/s (every core's SRAM "
                                 f"read ports on {systems} system(s))",
        "prefill_tokens_per_second": batch * prompt_len / ttft,
        "decode_time_split_seconds": _split_seconds(out, machine),
        "placement_kind": kind_of(out[0].decode.placement), "placement_asked": placement,
        "placement_kind_reason": kinds[0].placed.placement.kind_reason,
        "prefill_placement_kind": kinds[0].prefill_kind, "prefill_placement_reason": kinds[0].prefill_reason,
        "weight_bytes": param_bytes,
        "systems_detail": [{
            "kernels": len(s.kernels), "first_kernel": dprog.kernels[s.kernels[0]].name,
            "last_kernel": dprog.kernels[s.kernels[-1]].name, "cores_used": s.decode.placement.cores_used,
            "occupancy": s.decode.placement.occupancy, "weight_bytes": s.weight_bytes,
            "kv_cache_bytes": s.kv_cache_bytes,
            "kv_cache_bytes_per_core": _kv_bytes_per_core(s.decode),
            "sram_peak_bytes_per_core": max(sum(k.model.sram(r.rows, r.cols).values()) for k, r in zip(
                s.decode.program.kernels, s.decode.placement.rects)),
            "decode_cycles_first": s.decode.sim.cycles, "decode_cycles_last": s.decode_last.cycles,
            "decode_latency_cycles": s.decode.sim.latency, "prefill_cycles": s.prefill.cycles,
            "prefill_latency_cycles": s.prefill.latency,
            "placement_kind": kind_of(s.decode.placement), "placement_kind_reason": gp.placed.placement.kind_reason,
            "prefill_placement_kind": gp.prefill_kind, "decode_cycles_by_placement": gp.decode_cycles,
            "prefill_cycles_by_placement": gp.prefill_cycles,
        } for s, gp in zip(out, kinds)],
    }
    if systems > 1:
        gen["inter_system_link"] = {
            "name": A.INTER_SYSTEM_LINK_NAME, "bytes_per_s": machine.io_bytes_per_s,
            "latency_seconds": A.INTER_SYSTEM_LATENCY_S, "bytes_per_token": crossing,
            "source": "rate: the system I/O (machine.py); latency: our assumption (backends/assumptions.py)"}

    passes = [*graph_passes, *parse_pipeline("lower,place{mode=pipelined},route,simulate{chunk=1}")]
    model = _model_section(dec, dstate.graph)
    c = {"frontend": "torch.export", "imports_seconds": dec.seconds["imports"] + pre.seconds["imports"],
         "build_seconds": dec.seconds["build"] + pre.seconds["build"],
         "export_seconds": dec.seconds["export"] + pre.seconds["export"],
         "import_seconds": dec.seconds["import"] + pre.seconds["import"],
         "passes": [r.as_dict() for r in drecords]}
    c["our_seconds"] = c["import_seconds"] + sum(r.seconds for r in drecords)
    c["wafer_seconds"] = t_wafer - t_graph
    g = dstate.graph
    report = {
        "version": __version__, "model": model,
        "ir": {"ops": g.op_counts(), "op_count": len(g.ops), "param_count": len(g.params)},
        "pipeline": spec(passes), "compile": c,
        "program": {"kernels": len(dprog.kernels), "flows": len(dprog.flows), "weight_bytes": dprog.weight_bytes},
        "target": machine.name, "machine": machine.as_dict(),
        "generate": gen,
    }
    files: dict = {"prefill.ir": f"# waferscale {__version__}: {model['name']} prefill of {prompt_len} tokens "
                                 f"(the decode step is model.ir)\n" + print_graph(pstate.graph)}
    state = dstate
    if systems == 1:
        state = out[0].decode
        report.update(wafer_report(state))
    else:
        for i, s in enumerate(out):
            files[f"system-{i + 1}/placement.json"] = to_json(placement_json(s.decode))
    c["seconds"] = time.perf_counter() - t0
    c["peak_rss_bytes"] = peak_rss_bytes()
    header = f"# waferscale {__version__}: {model['name']} decode step, KV cache of {capacity} rows\n"
    return Compiled(report, state, header + print_graph(g), dec, files, t0)


def decode_roofline_tokens_per_second(report: dict) -> float:
    """The most decode tokens/s the roofline allows (the batch's tokens per step over its bound)."""
    g = report["generate"]
    return g["batch"] / g["decode_roofline_seconds"]

