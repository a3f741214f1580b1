"""Mixture-of-experts backward on the mesh: the experts' grouped products and gradients, expert
parallel as the forward (``moe.py``).

- **MoeLinear** (``moe_linear``: row r times its expert's [K, N] weight; the backward recomputes the
  gate and up product with it and runs down's and gate/up's products the other way): the forward's
  layout with one GEMM instead of two. The rectangle is cut along its columns into slices
  (``slicing``, with K and N standing for d and 2f), each expert's weight resident in its slice
  (K over rows, N over the slice's columns), experts sharing a slice take turns; a routed row costs
  one weight-stationary GEMM step of ``gemm.py`` on its slice, and the kernel is as slow as its
  busiest slice (every cost inherited from ``MoeExperts``).
- **MoeAccumulate** (``moe_linear_grad_w``, ``moe_segment_sum``): each expert's weight gradient held
  output-stationary in its slice, where the forward holds its weight (K over rows, N over the slice's
  columns, f32 accumulators), as ``Accumulate`` (``grads.py``) holds a dense weight's: a routed row
  adds its ``kt`` AXPYs of length ``nt`` into its expert's block. A bias gradient is the same with K = 1.
- ``topk_grad``, ``moe_combine_grad_rows`` and ``moe_combine_grad_w`` are rowwise kernels (``Routing``),
  numbers from the registry's references, like the forward's top-k, dispatch and combine.

Routing is uniform here (each expert ``1/E`` of the routed rows): ``--expert-routing`` is not taken with
``--train`` (docs/moe.md). Assumptions as the forward's: a slice's step is an ordinary GEMM (or
accumulate) step of the rows that reach it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import ceil

from ...ir.graph import Op
from ...ir.types import DTYPES
from ..blocks import block
from ..costs import InstructionCount
from ..datapath import accumulator_bytes
from ..gemm import fastest
from ..machine import Machine
from .base import Work, lowers
from .grads import GRAD_ACC_BYTES
from .moe import DEFAULT_DATAPATH, MoeExperts, Routing, slicing, uniform


@dataclass(frozen=True)
class MoeLinear(MoeExperts):
    """Grouped GEMM: ``d`` is K (the contraction), ``f`` is N (the output width) here."""

    decomposition = "experts over column slices; in a slice, K over rows, N over columns (weights resident)"

    def max_cols(self) -> int:
        return self.experts * self.f

    def groups(self, cols: int) -> int:
        return slicing(self.experts, self.top_k, self.tokens, self.d, max(1, self.f // 2), cols, self.dp)

    def sram(self, rows, cols):
        w = self.slice_cols(cols)
        per = max(len(m) for m in self.members(cols))
        kt, nt = block(self.d, min(rows, self.d)), block(self.f, min(w, self.f))
        return {"weights": per * kt * nt * self.elem, "activations_in": 2 * kt * self.elem,
                "activations_out": 2 * nt * self.elem,
                "partial_sums": 2 * nt * accumulator_bytes(self.dtype), "fabric_queues": self.queues()}

    def step(self, rows, cols, machine: Machine, m: int) -> int:
        return fastest(max(1, m), self.d, self.f, rows, self.slice_cols(cols), machine.datapath(self.dtype),
                       machine=machine)[1].step

    def work(self, p0, p1):
        routed = (p1 - p0) * self.top_k
        macs = routed * self.d * self.f
        acc = accumulator_bytes(self.dtype)
        return Work(flops=routed * self.flops_per_row, sram_read=macs * (self.elem + acc), sram_write=macs * acc,
                    delivered=routed * self.d * 1.0, edge=routed * (self.d + self.f) * 1.0)


@dataclass(frozen=True)
class MoeAccumulate(MoeLinear):
    """Each expert's [K, N] gradient accumulated from its routed rows, output-stationary in its slice."""

    decomposition = "experts over column slices; in a slice, K over rows, N over columns (gradients resident)"

    def max_rows(self) -> int:
        return self.d

    def sram(self, rows, cols):
        w = self.slice_cols(cols)
        per = max(len(m) for m in self.members(cols))
        kt, nt = block(self.d, min(rows, self.d)), block(self.f, min(w, self.f))
        acc = max(accumulator_bytes(self.dtype), GRAD_ACC_BYTES)
        return {"accumulators": per * kt * nt * acc, "activations_in": 2 * (kt + nt) * self.elem,
                "fabric_queues": self.queues()}

    def step(self, rows, cols, machine: Machine, m: int) -> int:
        """Per routed row: kt AXPYs of length nt into its expert's accumulators (f32), its dy block
        arriving one wavelet a cycle (``Accumulate``'s per-token step)."""
        kt, nt = block(self.d, min(rows, self.d)), block(self.f, min(self.slice_cols(cols), self.f))
        dp = replace(machine.datapath(self.dtype), acc=max(accumulator_bytes(self.dtype), GRAD_ACC_BYTES))
        return max(int(InstructionCount().add("task").call("fmac", nt, kt).cycles(dp)), nt + kt)

    def work(self, p0, p1):
        routed = (p1 - p0) * self.top_k
        macs = routed * self.d * self.f
        acc = max(accumulator_bytes(self.dtype), GRAD_ACC_BYTES)
        return Work(flops=routed * self.flops_per_row, sram_read=macs * acc + routed * (self.d + self.f) * self.elem,
                    sram_write=macs * acc, delivered=routed * (self.d + self.f) * 1.0,
                    edge=routed * (self.d + self.f) * 1.0)


def _grouped(cls, op: Op, ctx, k_in: int, n_out: int, idx):
    routed = idx.type.shape[0] * idx.type.shape[1]
    e = op.type.shape[0] if cls is MoeAccumulate else op.operands[2].type.shape[0]
    x = op.operands[0].type
    flops = ctx.flops_per_token(op) * ctx.total / max(routed, 1)  # the op's FLOPs over its routed rows
    dp = ctx.machine.datapath(x.dtype) if ctx.machine is not None else DEFAULT_DATAPATH
    return cls(tokens=ctx.tokens, dtype=x.dtype, elem=DTYPES[x.dtype][1], experts=e, d=k_in, f=n_out,
               top_k=idx.type.shape[1], shares=uniform(e), flops_per_row=ceil(flops), dp=dp)


@lowers("moe_linear")
def lower_moe_linear(op: Op, ctx) -> MoeLinear:
    x = op.operands[0].type
    return _grouped(MoeLinear, op, ctx, x.shape[1], op.type.shape[1], op.operands[1])


@lowers("moe_linear_grad_w", "moe_segment_sum")
def lower_moe_accumulate(op: Op, ctx) -> MoeAccumulate:
    if op.kind == "moe_segment_sum":
        return _grouped(MoeAccumulate, op, ctx, 1, op.type.shape[1], op.operands[1])
    x, dy = op.operands[0].type, op.operands[1].type
    return _grouped(MoeAccumulate, op, ctx, x.shape[1], dy.shape[1], op.operands[2])


@lowers("topk_grad", "moe_combine_grad_rows", "moe_combine_grad_w")
def lower_routing_grad(op: Op, ctx) -> Routing:
    src = op.operands[0].type
    if op.kind == "topk_grad":
        features, k = op.type.shape[-1], 1
    elif op.kind == "moe_combine_grad_rows":
        features, k = src.shape[-1], op.operands[1].type.shape[-1]
    else:
        features, k = src.shape[-1], op.type.shape[-1]
    return Routing(tokens=ctx.tokens, dtype=src.dtype, elem=DTYPES[src.dtype][1], op=op.kind, features=features,
                   inputs=2, params=0, flops_per_token=ctx.flops_per_token(op), groups=k)
