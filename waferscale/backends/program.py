"""The lowered program and what placement and routing add to it: plain data that the passes
make and the runtime and reports read.

- ``Program``: the kernels a graph lowered to (one per op that computes) and the flows between
  them, for ``samples`` samples of ``tokens`` tokens.
- ``Placement``: one rectangle of cores per kernel; in weight-streaming mode the kernels come in
  groups (a layer each) that have the whole mesh in turn, so rectangles of different groups may
  overlap.
- ``Routing``: one XY route per flow, the bytes on every link and the colors each link needs.

``program_text`` prints them for people (``wafer compile --print-ir-after=place``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..ir.graph import Graph, Op
from .kernels.base import Kernel
from .machine import Machine

IO = -1  # the source id of a flow from the system I/O (a graph input)
RESIDENT = -2  # the source of a flow whose value is already in SRAM (streaming: an earlier layer's output)


@dataclass(frozen=True)
class KernelNode:
    id: int
    name: str  # the op's module location and what it computes, unique in the program
    op: Op
    model: Kernel
    weights: tuple[str, ...]  # parameter names held in the kernel's SRAM
    weight_bytes: int
    flops: int  # model FLOPs of the op (registry rules), for the report


@dataclass(frozen=True)
class Flow:
    src: int  # kernel id, or IO
    dst: int
    value: str  # the IR value the consumer reads
    bytes_per_token: float
    elements_per_token: float


@dataclass(frozen=True)
class Program:
    graph: Graph
    kernels: tuple[KernelNode, ...]
    flows: tuple[Flow, ...]
    samples: int
    tokens: int  # per sample
    outputs: tuple[int, ...]  # kernels whose results are graph outputs

    @property
    def weight_bytes(self) -> int:
        return sum(k.weight_bytes for k in self.kernels)


@dataclass(frozen=True, order=True)
class Rect:
    row: int
    col: int
    rows: int
    cols: int

    @property
    def cores(self) -> int:
        return self.rows * self.cols

    @property
    def center(self) -> tuple[int, int]:
        return self.row + (self.rows - 1) // 2, self.col + (self.cols - 1) // 2

    def overlaps(self, o: Rect) -> bool:
        return (self.row < o.row + o.rows and o.row < self.row + self.rows
                and self.col < o.col + o.cols and o.col < self.col + self.cols)

    def as_list(self) -> list[int]:
        return [self.row, self.col, self.rows, self.cols]


@dataclass(frozen=True)
class Group:
    """Kernels that are placed and run together: in weight-streaming mode, a layer."""

    name: str
    kernels: tuple[int, ...]  # kernel ids, in program order
    band_rows: int
    weight_bytes: int  # streamed in before the group runs
    grad_bytes: int = 0  # training: the weight gradients it makes, streamed out after it runs
    grad_params: int = 0  # training: the parameters those gradients are of (a sparse weight's kept ones)


@dataclass(frozen=True)
class Placement:
    machine: Machine
    mode: str  # "pipelined": every kernel on its own rectangle at once; "streaming": a group at a time
    rects: tuple[Rect, ...]  # indexed by kernel id
    band_rows: int
    stage_cycles: tuple[int, ...]  # busy cycles per sample, by kernel
    groups: tuple[Group, ...] = ()  # streaming: the groups, in the order they run
    reserved_bytes: int = 0  # SRAM per core kept for what is not a kernel's (streaming: prefetch, residents)
    reason: str = ""  # why this mode (place{mode=auto} says what it chose)
    kind_reason: str = ""  # why latency or throughput placement (passes/placement_kind.py), when both were weighed
    # latency placement: independent kernels may share cores too, and run one after another in program order
    # (passes/latency.py ``spread``, WaferLLM's mapping; a study)
    serial: bool = False

    @property
    def is_streaming(self) -> bool:
        """Weight streaming (a group of kernels at a time), not layer-pipelined."""
        return self.mode == "streaming"

    @property
    def is_pipelined(self) -> bool:
        return self.mode == "pipelined"

    @property
    def cores_used(self) -> int:
        """Cores in use at once: all kernels' (pipelined), or the largest group's (streaming)."""
        if not self.is_streaming:
            return sum(r.cores for r in self.rects)
        return max(sum(self.rects[k].cores for k in g.kernels) for g in self.groups)

    @property
    def occupancy(self) -> float:
        return self.cores_used / self.machine.cores

    def owner(self, kernels: tuple[int, ...] | None = None) -> np.ndarray:
        """The kernel id on each core of the mesh (-1 where none), of these kernels (default: all)."""
        m = self.machine
        owner = np.full((m.rows, m.cols), -1, dtype=np.int32)
        for i in range(len(self.rects)) if kernels is None else kernels:
            r = self.rects[i]
            owner[r.row:r.row + r.rows, r.col:r.col + r.cols] = i
        return owner


Link = tuple[int, int, str]  # (row, col, direction of travel out of that core: N, S, E, W)
STEP = {"E": (0, 1), "W": (0, -1), "S": (1, 0), "N": (-1, 0)}


def link_name(link: Link) -> str:
    row, col, d = link
    return f"({row},{col})->{d}"


@dataclass(frozen=True)
class Route:
    flow: int  # index into Program.flows
    links: tuple[Link, ...]
    lanes: int  # parallel links of the bundle
    bytes_per_sample: float

    @property
    def hops(self) -> int:
        return len(self.links)

    @property
    def end(self) -> tuple[int, int] | None:
        """The core the route arrives at."""
        if not self.links:
            return None
        row, col, d = self.links[-1]
        dr, dc = STEP[d]
        return row + dr, col + dc


@dataclass(frozen=True)
class Routing:
    routes: tuple[Route, ...]
    link_bytes: dict[Link, float]  # bytes per sample on each link (of one lane of each bundle)
    link_colors: dict[Link, int]

    @property
    def max_colors(self) -> int:
        return max(self.link_colors.values(), default=0)

    def busiest(self, n: int = 5) -> list[tuple[Link, float]]:
        return sorted(self.link_bytes.items(), key=lambda kv: (-kv[1], kv[0]))[:n]

    def mean_hops(self) -> float:
        """Mean hop distance of the flows, weighted by their bytes."""
        total = sum(r.bytes_per_sample for r in self.routes)
        return sum(r.hops * r.bytes_per_sample for r in self.routes) / total if total else 0.0


def flows_into(prog: Program, kernels: tuple[int, ...]) -> list[int]:
    """The ids of the flows whose consumer is one of these kernels, in program order."""
    members = set(kernels)
    return [i for i, f in enumerate(prog.flows) if f.dst in members]


def sub_program(prog: Program, kernels: tuple[int, ...]) -> Program:
    """The group's kernels as a program of their own: ids from 0, flows into the group only (in
    the order of ``flows_into``), a flow from an earlier group reading a value resident in SRAM
    (weight streaming)."""
    index = {k: i for i, k in enumerate(kernels)}
    nodes = tuple(replace(prog.kernels[k], id=index[k]) for k in kernels)
    flows = tuple(replace(f, src=IO if f.src == IO else index.get(f.src, RESIDENT), dst=index[f.dst])
                  for f in (prog.flows[i] for i in flows_into(prog, kernels)))
    return Program(prog.graph, nodes, flows, prog.samples, prog.tokens, ())


def signature(sub: Program) -> tuple:
    """What a group's placement and time depend on: groups with equal signatures are placed once."""
    return (tuple(k.model for k in sub.kernels),
            tuple((f.src, f.dst, f.bytes_per_token, f.elements_per_token) for f in sub.flows))


