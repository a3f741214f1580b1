"""Kernels of the backward graph (``passes/autodiff.py``): the products of two activations that
make every weight gradient, the scatter-add of the embedding gradient, attention's backward,
the loss and the row-wise gradients.

- **Accumulate** (``linear_grad_w``, and ``reduce_sum`` over the token axes: a bias's gradient):
  ``dW += x_t^T dy_t`` token after token, the product of two activations. Output-stationary: dW's
  K rows over the rectangle's rows and its N columns over its columns, as the forward GEMM holds
  W, so each core keeps its ``kt x nt`` block of accumulators. A token's ``x`` enters each row
  from the west (its ``kt`` elements for that row) and its ``dy`` is multicast down each column
  (``nt`` elements); each core does ``kt`` AXPYs of length ``nt`` per token. A bias's gradient is
  the same with K = 1 (x = 1). Where K is shorter than the rectangle is tall, the rows beyond
  K take shares of the tokens (groups of K rows, each summing its tokens), and the groups' sums
  are added down the columns once at the end. The finished dW leaves after the last token (streamed out to
  MemoryX in weight-streaming mode; kept for the optimizer in layer-pipelined mode).
  A sparse weight's gradient (``linear_grad_w`` with the weight's mask) keeps accumulators for the
  kept entries only, in the weight's compressed format (``backends/sparse.py``), and makes only
  those: per token, each tile row is one AXPY over its kept entries, gathering the ``dy`` elements
  by the weight's column indices, costed as the forward's sparse AXPY (``SparseWeight.accumulate``;
  never slower than the dense loop, which the kernel then runs). The indices stream in with the
  layer's weights (``SparseWeight.index_bytes``); the gradient streams out as its values and
  indices, the weight's format.
- **EmbeddingGrad**: ``dTable[id_t] += dy_t``, the forward's layout (vocabulary over rows,
  features over columns) in reverse: the core holding row ``id_t`` adds ``dy_t``'s block into it,
  one AXPY per token, costed as the forward's lookup plus the read-modify-write.
- **AttentionGrad**: dq, dk and dv of one attention in the forward kernel's layout (heads over
  columns, key positions over rows). Per query and key it recomputes the score and its
  probability (a dot product and an exp, as the forward), then does two dot products (dP and, by
  the softmax's backward, dS) and three AXPYs (dv += p dy, dq += dS k, dk += dS q): three dots
  and three AXPYs where the forward has one and one. The dk and dv accumulators stay beside the
  keys and values.
  Under grouped-query attention it holds each key/value head's keys and values once (as the
  forward), and its dk and dv are each query head's share (``attention_grad``'s output), so a
  core keeps dk and dv accumulators for every query head it holds; the sum of each group's shares
  is a ``reduce_sum`` of its own after it.
- **RotaryGrad** (``rotary_grad``): ``dy * cos + rotate_half^T(dy * sin)``, the forward's kernel
  and cost: the same tables made on each core, the same FMA with the halves read the other way.
- **Row-wise gradients** (``gelu_grad``, ``silu_grad``, ``layernorm_grad``, ``rmsnorm_grad``,
  ``softmax_grad``) and the loss
  (``cross_entropy`` and its gradient, a softmax over the vocabulary each) are ``Rowwise`` kernels
  with their own cycles per element (``rowwise.ELEMENT_CYCLES``); the placed numerics of these
  evaluate the registry's reference whole.

Ops on step-shaped tensors (a weight's gradient, not a token's: the sum of the tied embedding's
two gradients) have no tokens of their own; ``lower`` spreads their elements over the step's
tokens (``LowerCtx.per_step``), so the rectangle's work over the step is right.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ...errors import UnsupportedError
from ...ir import registry
from ...ir.graph import Op
from ...ir.types import DTYPES
from .. import assumptions as A
from ..blocks import block
from ..costs import InstructionCount
from ..datapath import accumulator_bytes
from ..sparse import SparseWeight
from .attention import Attention, lower_attention
from .base import ACT, PARAM, Kernel, LowerCtx, Work, lowers
from .embedding import Embedding
from .rotary import Rotary, lower_rotary
from .rowwise import Rowwise, lower_rowwise

# Bytes of a weight gradient's accumulator: f32 whatever the operands (mixed-precision training keeps its
# gradients in f32; FMACHS, an f16 FMAC into an f32 accumulator, is the WSE's instruction for it: Cerebras
# SDK docs, builtins). The forward's partial sums keep ``assumptions.ACCUMULATOR``.
GRAD_ACC_BYTES = 4


def _evaluate(op: Op, args: list[np.ndarray]) -> np.ndarray:
    return np.asarray(registry.evaluate(op.kind, args, op.attr)).astype(op.type.np_dtype, copy=False)


@dataclass(frozen=True)
class Accumulate(Kernel):
    k: int
    n: int
    flops_per_token: float
    sparse: SparseWeight | None = None  # a sparse weight's gradient: only its kept entries (module docstring)
    decomposition = "output K over rows, N over columns (output-stationary); tokens stream in from the west and north"

    def max_rows(self) -> int:
        return self.k * self.tokens  # beyond K rows, groups of K rows split the tokens

    def max_cols(self) -> int:
        return self.n

    def sram(self, rows, cols):
        kt, nt = block(self.k, min(rows, self.k)), block(self.n, min(cols, self.n))
        ab = max(accumulator_bytes(self.dtype), GRAD_ACC_BYTES)
        acc = kt * nt * ab
        if self.sparse is not None:  # the kept entries and their indices, on the fullest core
            acc = self.sparse.tile_bytes(min(rows, self.k), min(cols, self.n), ab)
        return {"accumulators": acc,
                "activations_in": 2 * (kt + nt) * self.elem, "fabric_queues": self.queues()}

    def work(self, p0, p1):
        c = p1 - p0
        macs = c * (self.sparse.nnz if self.sparse is not None else self.k * self.n)
        acc = max(accumulator_bytes(self.dtype), GRAD_ACC_BYTES)
        return Work(flops=c * self.flops_per_token, sram_read=macs * acc + c * (self.k + self.n) * self.elem,
                    sram_write=macs * acc, delivered=c * (self.k + self.n), edge=c * (self.k + self.n))

    def model_cycles(self, rows, cols, p0, p1, machine):
        groups = max(1, min(rows // self.k, self.tokens))  # row groups that split the tokens
        rows, cols = min(rows, self.k), min(cols, self.n)
        kt, nt = block(self.k, rows), block(self.n, cols)
        # f32 accumulators (mixed precision: f16 products summed over every token of the step in f32, as
        # FMACHS does; issue 27: they were f16), so the AXPY's accumulator traffic doubles
        dp = replace(machine.datapath(self.dtype), acc=max(accumulator_bytes(self.dtype), GRAD_ACC_BYTES))
        # per token: kt AXPYs of length nt, each one vector instruction; the dy block arrives at
        # one wavelet per cycle
        per_token = int(InstructionCount().add("task").call("fmac", nt, kt).cycles(dp))
        if self.sparse is not None:
            per_token = min(per_token, self.sparse.accumulate(rows, cols, dp))
        per_token = max(per_token, nt + kt)
        return (p1 - p0) * per_token / groups

    def run(self, op, args, rows, cols):
        return _evaluate(op, args)


@dataclass(frozen=True)
class EmbeddingGrad(Embedding):
    decomposition = "vocabulary over rows, features over columns; each token's gradient added into its row"

    def sram(self, rows, cols):
        s = dict(super().sram(rows, cols))
        s["accumulators"] = s.pop("weights") * accumulator_bytes(self.dtype) // self.elem
        return s

    def work(self, p0, p1):
        c = p1 - p0
        acc = accumulator_bytes(self.dtype)
        return Work(flops=c * self.d, sram_read=c * self.d * (self.elem + acc), sram_write=c * self.d * acc,
                    delivered=c * (self.d + 1), edge=c * (self.d + 1))

    def run(self, op, args, rows, cols):
        return _evaluate(op, args)


@dataclass(frozen=True)
class AttentionGrad(Attention):
    decomposition = "heads over columns, key/value positions over rows (cyclic); dk, dv beside k, v"
    colors = 5

    def sram(self, rows, cols):
        s = dict(super().sram(rows, cols))
        hc, st = block(self.heads, min(cols, self.heads)), block(self.key_rows, min(rows, self.key_rows))
        # dk and dv per query head held (each query head's share under grouped-query attention)
        s["kv_grads"] = 2 * self.resident * st * hc * self.d_head * accumulator_bytes(self.dtype)
        s["activations_in"] *= 2  # q and dy
        return s

    def work(self, p0, p1):
        w = super().work(p0, p1)
        keys = float(self._keys(p0, p1).sum())
        c, hd = p1 - p0, self.heads * self.d_head
        acc, pairs = accumulator_bytes(self.dtype), self.heads * keys * self.d_head
        return Work(flops=self.heads * keys * (8 * self.d_head + 12),
                    sram_read=3 * w.sram_read + pairs * acc, sram_write=3 * w.sram_write,
                    delivered=c * 5 * hd, edge=c * 8 * hd)

    def key_instructions(self, dp) -> InstructionCount:
        """Per key and query head: three dot products and three AXPYs over d_head, and one exp."""
        return (InstructionCount().call("dot", self.d_head, 3).call("fmac", self.d_head, 3)
                .add("lane", A.TRANSCENDENTAL_CYCLES / dp.lanes))

    def model_cycles(self, rows, cols, p0, p1, machine):
        rows, cols = min(rows, self.tokens), min(cols, self.heads)
        hc = block(self.heads, cols)
        dp = machine.datapath(self.dtype)
        per_key = self.key_instructions(dp).cycles(dp)
        core_keys = np.ceil(self._keys(p0, p1) / rows)
        compute = hc * core_keys * per_key + 2 * dp.costs.task_start
        stream = max(hc * 2 * (self.d_head + 2), 5 * self.heads * self.d_head / rows)
        return float(np.maximum(compute, stream).sum())

    def run(self, op, args, rows, cols):
        return _evaluate(op, args)


class RowwiseWhole(Rowwise):
    """A row-wise kernel whose placed numerics are the registry's reference, evaluated whole."""

    def run(self, op, args, rows, cols):
        return _evaluate(op, args)


