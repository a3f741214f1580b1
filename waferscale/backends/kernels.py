"""Mesh kernels: how one op runs on a ``rows x cols`` rectangle of cores, and what it costs.

Each kernel class states its decomposition (which tensor dimensions are split over the rows
and over the columns of its rectangle), the SRAM each core needs broken down by buffer, and
the cycles it is busy for a chunk of tokens ``[p0, p1)`` of one sample. Tokens stream through a
kernel one after another (layer-pipelined dataflow), so a chunk costs its tokens' steady-state
cycles; the rectangle's fill is first-token latency, reported apart.

Every chunk's cycles are at least its roofline (``roofline_cycles``): the bound from the
rectangle's peak FMAC rate, its SRAM bandwidth, the ramps that deliver wavelets to its cores,
and the links crossing its perimeter. The kernel models below only ever add to that bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

import numpy as np

from . import assumptions as A
from .gemm import block, gemm_time
from .machine import Machine

TRANSCENDENTAL = {"exp", "log", "tanh", "erf", "sqrt", "rsqrt", "sigmoid", "gelu", "pow", "div"}


@dataclass(frozen=True)
class Work:
    """What a chunk asks of the hardware, summed over its rectangle."""

    flops: float
    sram_bytes: float
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
        "compute": work.flops / (2 * machine.lanes(dtype) * cores),
        "sram": work.sram_bytes / (machine.sram_bytes_per_cycle * cores),
        "fabric": max(work.delivered / cores, work.edge / (2 * (rows + cols))) / A.ELEMENTS_PER_WAVELET,
    }


@dataclass(frozen=True)
class Kernel:
    """Base: a kernel of ``tokens`` tokens per sample, elements of ``elem`` bytes."""

    tokens: int
    dtype: str
    elem: int

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

    def fill(self, rows: int, cols: int, machine: Machine) -> int:
        """Cycles of the first token's latency through the rectangle (not busy time)."""
        return (rows - 1 + cols - 1) * A.HOP_CYCLES + 2 * A.ROUTER_DELAY_CYCLES

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

    def queues(self) -> int:
        return self.colors * A.QUEUE_BYTES_PER_COLOR


@dataclass(frozen=True)
class Gemm(Kernel):
    """``y = x @ W (+ b)`` with W resident: the weight-stationary mesh GEMM of ``gemm.py``."""

    k: int
    n: int
    bias: bool
    decomposition = "K over rows, N over columns; tokens stream in from the west"

    def max_rows(self) -> int:
        return self.k

    def max_cols(self) -> int:
        return self.n

    def sram(self, rows, cols):
        kt, nt = block(self.k, min(rows, self.k)), block(self.n, min(cols, self.n))
        return {
            "weights": kt * nt * self.elem + (nt * self.elem if self.bias else 0),
            "activations_in": 2 * kt * self.elem,  # double-buffered slice of a token
            "activations_out": nt * self.elem,
            "partial_sums": 2 * nt * 4,  # own and incoming, f32
            "fabric_queues": self.queues(),
        }

    def work(self, p0, p1):
        c = p1 - p0
        macs = c * self.k * self.n
        # each MAC reads its weight from SRAM; the partial sums sit in the FMAC accumulators
        # (assumption) and are written once per token
        return Work(flops=2 * macs + (c * self.n if self.bias else 0),
                    sram_bytes=macs * self.elem + c * (self.k * self.elem + self.n * 4),
                    delivered=c * self.k * 1.0, edge=c * (self.k + self.n))

    def model_cycles(self, rows, cols, p0, p1, machine):
        return (p1 - p0) * gemm_time(1, self.k, self.n, rows, cols, machine.lanes(self.dtype)).step

    def fill(self, rows, cols, machine):
        return gemm_time(1, self.k, self.n, rows, cols, machine.lanes(self.dtype)).fill


@dataclass(frozen=True)
class Embedding(Kernel):
    """``table[ids]``: vocabulary rows split over rows, features over columns. The id of each token
    is multicast to every core; the core holding that row sends its slice south down its column."""

    vocab: int
    d: int
    decomposition = "vocabulary over rows, features over columns"

    def max_rows(self) -> int:
        return self.vocab

    def max_cols(self) -> int:
        return self.d

    def sram(self, rows, cols):
        vt, dt = block(self.vocab, min(rows, self.vocab)), block(self.d, min(cols, self.d))
        return {"weights": vt * dt * self.elem, "activations_in": 2 * 8, "activations_out": dt * self.elem,
                "fabric_queues": self.queues()}

    def work(self, p0, p1):
        c = p1 - p0
        return Work(flops=0, sram_bytes=c * self.d * self.elem, delivered=c * self.d, edge=c * (1 + self.d))

    def model_cycles(self, rows, cols, p0, p1, machine):
        dt = block(self.d, min(cols, self.d))
        return (p1 - p0) * max(dt, (dt + A.TASK_OVERHEAD_CYCLES) / min(rows, self.vocab))


