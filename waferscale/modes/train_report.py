"""The report section of a training step (``modes/train.py``): the step's time from the simulated
micro-batch and the optimizer, its model FLOPs and MFU, per layer what bounds it, the SRAM that
layer-pipelined training keeps, and the sparse weights against the dense baseline."""

from __future__ import annotations

from math import ceil

from ..backends import assumptions as A
from ..backends import memoryx as MX
from ..backends import swarmx as SX
from ..backends.machine import Machine
from ..errors import FitError
from ..ir import Graph
from ..ir.ops.grad import MASK
from ..ir.ops.linalg import sparse_params
from ..passes import CompileState
from ..passes.autodiff import BACKWARD
from ..passes.place import MODES
from ..passes.streaming import groups_of
from ..report.stats import model_stats
from ..runtime import train_time as TT
from .systems import swarmx_section


def size_text(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.2f} MB"


def pipelined_need(step: Graph, train: Graph) -> dict[str, int]:
    """SRAM bytes that layer-pipelined training keeps: weights (twice: the forward's and the
    backward's kernels), their gradients, the optimizer state."""
    model = {p.name for p in train.params}
    weights = sum(p.type.nbytes for p in train.params if not p.name.startswith(MASK))  # dense: an upper bound
    state = sum(p.type.nbytes for p in step.params if p.name not in model)
    return {"weights": 2 * weights, "gradients": weights, "optimizer_state": state}


def refuse_pipelined(name: str, machine: Machine, need: dict[str, int]) -> FitError:
    usable = machine.cores * machine.usable_sram_bytes
    total = sum(need.values())
    parts = ", ".join(f"{k.replace('_', ' ')} {size_text(v)}" for k, v in need.items())
    return FitError(f"{name} does not fit on {machine.name} for layer-pipelined training: it keeps "
                    f"{size_text(total)} in SRAM ({parts}) and the mesh has {size_text(usable)} usable, "
                    f"{size_text(total - usable)} short; use --mode streaming (weights in MemoryX) or a smaller model")


def sparsity_section(sparsify: str, state: CompileState, train: Graph, section: dict, dense: dict) -> dict:
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


def layers_section(state: CompileState) -> list[dict]:
    """Per layer and direction: what bounds it, its compute and (streaming) stream times."""
    m, sim = state.machine, state.sim
    if state.placement.is_streaming:
        return [{"name": g.name.removeprefix(BACKWARD), "direction": "backward" if g.name.startswith(BACKWARD)
                 else "forward", "bound": g.bound, "compute_seconds": g.compute / m.clock_hz,
                 "stream_in_seconds": g.stream / m.clock_hz, "weight_bytes": g.weight_bytes,
                 "grad_bytes": g.grad_bytes} for g in sim.groups]
    out = []
    for name, ks in groups_of(state.program):
        busy = max(sim.kernels[k].busy for k in ks)
        slow = max(ks, key=lambda k: sim.kernels[k].busy)
        out.append({"name": name.removeprefix(BACKWARD), "direction": "backward" if name.startswith(BACKWARD)
                    else "forward", "bound": sim.kernels[slow].bound, "compute_seconds": busy / m.clock_hz,
                    "stream_in_seconds": 0.0, "weight_bytes": sum(state.program.kernels[k].weight_bytes for k in ks),
                    "grad_bytes": 0})
    return out


def train_section(state: CompileState, src, train: Graph, step: Graph, mode: str, systems: int, batch: int,
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
    n_matmul = matmul_params(train)
    closed = 6 * n_matmul + (12 * layers * tokens * d if d and layers else 0)
    out = {
        "mode": MODES[mode], "systems": systems, "batch": batch, "batch_per_system": per_system,
        "micro_batch": micro, "micro_batches": n_micro, "seq": tokens, "tokens_per_step": step_tokens,
        "step_cycles": step_cycles, "step_seconds": seconds, "micro_batch_seconds": micro_cycles / m.clock_hz,
        "tokens_per_s": step_tokens / seconds, "tokens_per_s_per_system": step_tokens / seconds / systems,
        "flops_per_token": flops["total"], "flops_per_token_forward": flops["forward"],
        "flops_per_token_backward": flops["backward"], "flops_per_token_by_class": flops["by_class"],
        "flops_per_token_closed_form": closed,
        "flops_convention": "forward + backward model FLOPs of the graph (docs/flops.md); the closed form is "
                            "6 x matmul parameters (of a mixture of experts, the active ones) + 12 x layers x seq "
                            "x d_model (dense scores)",
        "mfu": flops["total"] * step_tokens / (seconds * m.mfu_peak_flops * systems),
        "optimizer": {"where": where, "seconds": opt_total / m.clock_hz, "exposed_seconds": opt_tail / m.clock_hz},
        "stream_in_bytes": n_micro * sum(g.weight_bytes for g in state.placement.groups),
        "stream_out_bytes": n_micro * sum(g.grad_bytes for g in state.placement.groups),
        "layers": layers_section(state),
    }
    if mode == "pipelined":
        out["sram_bytes"] = dict(need, total=sum(need.values()), usable=m.cores * m.usable_sram_bytes)
    else:
        out["memoryx"] = memx.as_dict()
        out["sram_per_core"] = streaming_sram(state)
        # the update rate is our assumption (backends/memoryx.py): the step at half and twice it
        out["optimizer"]["rate_sensitivity"] = TT.rate_sensitivity(sim.groups, m, memx, n_micro * micro_cycles)
        streams = sum(bool(g.weight_bytes) + bool(g.grad_bytes) for g in sim.groups)
        out["scaling"] = TT.scaling_curve(batch, systems, micro, micro_cycles / m.clock_hz, opt_tail / m.clock_hz,
                                          streams, m)
    if systems > 1:
        out["swarmx"] = swarmx_section(systems) | SX.swarmx_for(m, systems).as_dict()
    return out


def streaming_sram(state: CompileState) -> dict:
    """SRAM per core of a weight-streamed micro-batch: what is reserved (the next layer's weights, the
    micro-batch's activations between layers) and the fullest core with its kernel's buffers."""
    pl = state.placement
    kernels = max((sum(state.program.kernels[k].model.sram(r.rows, r.cols).values())
                   for k, r in enumerate(pl.rects) if r.cores), default=0)
    return {"reserved": pl.reserved_bytes, "peak": pl.reserved_bytes + kernels, "capacity": pl.machine.sram_bytes}


def matmul_params(train: Graph) -> int:
    """Weights of the forward's products (linear weights, the tied output projection included; a
    mixture of experts' active ones: k of E experts per token)."""
    total = 0
    for op in train.ops:
        if (train.loc(op.result) or "").startswith(BACKWARD):
            continue
        if op.kind == "linear":  # the tied table again as the output projection
            total += op.operands[1].type.numel
        elif op.kind == "moe_experts":
            k, e = op.operands[1].type.shape[1], op.operands[2].type.shape[0]
            total += (op.operands[2].type.numel + op.operands[3].type.numel) * k // e
        elif op.kind == "moe_linear":  # gpt-oss's experts: a grouped GEMM each
            total += op.operands[2].type.numel * op.operands[1].type.shape[1] // op.operands[2].type.shape[0]
    return total
