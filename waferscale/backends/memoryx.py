"""MemoryX: the weight store of weight-streaming training, and where the optimizer step runs.

A component as data (``MemoryX``) and its cost functions. Each figure carries its source or says
that it is our assumption:

- **capacity**: 4 TB to 2.4 PB for a CS-2 (cerebras.net/glossary/memoryx); we check against the
  smallest (``Machine.memoryx_bytes``).
- **bandwidth to each system**: "both the storage and I/O interface of the MemoryX service can
  match or exceed the I/O bandwidth of a CS-2 system" (same page): the system's 12 x 100 GbE,
  150 GB/s (``Machine.io_bytes_per_s``, Argonne SC24 tutorial). With several systems SwarmX sits
  between (``swarmx.py``): MemoryX sends each layer once and receives one reduced gradient.
- **where the optimizer runs**: "weight updates are performed by the MemoryX service, which
  provides flexible compute capable of supporting any optimizer algorithm, such as SGD or Adam"
  (same page), so the update is MemoryX's, not the wafer's.
- **its compute rate**: not published. An AdamW update is memory-bound (``bytes_per_param``: 28
  B read and written per parameter, f32 master weights and moments, 16-bit gradient and weight),
  so we take it to run at the DRAM bandwidth of the MemoryX servers, sharded over them by
  parameter. The servers are AMD EPYC 7003 (Milan) machines (Andromeda: 124 servers, 284 EPYC
  Milan 64-core processors in all, Tom's Hardware, Nov 2022); one socket has 8 channels of
  DDR4-3200, 204.8 GB/s peak (AMD EPYC 7003 specification). Our assumptions: the update runs on
  ``NODES`` two-socket servers of the cluster's, at ``STREAM_FRACTION`` of peak DRAM bandwidth (a
  STREAM-like sweep); ``memoryx_for(machine, nodes)`` takes another node count. Cerebras publishes
  no update rate or MemoryX node count (the glossary says only that the update's compute is
  "relatively low" next to the forward and backward; searched for issue 28: the glossary pages, the
  Andromeda and Cerebras-GPT announcements, the model cards), so the 1.31 TB/s is a stated guess: one
  one-socket node at 0.6 of peak (123 GB/s) and 8 nodes at 0.9 (2.9 TB/s) bracket it; each training
  report gives the step at half and twice it (``train.optimizer.rate_sensitivity``).
- **overlap**: a layer's gradients stream out as its backward finishes (``stream_sim.py``) and
  MemoryX updates that layer as soon as they are in, while the layers below are still in their
  backward; updates queue when MemoryX is slower than the backward. What is left after the last
  gradient is in is the step's exposed tail: one layer's update when MemoryX keeps up.
"""

from __future__ import annotations

from dataclasses import dataclass

SOCKET_DRAM_BYTES_PER_S = 204.8e9  # AMD EPYC 7003: 8 channels x DDR4-3200 (25.6 GB/s each)
SOCKETS_PER_NODE = 2  # our assumption: two-socket servers (284 processors over 124 servers in Andromeda)
NODES = 4  # our assumption: the servers of the cluster that hold the optimizer state and update it
STREAM_FRACTION = 0.8  # our assumption: the share of peak DRAM bandwidth a streaming update reaches
ADAMW_BYTES_PER_PARAM = 28  # read master, m, v (f32) and the 16-bit gradient; write master, m, v and the weight


@dataclass(frozen=True)
class MemoryX:
    capacity_bytes: float
    link_bytes_per_s: float  # to and from each system (or SwarmX's root)
    update_bytes_per_s: float  # optimizer bytes moved per second, all its nodes together
    bytes_per_param: int = ADAMW_BYTES_PER_PARAM
    nodes: int = NODES

    def update_cycles(self, params: int, clock_hz: float) -> float:
        """Cycles (of the wafer's clock) MemoryX takes to update ``params`` parameters."""
        return params * self.bytes_per_param * clock_hz / self.update_bytes_per_s

    def as_dict(self) -> dict:
        return {"capacity_bytes": self.capacity_bytes, "link_bytes_per_s": self.link_bytes_per_s,
                "update_bytes_per_s": self.update_bytes_per_s, "bytes_per_param": self.bytes_per_param,
                "nodes": self.nodes, "optimizer_runs_in": "MemoryX (cerebras.net/glossary/memoryx)",
                "sources": "capacity, link, where the update runs: Cerebras glossary; node DRAM: AMD EPYC 7003 "
                           "spec; nodes and the DRAM fraction: our assumptions (backends/memoryx.py)"}


def memoryx_for(machine, nodes: int = NODES) -> MemoryX:
    """The MemoryX of a weight-streaming cluster of ``machine``s."""
    rate = nodes * SOCKETS_PER_NODE * SOCKET_DRAM_BYTES_PER_S * STREAM_FRACTION
    return MemoryX(machine.memoryx_bytes, machine.io_bytes_per_s, rate, nodes=nodes)


@dataclass(frozen=True)
class UpdateSchedule:
    total: float  # cycles of every layer's update
    exposed: float  # cycles after the last gradient is in (and the last layer has run) until the last update ends
    largest: float  # the longest one layer's update takes
    layers: int


def update_schedule(groups, memx: MemoryX, clock_hz: float, overlap: bool = True) -> UpdateSchedule:
    """When MemoryX updates each layer of the step's last micro-batch (``GroupTime``s in the order they
    ran). With ``overlap`` a layer's update starts once its gradients are in and MemoryX is free;
    without, every update waits for the whole backward."""
    free = total = largest = 0.0
    last_in = max((g.grad_end for g in groups), default=0)
    end = max((g.end for g in groups), default=0)
    done = max(last_in, end)
    n = 0
    for g in sorted((g for g in groups if g.grad_bytes), key=lambda g: g.grad_end):
        cycles = memx.update_cycles(g.grad_params, clock_hz)
        free = max(free, g.grad_end if overlap else done) + cycles
        total += cycles
        largest = max(largest, cycles)
        n += 1
    return UpdateSchedule(total, max(0.0, free - done), largest, n)
