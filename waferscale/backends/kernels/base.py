"""What every mesh kernel declares, and the table that says which kernel an op lowers to.

A kernel is one op (or one fused region) running on a ``rows x cols`` rectangle of cores. Each
kernel class states, in one place:

- its decomposition: which tensor dimensions are split over the rows and over the columns;
- ``sram``: the SRAM each core needs, by buffer;
- ``work`` and ``model_cycles``: what a chunk of tokens ``[p0, p1)`` of one sample asks of the
  hardware and the cycles it is busy for it (tokens stream through a kernel one after another,
  so a chunk costs its tokens' steady-state cycles; the rectangle's ``fill`` is first-token
  latency, reported apart);
- ``run``: the op's numbers computed tile by tile, the way the rectangle would compute them.

Every chunk's cycles are at least its roofline (``roofline_cycles``): the bound from the
rectangle's peak FMAC rate, its SRAM ports (reads and writes apart: two read ports, one write
port), the ramps that deliver wavelets to its cores, and the links crossing its perimeter. The
kernel models only ever add to that bound.

``RULES`` maps an op kind (or a whole category, such as ``elementwise``) to the function that
builds its kernel; each kernel module registers its own with ``@lowers``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from math import ceil

import numpy as np

from ...ir import registry
from ...ir.graph import Op
from ..machine import WSE2, Machine


@dataclass(frozen=True)
class Work:
    """What a chunk asks of the hardware, summed over its rectangle. The SRAM traffic is what the
    inner loops read and write through the ports (``datapath.py``): weights, accumulators and
    operands, as a lower bound (small per-token terms may be left out, never added)."""

    flops: float
    sram_read: float  # bytes
    sram_write: float  # bytes
    delivered: float  # wavelets delivered to cores through their ramps
    edge: float  # wavelets crossing the rectangle's perimeter (in + out)


@dataclass(frozen=True)
class ChunkCost:
    cycles: int  # busy cycles of the rectangle
    bound: str  # the largest roofline term
    roofline: float  # cycles
    flops: float  # executed


def roofline_cycles(work: Work, rows: int, cols: int, machine: Machine, dtype: str) -> dict[str, float]:
    cores = rows * cols
    return {
        "compute": work.flops / (2 * machine.datapath(dtype).rate * cores),  # f32 at the cost table's rate
        "sram": max(work.sram_read / (machine.sram_read_ports * machine.sram_port_bytes * cores),
                    work.sram_write / (machine.sram_write_ports * machine.sram_port_bytes * cores)),
        "fabric": max(work.delivered / cores, work.edge / (2 * (rows + cols))) / machine.elements_per_wavelet,
    }


def f32(x: np.ndarray) -> np.ndarray:
    """Half-precision data computed in f32, as the cores accumulate."""
    return x.astype(np.float32) if x.dtype == np.float16 else x


@dataclass(frozen=True)
class Kernel:
    """Base: a kernel of ``tokens`` tokens per sample, elements of ``elem`` bytes."""

    tokens: int
    dtype: str
    elem: int
    # SRAM per core for each fabric color it uses: the machine's (``Machine.queue_bytes_per_color``), set by
    # lowering for the machine compiled for (``lowering.lower(..., machine=)``); WSE-2's file's otherwise
    queue_bytes_per_color: int = field(default=WSE2.queue_bytes_per_color, kw_only=True)

    decomposition = ""  # which dims go over rows and columns, for people
    colors = 2  # fabric colors its own algorithm uses (besides the flows in and out)

    def max_rows(self) -> int:
        return self.tokens

    def max_cols(self) -> int:
        raise NotImplementedError

    def sram(self, rows: int, cols: int) -> dict[str, int]:
        raise NotImplementedError

    def work(self, p0: int, p1: int) -> Work:
        raise NotImplementedError

    def model_cycles(self, rows: int, cols: int, p0: int, p1: int, machine: Machine) -> float:
        raise NotImplementedError

    def run(self, op: Op, args: list[np.ndarray], rows: int, cols: int) -> np.ndarray:
        """The op's result, computed tile by tile as a rows x cols rectangle computes it."""
        raise NotImplementedError

    def fill(self, rows: int, cols: int, machine: Machine) -> int:
        """Cycles of the first token's latency through the rectangle (not busy time)."""
        return (rows - 1 + cols - 1) * machine.hop_cycles + 2 * machine.router_delay_cycles

    def chunk(self, rows: int, cols: int, p0: int, p1: int, machine: Machine) -> ChunkCost:
        """Tokens [p0, p1) on a rows x cols rectangle: the model's cycles, never below the roofline;
        the bound is the largest roofline term (compute, sram or fabric)."""
        work = self.work(p0, p1)
        roof = roofline_cycles(work, rows, cols, machine, self.dtype)
        top = max(roof.values())
        cycles = ceil(max(self.model_cycles(rows, cols, p0, p1, machine), top))
        return ChunkCost(cycles, max(roof, key=roof.get), top, work.flops)

    def cycles(self, rows: int, cols: int, p0: int, p1: int, machine: Machine) -> tuple[int, str]:
        """(busy cycles, bound) of tokens [p0, p1)."""
        c = self.chunk(rows, cols, p0, p1, machine)
        return c.cycles, c.bound

    def emit(self, rows: int, cols: int) -> int:
        """Cycles over which a token's outputs leave the rectangle, the last at its fill's end (element
        streaming: a consumer may start on the first); 0: they leave together, the token is the unit."""
        return 0

    def stream_tail(self, rows: int, cols: int, machine: Machine) -> int | None:
        """Busy cycles left after a token's last input element arrives, when the kernel works on its
        inputs element by element as they arrive (then its fill); None: it waits for whole tokens."""
        return None

    def algorithm(self, rows: int, cols: int, machine: Machine) -> str:
        """The kernel choice made on a rows x cols rectangle, for people (empty when it has none)."""
        return ""

    def colors_at(self, rows: int, cols: int, machine: Machine) -> int:
        """The colors its algorithm uses on a rows x cols rectangle (a kernel choice may add some)."""
        return self.colors

    def queues(self) -> int:
        """SRAM per core of its colors' queues, at the machine's bytes per color (set at lowering)."""
        return self.colors * self.queue_bytes_per_color


