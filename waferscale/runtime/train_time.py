"""The time of one training step, from the simulated forward and backward of one micro-batch.

- **Weight streaming** (``passes/streaming.py``, ``stream_sim.py``): a step is ``micro_batches``
  runs of the micro-batch program, each streaming every layer's weights in for the forward and
  again for the backward and its gradients out (MemoryX sums them across micro-batches). MemoryX
  then runs the optimizer (``backends/memoryx.py``: its rate; ``OPTIMIZER_BYTES_PER_PARAM`` bytes
  per parameter): a layer's update starts once its last gradients are in, so it overlaps
  the backward of the layers below; what is left after the last micro-batch is the step's tail.
  On N systems (data parallel) the batch splits across them; SwarmX broadcasts each layer's
  weights and reduces its gradients through a tree of ``ceil(log_F N)`` levels, each system at its
  full I/O rate, each stream paying the tree's latency (``backends/swarmx.py``).
- **Layer-pipelined**: the whole batch flows through the forward and backward kernels at once
  (their weight gradients accumulate in place), then the optimizer runs on the wafer, on every
  core's share of the parameters (the ``adamw`` graph's ops, at the f32 element rate).
"""

from __future__ import annotations

from dataclasses import replace
from math import ceil

from ..backends import assumptions as A
from ..backends import memoryx as MX
from ..backends import swarmx as SX
from ..backends.kernels.rowwise import element_cycles
from ..backends.machine import Machine
from ..ir.graph import Graph
from ..ir.ops.linalg import sparse_params

OPTIMIZER_BYTES_PER_PARAM = MX.ADAMW_BYTES_PER_PARAM  # AdamW in MemoryX (backends/memoryx.py says why)
OPTIMIZER = "optimizer:"
SECONDS_PER_DAY = 86400
TOKENS_PER_PARAM = 20  # Chinchilla-style budget, as the Cerebras-GPT paper trains every model
# The Cerebras-GPT paper's training tokens and training FLOPs per model (arXiv 2304.03208, table 2, and
# the models' Hugging Face cards: "Training tokens", "Training FLOPs"; 13B's 2.57e11 and 111M's 9037
# steps x 120 x 2048 = 2.2e9 rechecked while writing this, the others as we read them).
PAPER_RUNS = {  # model: (training tokens, training FLOPs)
    "cerebras-gpt-111m": (2.2e9, 2.6e18), "cerebras-gpt-256m": (5.1e9, 1.3e19),
    "cerebras-gpt-590m": (1.2e10, 6.1e19), "cerebras-gpt-1.3b": (2.6e10, 2.8e20),
    "cerebras-gpt-2.7b": (5.3e10, 1.1e21), "cerebras-gpt-6.7b": (1.3e11, 6.3e21),
    "cerebras-gpt-13b": (2.57e11, 2.3e22),
}


def swarmx_levels(systems: int) -> int:
    """Levels of SwarmX's broadcast-reduce tree between MemoryX and ``systems`` systems."""
    return SX.SwarmX(systems, 0.0).levels


def swarmx_latency_cycles(systems: int, machine: Machine) -> int:
    return ceil(SX.swarmx_for(machine, systems).latency_s() * machine.clock_hz)


def memoryx_optimizer(groups, machine: Machine, memx: MX.MemoryX | None = None) -> tuple[float, float]:
    """(cycles MemoryX takes for the whole update, cycles after the last gradient is in until the last
    layer is updated) for one micro-batch's GroupTimes, the last of the step: each group's
    ``grad_params`` parameters (a sparse weight's kept ones only: its pruned ones stay zero), each
    layer's update overlapping the backward of the layers below (``backends/memoryx.py``)."""
    sched = MX.update_schedule(groups, memx or MX.memoryx_for(machine), machine.clock_hz)
    return sched.total, sched.exposed


