"""``wafer compile MODEL --train``: compile a training step (forward, backward, optimizer) and
simulate it on one system or a data-parallel cluster.

The graph passes are ``canonicalize,autodiff,adamw`` (``model.ir`` is the whole step). The wafer
runs the forward and backward (the graph after ``autodiff``); the optimizer runs where the mode
keeps its state:

- **layer-pipelined** (one system, only when everything fits): every forward and backward kernel
  on its own rectangle, their weights in SRAM (a weight's forward and backward kernels each hold
  it), the weight gradients accumulating in their kernels, and the optimizer's state (f32 moments,
  and master weights for 16-bit ones) spread over every core; the optimizer runs on the wafer. A
  model whose weights, gradients and state exceed the SRAM is refused with its shortfall.
- **weight streaming**: each layer's weights stream in for the forward and again for the backward,
  the gradients stream out, MemoryX runs the optimizer. The batch (per system) runs in
  micro-batches of the most samples whose activations fit (``streaming.largest_batch``, rounded
  down to a divisor of the batch); MemoryX sums their gradients.
- ``systems`` > 1: weight streaming, data parallel, the batch split evenly (``runtime/train_time.py``
  for SwarmX).

``auto`` picks layer-pipelined when it fits and weight streaming otherwise. The report gains a
``train`` section (the step); ``time`` and ``placement`` describe the simulated micro-batch.

``sparsity`` D: sparse training (``sparsify{density=D}`` before ``autodiff``). The forward's and
the backward's products with a sparse weight skip its zeros (``backends/sparse.py``); its
gradient's kernel makes only the kept entries (``kernels/grads.py``); in weight streaming the
weights stream in compressed (values and indices; the gradient kernel, the indices) and the
gradients stream out compressed, and MemoryX updates the kept parameters only. The ``train``
section's ``sparsity`` sets the step beside the same model, batch and mode dense.
"""

from __future__ import annotations

import time
from dataclasses import replace
from math import ceil

from . import __version__
from . import limits as L
from .backends import assumptions as A
from .backends import memoryx as MX
from .backends import swarmx as SX
from .backends.machine import Machine, get_machine
from .driver import Compiled, _trace, peak_rss_bytes
from .errors import FitError, UsageError
from .frontend.ir_file import header
from .ir import Graph, print_graph
from .ir.ops.grad import MASK
from .ir.ops.linalg import sparse_params
from .passes import CompileState, parse_pipeline, run_pipeline, spec
from .passes.adamw import AdamWConfig, adamw
from .passes.autodiff import BACKWARD
from .passes.place import MODES, place
from .passes.recompute import recompute
from .passes.route import RoutingError
from .passes.streaming import largest_batch
from .report.stats import model_stats
from .report.wafer import wafer_report
from .runtime import train_time as TT
from .runtime.stream_sim import simulate_streaming

GRAPH_PIPELINE = "canonicalize,autodiff"
MICRO_BATCH_TRIES = 6
WAFER_PIPELINE = "fuse,lower,place{mode=%s},route,simulate"


def _size(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.2f} MB"


def pipelined_need(step: Graph, train: Graph) -> dict[str, int]:
    """SRAM bytes that layer-pipelined training keeps: weights (twice: the forward's and the
    backward's kernels), their gradients, the optimizer state."""
    model = {p.name for p in train.params}
    weights = sum(p.type.nbytes for p in train.params if not p.name.startswith(MASK))  # dense: an upper bound
    state = sum(p.type.nbytes for p in step.params if p.name not in model)
    return {"weights": 2 * weights, "gradients": weights, "optimizer_state": state}


def _refuse_pipelined(name: str, machine: Machine, need: dict[str, int]) -> FitError:
    usable = machine.cores * machine.usable_sram_bytes
    total = sum(need.values())
    parts = ", ".join(f"{k.replace('_', ' ')} {_size(v)}" for k, v in need.items())
    return FitError(f"{name} does not fit on {machine.name} for layer-pipelined training: it keeps {_size(total)} in "
                    f"SRAM ({parts}) and the mesh has {_size(usable)} usable, {_size(total - usable)} short; use "
                    "--mode streaming (weights in MemoryX) or a smaller model")


def _wafer(graph: Graph, mode: str, samples: int, tokens: int, machine: Machine, log) -> tuple[CompileState, list]:
    state = CompileState(graph, samples=samples, tokens=tokens, machine=machine, log=log)
    return run_pipeline(state, parse_pipeline(WAFER_PIPELINE % mode), log=log)