def _rowwise(op: Op, ctx: LowerCtx, features: int) -> Rowwise:
    t = op.type
    return RowwiseWhole(tokens=ctx.tokens, dtype=t.dtype, elem=DTYPES[t.dtype][1], op=op.kind,
                        features=max(1, features), inputs=max(ctx.sources.count(ACT), 1),
                        params=ctx.sources.count(PARAM), flops_per_token=ctx.flops_per_token(op))


@lowers("linear_grad_w")
def lower_linear_grad_w(op: Op, ctx: LowerCtx) -> Accumulate:
    x, dy = op.operands[:2]
    t = op.type
    return Accumulate(tokens=ctx.tokens, dtype=t.dtype, elem=DTYPES[t.dtype][1], k=x.type.shape[-1],
                      n=dy.type.shape[-1], flops_per_token=ctx.flops_per_token(op))


@lowers("reduce_sum")
def lower_reduce_sum(op: Op, ctx: LowerCtx) -> Kernel:
    """reduce_sum over leading axes only (a bias's or a layernorm scale's gradient over the tokens, or
    a broadcast position embedding's over the batch) is an Accumulate with K = 1: each token adds its
    last-axis vector into its accumulator; over the last axis, a row-wise reduction; over inner axes
    that keep every token (the batch axis and the sequence axis kept), a per-token sum."""
    src = op.operands[0].type
    axes = {a % src.rank for a in op.attr["axes"]} if src.rank else set()
    if src.rank < 2 or src.rank - 1 in axes:
        return lower_rowwise(op, ctx)
    t = op.type
    if 0 not in axes and all(src.shape[a] != ctx.tokens for a in axes) and not ctx.per_step:
        # over inner axes only, every token kept (grouped-query attention's dk and dv shares summed over each
        # group): per token, `summed` input vectors of the last axis added into each output vector, as an add
        # of that many operands over the token's rows of the last axis (tokens over rows, last axis over columns)
        summed = src.numel // max(t.numel, 1)
        return RowwiseWhole(tokens=ctx.tokens, dtype=t.dtype, elem=DTYPES[t.dtype][1], op="add",
                            features=src.shape[-1], inputs=summed, params=0, flops_per_token=ctx.flops_per_token(op),
                            groups=max(1, round(t.numel / ctx.total / src.shape[-1])))
    return Accumulate(tokens=ctx.tokens, dtype=t.dtype, elem=DTYPES[t.dtype][1], k=1, n=src.shape[-1],
                      flops_per_token=ctx.flops_per_token(op))