def time_to_train(model: str, params: int, step_seconds: float, tokens_per_step: int, systems: int,
                  flops_per_token: float, tokens: float | None = None) -> dict:
    """The report's ``train.time_to_train``: ``tokens`` (default: the paper's for a Cerebras-GPT model,
    20 per parameter otherwise) as steps of ``step_seconds`` on ``systems`` systems."""
    paper = PAPER_RUNS.get(model)
    source = "--tokens" if tokens is not None else "the Cerebras-GPT paper" if paper else "20 per parameter"
    tokens = float(tokens if tokens is not None else paper[0] if paper else TOKENS_PER_PARAM * params)
    steps = ceil(tokens / tokens_per_step)
    seconds = steps * step_seconds
    out = {"tokens": tokens, "tokens_source": source, "steps": steps, "systems": systems, "seconds": seconds,
           "days": seconds / SECONDS_PER_DAY, "system_days": seconds * systems / SECONDS_PER_DAY,
           "flops": flops_per_token * tokens,
           "note": "steps x the simulated step (no warm-up, evaluation, checkpoints or input pipeline)"}
    if paper:
        out["paper"] = {"tokens": paper[0], "flops": paper[1], "source": "arXiv 2304.03208 table 2 / model card"}
    return out


def wafer_optimizer_cycles(g: Graph, machine: Machine) -> float:
    """Cycles of the adamw graph's ops on every core of the wafer, at the f32 element rate; a sparse
    weight's (``optimizer:P`` of a P that sparse linears read) on its kept entries only."""
    lanes = machine.datapath("f32").rate * A.ELEMENTWISE_LANE_FRACTION  # f32's rate (costs.py)
    density = sparse_params(g)
    work = 0.0
    for op in g.ops:
        loc = g.loc(op.result) or ""
        if loc.startswith(OPTIMIZER) and op.kind not in ("constant", "cast"):
            work += op.type.numel * element_cycles(op.kind) * density.get(loc.removeprefix(OPTIMIZER), 1.0)
    return work / (lanes * machine.cores)


RATE_FACTORS = (0.5, 2.0)  # the MemoryX update rate is our assumption: the step at half and twice it
SCALING_SYSTEMS = (1, 2, 4, 8, 16)  # Andromeda's 16 CS-2 systems (cerebras.net, Nov 2022)


def rate_sensitivity(groups, machine: Machine, memx: MX.MemoryX, steady_cycles: float) -> dict:
    """The step at half and twice MemoryX's assumed update rate (``RATE_FACTORS``): only the exposed
    tail changes, the micro-batches before it (``steady_cycles``) do not."""
    out = {}
    for f in RATE_FACTORS:
        sched = MX.update_schedule(groups, replace(memx, update_bytes_per_s=memx.update_bytes_per_s * f),
                                   machine.clock_hz)
        out[f"{f:g}"] = {"update_bytes_per_s": memx.update_bytes_per_s * f,
                         "exposed_seconds": sched.exposed / machine.clock_hz,
                         "step_seconds": (steady_cycles + sched.exposed) / machine.clock_hz}
    return out


def scaling_curve(batch: int, systems: int, micro: int, micro_seconds: float, tail_seconds: float, streams: int,
                  machine: Machine) -> dict:
    """This compile's global ``batch`` on 1 to 16 systems at its per-system micro-batch ``micro`` (strong
    scaling at fixed micro-batch): each system runs ``batch / N / micro`` micro-batches of this compile's
    time, then MemoryX's exposed tail; the SwarmX latency of N systems replaces this compile's on each of
    its ``streams`` weight and gradient streams (an upper bound: most of it hides behind compute).
    Efficiency: the step on one system over N times the step on N. Counts whose batch per system the
    micro-batch does not divide are left out."""
    lat = SX.swarmx_for(machine, systems).latency_s()
    points = []
    for n in sorted(set(SCALING_SYSTEMS) | {systems}):
        if batch % n or (batch // n) % micro:
            continue
        m_s = micro_seconds + streams * (SX.swarmx_for(machine, n).latency_s() - lat)
        points.append({"systems": n, "micro_batches": batch // n // micro,
                       "step_seconds": batch // n // micro * m_s + tail_seconds})
    one = points[0]["step_seconds"] if points and points[0]["systems"] == 1 else None
    for p in points:
        p["efficiency"] = one / (p["systems"] * p["step_seconds"]) if one else None
    return {"batch": batch, "micro_batch": micro, "points": points,
            "basis": "estimated from this compile: the global batch split over N systems at this micro-batch, "
                     "this micro-batch's simulated time, SwarmX latency for N, MemoryX's exposed tail "
                     "(runtime/train_time.py scaling_curve); benchmarks/paper_scaling.py compiles each N"}