def _bytes(n: float) -> str:
    for scale, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def program_text(prog: Program, placement: Placement | None = None, routing: Routing | None = None,
                 busy: list[int] | None = None) -> str:
    """The lowered program for people: each kernel with its decomposition and weights, and, as far
    as the pipeline got, its rectangle and SRAM per core, its busy cycles; each flow with its route."""
    head = f"program @{prog.graph.name} ({prog.samples} samples x {prog.tokens} tokens"
    if placement is not None:
        m = placement.machine
        head += f"; {placement.mode} on {m.name}, {m.rows}x{m.cols} cores, bands of {placement.band_rows} rows"
    lines = [head + ") {"]
    for k in prog.kernels:
        lines.append(f"  kernel {k.id} {k.name!r}: {k.model.decomposition}")
        if k.weights:
            lines.append(f"    weights {_bytes(k.weight_bytes)}: {', '.join(k.weights)}")
        if placement is not None:
            r = placement.rects[k.id]
            sram = k.model.sram(r.rows, r.cols)
            parts = ", ".join(f"{b} {n:,}" for b, n in sram.items())
            lines.append(f"    at rows {r.row}..{r.row + r.rows - 1}, cols {r.col}..{r.col + r.cols - 1} "
                         f"({r.rows}x{r.cols} = {r.cores:,} cores); SRAM/core {sum(sram.values()):,} B ({parts}); "
                         f"{placement.stage_cycles[k.id]:,} cycles/sample")
        if busy is not None:
            lines.append(f"    busy {busy[k.id]:,} cycles")
    if placement is not None:
        for g in placement.groups:
            lines.append(f"  group {g.name!r}: kernels {', '.join(map(str, g.kernels))}; streams in "
                         f"{_bytes(g.weight_bytes)} of weights")
    names = {k.id: k.name for k in prog.kernels}
    for i, f in enumerate(prog.flows):
        src = "io" if f.src == IO else f"{f.src} {names[f.src]!r}"
        line = f"  flow {src} -> {f.dst} {names[f.dst]!r}: %{f.value}, {f.bytes_per_token:g} B/token"
        if routing is not None:
            r = routing.routes[i]
            line += f"; {r.hops} hops x {r.lanes} lanes"
        lines.append(line)
    lines.append("}")
    return "\n".join(lines) + "\n"