@lowers("embedding_grad")
def lower_embedding_grad(op: Op, ctx: LowerCtx) -> EmbeddingGrad:
    vocab, d = op.type.shape
    t = op.type
    return EmbeddingGrad(tokens=ctx.tokens, dtype=t.dtype, elem=DTYPES[t.dtype][1], vocab=vocab, d=d,
                         flops_per_token=ctx.flops_per_token(op))


@lowers("attention_grad")
def lower_attention_grad(op: Op, ctx: LowerCtx) -> AttentionGrad:
    if len(op.operands) > 4:
        raise UnsupportedError(f"lowering {ctx.where} to the mesh: attention_grad with an explicit mask operand")
    fwd = lower_attention(Op("attention", op.operands[:3], op.attrs, op.operands[0]), ctx)
    return AttentionGrad(tokens=fwd.tokens, dtype=fwd.dtype, elem=fwd.elem, heads=fwd.heads, d_head=fwd.d_head,
                         causal=fwd.causal, kv_heads=fwd.kv_heads)


class RotaryGrad(Rotary):
    def run(self, op, args, rows, cols):
        return _evaluate(op, args)


@lowers("rotary_grad")
def lower_rotary_grad(op: Op, ctx: LowerCtx) -> RotaryGrad:
    fwd = lower_rotary(op, ctx)
    return RotaryGrad(tokens=fwd.tokens, dtype=fwd.dtype, elem=fwd.elem, heads=fwd.heads, d_head=fwd.d_head,
                      flops_per_token=fwd.flops_per_token)


@lowers("cross_entropy", "cross_entropy_grad")
def lower_loss(op: Op, ctx: LowerCtx) -> Rowwise:
    return _rowwise(op, ctx, op.operands[0].type.shape[-1])


@lowers("gelu_grad", "silu_grad", "layernorm_grad", "rmsnorm_grad", "softmax_grad")
def lower_rowwise_grad(op: Op, ctx: LowerCtx) -> Rowwise:
    return _rowwise(op, ctx, op.type.shape[-1])