@dataclass(frozen=True)
class Rowwise(Kernel):
    """Elementwise ops, normalizations and softmax over the last axis: tokens spread over rows
    (token t on row t mod rows), the last axis over columns. A normalization also reduces its
    statistics across the columns of a row (two short all-reduces per token)."""

    op: str
    features: int
    inputs: int  # activation operands arriving per token, each with up to `features` elements
    params: int  # per-feature parameter vectors held on each core (scale, shift, bias)
    decomposition = "tokens over rows, last axis over columns"

    REDUCES = ("layernorm", "softmax", "reduce_sum", "reduce_mean", "reduce_max")

    def max_cols(self) -> int:
        return self.features

    def _cost_per_element(self) -> float:
        if self.op == "layernorm":
            return 6  # sum, sum of squares, subtract, scale, shift, multiply by 1/sigma
        if self.op == "softmax":
            return 3 + A.TRANSCENDENTAL_CYCLES
        return A.TRANSCENDENTAL_CYCLES if self.op in TRANSCENDENTAL else 1

    def sram(self, rows, cols):
        ft = block(self.features, min(cols, self.features))
        return {"weights": self.params * ft * self.elem, "activations_in": 2 * self.inputs * ft * self.elem,
                "activations_out": 2 * ft * self.elem, "fabric_queues": self.queues()}

    def work(self, p0, p1):
        c, f = p1 - p0, self.features
        flops = c * f * (8 if self.op == "layernorm" else 5 if self.op == "softmax" else 1)
        return Work(flops=flops, sram_bytes=c * f * (self.inputs + 1 + self.params) * self.elem,
                    delivered=c * f * self.inputs, edge=c * f * (self.inputs + 1))

    def model_cycles(self, rows, cols, p0, p1, machine):
        ft = block(self.features, min(cols, self.features))
        lanes = machine.lanes(self.dtype) * A.ELEMENTWISE_LANE_FRACTION
        per_token = max(ceil(ft / lanes) * self._cost_per_element() + A.TASK_OVERHEAD_CYCLES,
                        ft * self.inputs, ft)
        return (p1 - p0) * per_token / min(rows, self.tokens)

    def fill(self, rows, cols, machine):
        extra = 4 * (cols - 1) * A.HOP_CYCLES if self.op in self.REDUCES else 0
        return super().fill(rows, cols, machine) + extra


@dataclass(frozen=True)
class Attention(Kernel):
    """Causal (or full) attention of one sample: heads over columns, keys and values spread over
    the rows of each column cyclically (position p on row p mod rows, so causal work stays
    balanced); a token's key and value enter its row from the west edge and stay there. Each
    query is multicast down its heads' column; each core scores it against its
    keys and keeps a partial softmax (running max, sum, weighted values), and the partials are
    combined down the column, flash-decoding style."""

    heads: int
    d_head: int
    causal: bool
    decomposition = "heads over columns, key/value positions over rows (cyclic)"
    colors = 3

    def max_cols(self) -> int:
        return self.heads

    def _keys(self, p0, p1):
        pos = np.arange(p0, p1)
        return pos + 1 if self.causal else np.full(p1 - p0, self.tokens)

    def sram(self, rows, cols):
        hc, st = block(self.heads, min(cols, self.heads)), block(self.tokens, min(rows, self.tokens))
        return {"kv_cache": 2 * st * hc * self.d_head * self.elem,
                "activations_in": 2 * hc * self.d_head * self.elem,
                "activations_out": hc * self.d_head * self.elem,
                "partial_sums": 2 * hc * (self.d_head + 2) * 4, "fabric_queues": self.queues()}

    def work(self, p0, p1):
        keys = float(self._keys(p0, p1).sum())
        c, hd = p1 - p0, self.heads * self.d_head
        return Work(flops=self.heads * keys * (4 * self.d_head + 6),
                    sram_bytes=self.heads * keys * 2 * self.d_head * self.elem,
                    delivered=c * 3 * hd, edge=c * 4 * hd)

    def model_cycles(self, rows, cols, p0, p1, machine):
        rows, cols = min(rows, self.tokens), min(cols, self.heads)
        hc = block(self.heads, cols)
        lanes = machine.lanes(self.dtype)
        per_key = 2 * ceil(self.d_head / lanes) + A.TRANSCENDENTAL_CYCLES / lanes
        core_keys = np.ceil(self._keys(p0, p1) / rows)
        compute = hc * core_keys * per_key + A.TASK_OVERHEAD_CYCLES
        # per column and token: the query multicast down the column and the partials combined
        # down it; a token's key and value enter only its own row, from the west edge
        stream = max(hc * (self.d_head + 2), 2 * self.heads * self.d_head / rows)
        return float(np.maximum(compute, stream).sum())

    def fill(self, rows, cols, machine):
        return super().fill(rows, cols, machine) + (rows - 1) * ceil((self.d_head + 2) / 4)
