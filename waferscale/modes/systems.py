"""Several systems, for every mode: the one implementation of each way a run spreads over them.

- **pipeline** (``split_pipeline``): the lowered program cut, at transformer blocks, into ``N``
  consecutive parts of about equal weight, one per system, each placed layer-pipelined on a wafer
  of its own. A layer's forward and backward kernels (a training graph's) go to the same system,
  which holds its weights. What one system computed crosses to the next over the inter-system link
  (the machine file's ``inter_system_*``): the receiving system's simulation streams it in
  at the link's rate, as it streams a graph input (``part_program``), and each crossing adds the
  link's latency (``pipeline_seconds``). Used by inference, train and generate.
- **data** (``data_parallel``): every system runs the whole model on its share of the batch; SwarmX
  broadcasts the weights from MemoryX and reduces the gradients. Its cost is one function,
  ``swarmx_latency_cycles`` (the tree's latency added to every weight stream and gradient stream:
  ``runtime/train_time.py``, ``backends/swarmx.py``), so that a finer model of SwarmX can
  replace it. Used by inference (weight streaming pays it on every stream; layer-pipelined loads the
  weights once, before the run) and train.

The default split (``default_split``): ``data`` for the modes that can stream their weights
(inference, train), ``pipeline`` for generation, which keeps every weight in SRAM.
"""

from __future__ import annotations

from dataclasses import replace

from ..backends import swarmx as SX
from ..backends.machine import Machine
from ..backends.program import IO, RESIDENT, Program, sub_program
from ..errors import UsageError
from ..passes.autodiff import BACKWARD
from ..passes.streaming import groups_of
from ..runtime import train_time as TT
from ..runtime.tile_sim import SimResult


def default_split(splits: tuple[str, ...]) -> str:
    """The split a mode runs on several systems when none is asked: the first it takes."""
    return splits[0]


def swarmx_latency_cycles(systems: int, machine: Machine) -> int:
    """SwarmX's cost, in cycles added to each weight stream in and each gradient stream out of a
    system (0 on one system): its tree's levels times a level's latency (our assumption)."""
    return TT.swarmx_latency_cycles(systems, machine)


def swarmx_section(systems: int) -> dict:
    return {"levels": TT.swarmx_levels(systems), "fanout": SX.FANOUT, "level_latency_seconds": SX.LEVEL_LATENCY_S,
            "topology": "tree of 1:4 broadcast-reduce nodes (cerebras.net/glossary/swarmx); per-level latency "
                        "assumed (backends/swarmx.py)"}


def data_parallel(seconds: float, tokens: int, systems: int, machine: Machine, *, weight_bytes: int,
                  grad_bytes: int = 0, streamed: bool) -> dict:
    """A run of ``seconds`` on each system (its ``tokens``, the SwarmX latency already in a
    streamed run's simulation), all systems at once: the run's time and tokens/s over all of them."""
    return {"split": "data", "systems": systems, "seconds": seconds, "tokens": tokens * systems,
            "tokens_per_s": tokens * systems / seconds, "tokens_per_s_per_system": tokens / seconds,
            "broadcast_bytes": weight_bytes, "reduce_bytes": grad_bytes,
            "swarmx_latency_seconds": swarmx_latency_cycles(systems, machine) / machine.clock_hz,
            "swarmx_paid": "on every weight stream and gradient stream (in the simulation)" if streamed else
                           "once, loading the weights before the run (not in the time)",
            "swarmx": swarmx_section(systems)}


def layer_of(name: str) -> str:
    return name.replace(BACKWARD, "")


def split_pipeline(prog: Program, systems: int) -> list[tuple[int, ...]]:
    """N parts of the kernels (ids in program order), cut between transformer blocks in the
    forward's order, of about equal weight; a layer's backward kernels go with its forward ones."""
    if systems == 1:
        return [tuple(range(len(prog.kernels)))]
    layers: dict[str, list[int]] = {}
    for name, ks in groups_of(prog):
        layers.setdefault(layer_of(name), []).extend(ks)
    groups = list(layers.values())
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
    return [tuple(sorted(k for ks in groups[a:b] for k in ks)) for a, b in zip(bounds, bounds[1:])]


def crossing_bytes(prog: Program, parts: list[tuple[int, ...]]) -> list[float]:
    """Bytes per token that cross each cut between consecutive parts, either way (each value once)."""
    part_of = {k: i for i, ks in enumerate(parts) for k in ks}
    out = []
    for b in range(len(parts) - 1):
        crossing = {(f.src, f.value): f.bytes_per_token for f in prog.flows
                    if f.src not in (IO, RESIDENT) and min(part_of[f.src], part_of[f.dst]) <= b
                    < max(part_of[f.src], part_of[f.dst])}
        out.append(sum(crossing.values()))
    return out


def part_program(prog: Program, kernels: tuple[int, ...], systems: int) -> Program:
    """One system's kernels as a program of their own; what another system computed comes in over
    the link, which the simulation streams in as it streams a graph input over the system I/O."""
    if systems == 1:
        return prog
    sub = sub_program(prog, kernels)
    return replace(sub, flows=tuple(replace(f, src=IO) if f.src == RESIDENT else f for f in sub.flows))


def pipeline_seconds(sims: list[SimResult], machine: Machine, crossings: int | None = None) -> float:
    """One run through the systems in turn: every system's latency and every crossing's (``N - 1``,
    or twice that for a training step, forward and back), then the longest any system spends on
    the rest of the batch. A crossing's transfer at the link's rate is in the receiving system's
    simulation (its input stream)."""
    crossings = len(sims) - 1 if crossings is None else crossings
    first = sum(s.latency for s in sims) / machine.clock_hz + crossings * machine.inter_system_latency_s
    return first + max((s.cycles - s.latency) / machine.clock_hz for s in sims)


def link_section(machine: Machine, crossing: list[float]) -> dict:
    return {"name": machine.inter_system_link_name, "bytes_per_s": machine.io_bytes_per_s,
            "latency_seconds": machine.inter_system_latency_s, "bytes_per_token": crossing,
            "source": "rate: the system I/O; latency: our assumption (the machine file)"}


def system_detail(prog: Program, kernels: tuple[int, ...], state) -> dict:
    """One system's part of a pipeline: its kernels, placement and simulated time."""
    pl = state.placement
    return {"kernels": len(kernels), "first_kernel": prog.kernels[kernels[0]].name,
            "last_kernel": prog.kernels[kernels[-1]].name, "cores_used": pl.cores_used, "occupancy": pl.occupancy,
            "weight_bytes": sum(prog.kernels[k].weight_bytes for k in kernels),
            "sram_peak_bytes_per_core": max(sum(k.model.sram(r.rows, r.cols).values())
                                            for k, r in zip(state.program.kernels, pl.rects)),
            "cycles": state.sim.cycles, "latency_cycles": state.sim.latency}