# -- lowering rules ------------------------------------------------------------------------------

PARAM, ACT, CONST = "param", "act", "const"  # where an operand comes from


@dataclass(frozen=True)
class LowerCtx:
    """What a lowering rule knows besides the op: the shape of the run and where each operand
    comes from (``param``: a weight; ``act``: a kernel's output or a graph input; ``const``: made
    of constants at no cost)."""

    tokens: int  # per sample
    samples: int
    sources: tuple[str, ...]  # per operand: PARAM, ACT or CONST
    where: str  # the op, for error messages
    per_step: bool = False  # its activations are step-shaped (weight gradients), not per token
    position: int = 0  # the sequence position of the run's first token (a decode step: the KV cache's rows)
    # the machine the program is for, where the pipeline knows it (a rule whose kernel's decomposition
    # depends on the machine's costs reads it: the MoE decode step's expert slicing); None: not known
    machine: Machine | None = None
    traced: int = 0  # tokens the graph's types hold (0: samples x tokens), when it is lowered for another shape

    @property
    def total(self) -> int:
        """Tokens the op's types hold, all samples: what a per-token figure divides them by."""
        return self.traced or self.tokens * self.samples

    def flops_per_token(self, op: Op) -> float:
        """The op's FLOPs (registry rule) per token of the whole run."""
        return registry.flops(op.kind, [x.type for x in op.operands], op.type, op.attr) / self.total


Rule = Callable[[Op, LowerCtx], Kernel]
RULES: dict[str, Rule] = {}


def lowers(*keys: str):
    """Register a rule for op kinds, or for every op of a category (``category:elementwise``)."""
    def register(rule: Rule) -> Rule:
        for key in keys:
            if key in RULES:
                raise ValueError(f"two lowering rules for {key!r}")
            RULES[key] = rule
        return rule
    return register


def rule_for(kind: str) -> Rule | None:
    return RULES.get(kind) or RULES.get(f"category:{registry.category(kind)}")
