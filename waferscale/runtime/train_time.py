"""The time of one training step, from the simulated forward and backward of one micro-batch.

- **Weight streaming** (``passes/streaming.py``, ``stream_sim.py``): a step is ``micro_batches``
  runs of the micro-batch program, each streaming every layer's weights in for the forward and
  again for the backward and its gradients out (MemoryX sums them across micro-batches). MemoryX
  then runs the optimizer (``assumptions.MEMORYX_UPDATE_BYTES_PER_S``, ``OPTIMIZER_BYTES_PER_PARAM``
  bytes per parameter): a layer's update starts once its last gradients are in, so it overlaps
  the backward of the layers below; what is left after the last micro-batch is the step's tail.
  On N systems (data parallel) the batch splits across them; SwarmX broadcasts each layer's
  weights and reduces its gradients through a tree of ``ceil(log_F N)`` levels, each system at its
  full I/O rate, each stream paying the tree's latency (``assumptions.SWARMX_*``).
- **Layer-pipelined**: the whole batch flows through the forward and backward kernels at once
  (their weight gradients accumulate in place), then the optimizer runs on the wafer, on every
  core's share of the parameters (the ``adamw`` graph's ops, at the f32 element rate).
"""

from __future__ import annotations

from math import ceil, log

from ..backends import assumptions as A
from ..backends.kernels.rowwise import element_cycles
from ..backends.machine import Machine
from ..ir.graph import Graph
from ..ir.ops.linalg import sparse_params

OPTIMIZER_BYTES_PER_PARAM = 28  # AdamW in MemoryX (assumptions.MEMORYX_UPDATE_BYTES_PER_S says why)
OPTIMIZER = "optimizer:"


def swarmx_levels(systems: int) -> int:
    """Levels of SwarmX's broadcast-reduce tree between MemoryX and ``systems`` systems."""
    return 0 if systems <= 1 else ceil(log(systems, A.SWARMX_FANOUT) - 1e-9)


def swarmx_latency_cycles(systems: int, machine: Machine) -> int:
    return ceil(swarmx_levels(systems) * A.SWARMX_LEVEL_LATENCY_S * machine.clock_hz)


def memoryx_optimizer(groups, machine: Machine) -> tuple[float, float]:
    """(cycles MemoryX takes for the whole update, cycles after the last gradient is in until the last
    layer is updated) for one micro-batch's GroupTimes, the last of the step: each group's
    ``grad_params`` parameters (a sparse weight's kept ones only: its pruned ones stay zero)."""
    rate = A.MEMORYX_UPDATE_BYTES_PER_S / machine.clock_hz
    free = total = 0.0
    for g in groups:
        if not g.grad_bytes:
            continue
        cycles = g.grad_params * OPTIMIZER_BYTES_PER_PARAM / rate
        free = max(free, g.grad_end) + cycles
        total += cycles
    last_in = max((g.grad_end for g in groups), default=0)
    end = max((g.end for g in groups), default=0)
    return total, max(0.0, free - max(last_in, end))


def wafer_optimizer_cycles(g: Graph, machine: Machine) -> float:
    """Cycles of the adamw graph's ops on every core of the wafer, at the f32 element rate; a sparse
    weight's (``optimizer:P`` of a P that sparse linears read) on its kept entries only."""
    lanes = machine.lanes("f32") * A.ELEMENTWISE_LANE_FRACTION
    density = sparse_params(g)
    work = 0.0
    for op in g.ops:
        loc = g.loc(op.result) or ""
        if loc.startswith(OPTIMIZER) and op.kind not in ("constant", "cast"):
            work += op.type.numel * element_cycles(op.kind) * density.get(loc.removeprefix(OPTIMIZER), 1.0)
    return work / (lanes * machine.cores)