def _largest_divisor(n: int, most: int) -> int:
    return max(d for d in range(1, min(n, most) + 1) if n % d == 0)


def compile_training(spec_: str, *, batch: int, seq: int | None = None, dtype: str = "f16", seed: int = 0,
                     target: str | None = None, mode: str | None = None, systems: int = 1,
                     lora: str | None = None, sparsity: float | None = None, micro_batch: int | None = None,
                     tokens: float | None = None, log=lambda msg: None) -> Compiled:
    """``micro_batch``: gradient accumulation at this many samples per micro-batch (weight streaming; default:
    the most that fit). ``tokens``: the training budget of the report's ``time_to_train`` (default: the
    paper's for a Cerebras-GPT model, 20 per parameter otherwise). ``lora``: a lora pass
    (``lora{rank=..,alpha=..,targets=..}``) to fine-tune with adapters only; the
    report then sets the step beside full fine-tuning of the same model, batch and mode. ``sparsity``:
    sparse training at that density (module docstring), set beside dense training the same way."""
    t0 = time.perf_counter()
    if target is None:
        raise UsageError("--train simulates a training step on a machine: give --target wse2, wse3 or mesh:RxC")
    if spec_.endswith((".ir", ".mlir")):
        raise UsageError("--train takes a zoo name or a Hugging Face config (the loss needs the model's logits)")
    machine = get_machine(target)
    mode = mode or "auto"
    L.check_int("--systems", systems, 1, L.MAX_SYSTEMS)
    if batch % systems:
        raise UsageError(f"--batch {batch} does not split evenly over --systems {systems}: give a multiple of "
                         f"{systems}")
    if systems > 1 and mode == "pipelined":
        raise UsageError("--systems runs weight streaming data-parallel; layer-pipelined training is one system: "
                         "drop --mode pipelined")
    per_system = batch // systems
    if micro_batch is not None:
        L.check_int("--micro-batch", micro_batch, 1, per_system)
        if per_system % micro_batch:
            raise UsageError(f"--micro-batch {micro_batch} does not divide the batch per system ({per_system}): give a "
                             f"divisor of {per_system}")
        if mode == "pipelined":
            raise UsageError("--micro-batch accumulates gradients over micro-batches in weight streaming; "
                             "layer-pipelined training runs the whole batch at once: drop --mode pipelined")
    budget = tokens  # the name is the sequence length's below
    if budget is not None and not budget > 0:
        raise UsageError(f"--tokens {budget:g} must be positive: the tokens to train on")
    if sparsity is not None and lora is not None:
        raise UsageError("not supported: --sparsity with --lora (sparse frozen weights under adapters); give one")
    if sparsity is not None and not 0.0 < sparsity <= 1.0:
        raise UsageError(f"--sparsity {sparsity} must be in (0, 1]: the fraction of each linear weight kept (0.25 "
                         "keeps a quarter)")
    sparsify = None if sparsity is None else f"sparsify{{density={sparsity!r}}}"

    graph_pipe = GRAPH_PIPELINE if lora is None else f"canonicalize,{lora},autodiff{{wrt=lora}}"
    if sparsify is not None:
        graph_pipe = graph_pipe.replace("canonicalize,", f"canonicalize,{sparsify},", 1)
    stream_pipe = graph_pipe + ",recompute"

    def build(b: int, graph_pipeline: str = graph_pipe):
        src = _trace(spec_, None, b, seq, dtype, "auto", seed, "torch-export", log)
        state, records = run_pipeline(CompileState(src.graph, samples=b, tokens=src.model["seq"], log=log),
                                      parse_pipeline(graph_pipeline), log=log)
        return src, state.graph, adamw(state.graph), records

    src, train, step, records = build(per_system)
    tokens = src.model["seq"]
    name = src.model["name"]
    need = pipelined_need(step, train)
    reason = ""
    chosen = "streaming" if systems > 1 or mode == "streaming" or micro_batch is not None else "pipelined"
    wafer = None
    if chosen == "pipelined":
        usable = machine.cores * machine.usable_sram_bytes
        if sum(need.values()) > usable:
            if mode == "pipelined":
                raise _refuse_pipelined(name, machine, need)
            chosen, reason = "streaming", f"layer-pipelined does not fit ({_refuse_pipelined(name, machine, need)})"
        else:
            spread = -(-need["optimizer_state"] // machine.cores)  # the state, spread over every core
            small = replace(machine, sram_bytes=machine.sram_bytes - spread)
            try:
                wafer = _wafer(train, "pipelined", per_system, tokens, small, log)
            except (FitError, RoutingError) as e:
                if mode == "pipelined":
                    raise type(e)(f"{e} (with {spread:,} B per core kept for the optimizer state)") from None
                chosen, reason = "streaming", f"layer-pipelined does not fit ({e})"
            else:
                reason = (f"it fits: weights, gradients and optimizer state take {_size(sum(need.values()))} of "
                          f"{_size(usable)} usable")
    micro = per_system
    if chosen == "streaming":
        train = recompute(train)  # only the blocks' inputs stay in SRAM from the forward
        step = adamw(train)
        lowered, _ = run_pipeline(CompileState(train, samples=per_system, tokens=tokens, machine=machine, log=log),
                                  parse_pipeline("fuse,lower"), log=log)
        most = largest_batch(lowered.program, machine, place, per_system)
        if most == 0:
            raise FitError(f"{name} does not fit on {machine.name} for weight-streaming training even at a "
                           f"micro-batch of 1 sample of {tokens} tokens: use a shorter --seq or a bigger --target")
        # the largest micro-batch that fits and routes: a smaller one leaves the layers more SRAM, so
        # their kernels spread wider and fewer flows share a link's colors (and the graph traced at the
        # micro-batch itself may need a few bytes more than the estimate from the whole batch's)
        tries = [d for d in range(most, 0, -1) if per_system % d == 0][:MICRO_BATCH_TRIES]
        if micro_batch is not None:  # forced: it fits or the compile stops here
            if micro_batch > most:
                raise FitError(f"--micro-batch {micro_batch} does not fit {name} on {machine.name} in weight "
                               f"streaming: at most {most} sample(s) of {tokens} tokens fit per micro-batch (their "
                               f"activations stay in SRAM between layers); give --micro-batch {tries[0]} or less")
            tries = [micro_batch]
        for i, micro in enumerate(tries):
            if micro != per_system:
                log(f"micro-batches of {micro} sample(s): {per_system // micro} per step on each system")
                src, train, step, records = build(micro, stream_pipe)
            try:
                wafer = _wafer(train, "streaming", micro, tokens, machine, log)
                break
            except (RoutingError, FitError) as e:  # traced at this micro-batch, a layer may need a little more
                if i == len(tries) - 1:
                    raise type(e)(f"{e} (tried micro-batches of {', '.join(map(str, tries))})") from None
                log(f"micro-batch {micro} does not fit or route ({e}); trying a smaller one")
        reason = reason or ("asked for (--mode streaming)" if mode == "streaming" else
                            f"--micro-batch {micro_batch} accumulates gradients" if micro_batch is not None else
                            f"data parallel on {systems} systems" if systems > 1 else reason)
    state, wafer_records = wafer
    latency = TT.swarmx_latency_cycles(systems, machine)
    if chosen == "streaming" and latency:
        state = replace(state, sim=simulate_streaming(state.program, state.placement, state.routing,
                                                      stream_latency=latency))
    state = replace(state, placement=replace(state.placement, reason=f"{MODES[chosen]}: {reason}"))
    cfg = AdamWConfig()
    train_section = _train_section(state, src, train, step, chosen, systems, batch, per_system, micro, need)
    train_section["time_to_train"] = TT.time_to_train(name, src.model.get("params") or 0,
                                                      train_section["step_seconds"], train_section["tokens_per_step"],
                                                      systems, train_section["flops_per_token"], budget)
    model = dict(src.model)
    graph_pipeline = stream_pipe if chosen == "streaming" else graph_pipe
    ran = parse_pipeline(graph_pipeline) + [_adamw_pass(cfg)]
    ir_text = header(spec(ran), model, f"waferscale {__version__}: {name} training step") + print_graph(step)
    c = dict(src.compile)
    c["passes"] = [r.as_dict() for r in records + wafer_records]
    c["our_seconds"] = c["import_seconds"] + c.get("analyze_seconds", 0.0) + sum(r.seconds for r in records)
    c["wafer_seconds"] = sum(r.seconds for r in wafer_records)
    c["wafer_stage_seconds"] = {r.name: r.seconds for r in wafer_records}
    report = {
        "version": __version__, "model": model,
        "ir": {"ops": step.op_counts(), "op_count": len(step.ops), "param_count": len(step.params)},
        "pipeline": spec(ran) + "," + ",".join(r.spec for r in wafer_records),
        "compile": c,
        "program": {"kernels": len(state.program.kernels), "flows": len(state.program.flows),
                    "weight_bytes": state.program.weight_bytes},
    }
    report.update(wafer_report(state))
    report["train"] = train_section
    if lora is not None:
        full = compile_training(spec_, batch=batch, seq=seq, dtype=dtype, seed=seed, target=target, mode=chosen,
                                systems=systems, log=log).report["train"]
        trained = sum(p.type.numel for p in train.params if p.name.startswith("lora."))
        frozen = sum(p.type.numel for p in train.params if not p.name.startswith(MASK)) - trained
        train_section["lora"] = {
            "pass": lora, "trainable_params": trained, "frozen_params": frozen,
            "full_fine_tuning": {k: full[k] for k in ("step_seconds", "tokens_per_s", "stream_in_bytes",
                                                      "stream_out_bytes", "micro_batch", "micro_batches")}
            | {"optimizer_seconds": full["optimizer"]["seconds"]},
        }
    if sparsify is not None:
        dense = compile_training(spec_, batch=batch, seq=seq, dtype=dtype, seed=seed, target=target, mode=chosen,
                                 systems=systems, log=log).report["train"]
        train_section["sparsity"] = _sparsity(sparsify, state, train, train_section, dense)
    c["seconds"] = time.perf_counter() - t0
    c["peak_rss_bytes"] = peak_rss_bytes()
    return Compiled(report, state, ir_text, src.traced, {}, t0)


def _sparsity(sparsify: str, state: CompileState, train: Graph, section: dict, dense: dict) -> dict:
    """The train section's ``sparsity``: the sparse weights, and the step against dense training."""
    sparse = sparse_params(train)
    sizes = {p.name: p.type.numel for p in train.params if p.name in sparse}
    kept = {}
    for k in state.program.kernels:  # the masks the kernels were costed with (exact or in distribution)
        sw = getattr(k.model, "sparse", None)
        if sw is not None:
            kept[sw.name] = sw.nnz
    keys = ("step_seconds", "tokens_per_s", "stream_in_bytes", "stream_out_bytes", "micro_batch", "micro_batches")
    return {
        "pass": sparsify, "weights": len(sparse), "params": sum(sizes.values()), "nonzeros": sum(kept.values()),
        "density": sum(kept.values()) / sum(sizes.values()) if sizes else 1.0,
        "index_bytes_per_nonzero": A.SPARSE_INDEX_BYTES,
        "gradients": "a sparse weight's gradient kernel makes its kept entries only (an AXPY per tile row over "
                     "them, as the forward's sparse product); it streams out as values and indices; MemoryX "
                     "updates kept parameters only",
        "dense": {k: dense[k] for k in keys} | {"optimizer_seconds": dense["optimizer"]["seconds"]},
        "speedup": dense["step_seconds"] / section["step_seconds"],
    }


def _adamw_pass(cfg: AdamWConfig):
    from .passes.adamw import AdamW

    return AdamW(cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay, cfg.clip)


def training_flops(train: Graph, tokens: int) -> dict:
    """Model FLOPs per token of the forward and the backward (registry rules, docs/flops.md); a
    recomputed forward is not model work."""
    back = Graph(train.name, train.inputs, train.params,
                 [op for op in train.ops if (train.loc(op.result) or "").startswith(BACKWARD)
                  and not train.meta.get(op.result.name, {}).get("recompute")], [], train.meta)
    fwd = Graph(train.name, train.inputs, train.params,
                [op for op in train.ops if not (train.loc(op.result) or "").startswith(BACKWARD)], [], train.meta)
    f, b = model_stats(fwd, tokens), model_stats(back, tokens)
    return {"forward": f.flops / tokens, "backward": b.flops / tokens, "total": (f.flops + b.flops) / tokens,
            "by_class": {k: (f.flops_by_class[k] + b.flops_by_class[k]) / tokens for k in f.flops_by_class}}


def _layers(state: CompileState) -> list[dict]:
    """Per layer and direction: what bounds it, its compute and (streaming) stream times."""
    m, sim = state.machine, state.sim
    if sim.groups:
        return [{"name": g.name.removeprefix(BACKWARD), "direction": "backward" if g.name.startswith(BACKWARD)
                 else "forward", "bound": g.bound, "compute_seconds": g.compute / m.clock_hz,
                 "stream_in_seconds": g.stream / m.clock_hz, "weight_bytes": g.weight_bytes,
                 "grad_bytes": g.grad_bytes} for g in sim.groups]
    from .passes.streaming import groups_of

    out = []
    for name, ks in groups_of(state.program):
        busy = max(sim.kernels[k].busy for k in ks)
        slow = max(ks, key=lambda k: sim.kernels[k].busy)
        out.append({"name": name.removeprefix(BACKWARD), "direction": "backward" if name.startswith(BACKWARD)
                    else "forward", "bound": sim.kernels[slow].bound, "compute_seconds": busy / m.clock_hz,
                    "stream_in_seconds": 0.0, "weight_bytes": sum(state.program.kernels[k].weight_bytes for k in ks),
                    "grad_bytes": 0})
    return out


def _train_section(state: CompileState, src, train: Graph, step: Graph, mode: str, systems: int, batch: int,
                   per_system: int, micro: int, need: dict) -> dict:
    m, sim = state.machine, state.sim
    tokens = src.model["seq"]
    n_micro = per_system // micro
    micro_cycles = sim.cycles
    memx = MX.memoryx_for(m)
    if mode == "streaming":
        opt_total, opt_tail = TT.memoryx_optimizer(sim.groups, m, memx)
        where = (f"MemoryX at {memx.update_bytes_per_s / 1e9:g} GB/s, {memx.bytes_per_param} B per parameter, each "
                 "layer's update overlapping the backward of the layers below (backends/memoryx.py)")
    else:
        opt_total = opt_tail = TT.wafer_optimizer_cycles(step, m)
        where = "the wafer: every core's share of the parameters at the f32 element rate"
    step_cycles = ceil(n_micro * micro_cycles + opt_tail)
    seconds = step_cycles / m.clock_hz
    step_tokens = batch * tokens
    flops = training_flops(train, micro * tokens)
    d, layers = src.model["d_model"], src.model["layers"]
    matmul_params = _matmul_params(train)
    closed = 6 * matmul_params + (12 * layers * tokens * d if d and layers else 0)
    out = {
        "mode": MODES[mode], "systems": systems, "batch": batch, "batch_per_system": per_system,
        "micro_batch": micro, "micro_batches": n_micro, "seq": tokens, "tokens_per_step": step_tokens,
        "step_cycles": step_cycles, "step_seconds": seconds, "micro_batch_seconds": micro_cycles / m.clock_hz,
        "tokens_per_s": step_tokens / seconds, "tokens_per_s_per_system": step_tokens / seconds / systems,
        "flops_per_token": flops["total"], "flops_per_token_forward": flops["forward"],
        "flops_per_token_backward": flops["backward"], "flops_per_token_by_class": flops["by_class"],
        "flops_per_token_closed_form": closed,
        "flops_convention": "forward + backward model FLOPs of the graph (docs/flops.md); the closed form is "
                            "6 x matmul parameters + 12 x layers x seq x d_model (dense scores)",
        "mfu": flops["total"] * step_tokens / (seconds * m.mfu_peak_flops * systems),
        "optimizer": {"where": where, "seconds": opt_total / m.clock_hz, "exposed_seconds": opt_tail / m.clock_hz},
        "stream_in_bytes": n_micro * sum(g.weight_bytes for g in state.placement.groups),
        "stream_out_bytes": n_micro * sum(g.grad_bytes for g in state.placement.groups),
        "layers": _layers(state),
    }
    if mode == "pipelined":
        out["sram_bytes"] = dict(need, total=sum(need.values()), usable=m.cores * m.usable_sram_bytes)
    else:
        out["memoryx"] = memx.as_dict()
        out["sram_per_core"] = _streaming_sram(state)
    if systems > 1:
        out["swarmx"] = SX.swarmx_for(m, systems).as_dict() | {
            "topology": "tree of 1:4 broadcast-reduce nodes (cerebras.net/glossary/swarmx); per-level latency "
                        "assumed (backends/swarmx.py)"}
    return out


def _streaming_sram(state: CompileState) -> dict:
    """SRAM per core of a weight-streamed micro-batch: what is reserved (the next layer's weights, the
    micro-batch's activations between layers) and the fullest core with its kernel's buffers."""
    pl = state.placement
    kernels = max((sum(state.program.kernels[k].model.sram(r.rows, r.cols).values())
                   for k, r in enumerate(pl.rects) if r.cores), default=0)
    return {"reserved": pl.reserved_bytes, "peak": pl.reserved_bytes + kernels, "capacity": pl.machine.sram_bytes}


def _matmul_params(train: Graph) -> int:
    """Weights of the forward's products (linear weights, the tied output projection included)."""
    return sum(op.operands[1].type.numel for op in train.ops  # the tied table again as the output projection
               if op.kind == "linear" and not (train.loc(op.result) or "").startswith(BACKWARD))
