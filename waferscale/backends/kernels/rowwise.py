"""Elementwise ops, normalizations, softmax and reductions over the last axis: tokens spread over
the rows of the rectangle (token t on row t mod rows), the last axis over its columns. A
normalization, softmax or reduction also combines per-core partial statistics across the
columns of a row (short all-reduces per token).

``ELEMENT_CYCLES`` is the one table of what an op costs per element on a core's datapath; the
fused epilogues of other kernels (``fusion.py``) read it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

import numpy as np

from ...errors import UnsupportedError
from ...ir import registry
from ...ir.graph import Op
from ...ir.types import DTYPES
from .. import assumptions as A
from ..blocks import block, slices
from .base import ACT, PARAM, Kernel, LowerCtx, Work, f32, lowers

# Datapath cycles per element at the SIMD lane rate (our assumption; no source gives them): 1
# for arithmetic, comparisons, selects and casts; TRANSCENDENTAL_CYCLES for special functions
# (and for pow, div and GELU, which take one); layernorm 6 (sum, sum of squares, subtract,
# scale, shift, multiply by 1/sigma); softmax 3 and an exp.
_T = A.TRANSCENDENTAL_CYCLES
ELEMENT_CYCLES = {"exp": _T, "log": _T, "tanh": _T, "erf": _T, "sqrt": _T, "rsqrt": _T, "sigmoid": _T,
                  "gelu": _T, "pow": _T, "div": _T, "layernorm": 6, "softmax": 3 + _T}


def element_cycles(kind: str) -> float:
    return ELEMENT_CYCLES.get(kind, 1)


REDUCES = frozenset({"layernorm", "softmax", "reduce_sum", "reduce_mean", "reduce_max"})


@dataclass(frozen=True)
class Rowwise(Kernel):
    op: str
    features: int
    inputs: int  # activation operands arriving per token, each with up to `features` elements
    params: int  # per-feature parameter vectors held on each core (scale, shift, bias)
    flops_per_token: float  # the registry's FLOPs of the op, per token
    decomposition = "tokens over rows, last axis over columns"

    def max_cols(self) -> int:
        return self.features

    def sram(self, rows, cols):
        ft = block(self.features, min(cols, self.features))
        return {"weights": self.params * ft * self.elem, "activations_in": 2 * self.inputs * ft * self.elem,
                "activations_out": 2 * ft * self.elem, "fabric_queues": self.queues()}

    def work(self, p0, p1):
        c, f = p1 - p0, self.features
        # reads its inputs and parameters, writes its output (at least once each)
        return Work(flops=c * self.flops_per_token, sram_read=c * f * (self.inputs + self.params) * self.elem,
                    sram_write=c * f * self.elem,
                    delivered=c * f * self.inputs, edge=c * f * (self.inputs + 1))

    def model_cycles(self, rows, cols, p0, p1, machine):
        ft = block(self.features, min(cols, self.features))
        lanes = machine.lanes(self.dtype) * A.ELEMENTWISE_LANE_FRACTION
        per_token = max(ceil(ft / lanes) * element_cycles(self.op) + A.TASK_OVERHEAD_CYCLES,
                        ft * self.inputs, ft)
        return (p1 - p0) * per_token / min(rows, self.tokens)

    def fill(self, rows, cols, machine):
        extra = 4 * (cols - 1) * A.HOP_CYCLES if self.op in REDUCES else 0
        return super().fill(rows, cols, machine) + extra

    def run(self, op, args, rows, cols):
        return rowwise(op.kind, args, registry.with_defaults(op.kind, op.attr), op.type.shape, rows, cols)


@lowers("category:elementwise", "category:normalization", "category:reduction")
def lower_rowwise(op: Op, ctx: LowerCtx) -> Rowwise:
    src, a = op.operands[0].type, op.attr
    if op.kind.startswith("reduce") and tuple(a.get("axes", ())) not in ((src.rank - 1,), (-1,)):
        raise UnsupportedError(f"lowering {ctx.where}: reductions other than over the last axis")
    if op.kind == "softmax" and a.get("axis", -1) not in (-1, src.rank - 1):
        raise UnsupportedError(f"lowering {ctx.where}: softmax over an axis other than the last")
    if op.kind == "layernorm" and a.get("axes", 1) != 1:
        raise UnsupportedError(f"lowering {ctx.where}: layernorm over more than the last axis")
    shape = src.shape if registry.category(op.kind) != "elementwise" else op.type.shape
    t = op.type
    return Rowwise(tokens=ctx.tokens, dtype=t.dtype, elem=DTYPES[t.dtype][1], op=op.kind,
                   features=shape[-1] if shape else 1, inputs=max(ctx.sources.count(ACT), 1),
                   params=ctx.sources.count(PARAM), flops_per_token=ctx.flops_per_token(op))


def _row_allreduce(tiles, fn=np.sum):
    """Combine per-core partials across the columns of a row."""
    return fn(np.stack(tiles), axis=0)


def rowwise(kind: str, args: list[np.ndarray], attrs: dict, out_shape: tuple, rows: int, cols: int) -> np.ndarray:
    """A rowwise op computed per core: the last axis in column blocks, statistics all-reduced
    across a row's cores; elementwise ops token by token on the row that holds the token."""
    f = out_shape[-1] if out_shape else 1
    if kind in REDUCES:
        x = f32(args[0])
        f = x.shape[-1]
    col_blocks = slices(f, min(cols, f))
    if kind == "layernorm":
        mean = _row_allreduce([x[..., c].sum(-1, keepdims=True) for c in col_blocks]) / f
        var = _row_allreduce([((x[..., c] - mean) ** 2).sum(-1, keepdims=True) for c in col_blocks]) / f
        y = np.empty_like(x)
        for c in col_blocks:
            t = (x[..., c] - mean) / np.sqrt(var + attrs["eps"])
            if len(args) > 1:
                t = t * args[1][c]
            if len(args) > 2:
                t = t + args[2][c]
            y[..., c] = t
        return y
    if kind == "softmax":
        m = _row_allreduce([x[..., c].max(-1, keepdims=True) for c in col_blocks], np.max)
        s = _row_allreduce([np.exp(x[..., c] - m).sum(-1, keepdims=True) for c in col_blocks])
        return np.concatenate([np.exp(x[..., c] - m) / s for c in col_blocks], axis=-1)
    if kind in REDUCES:  # reduce_sum, reduce_mean, reduce_max over the last axis
        part = np.max if kind == "reduce_max" else np.sum
        r = _row_allreduce([part(x[..., c], axis=-1, keepdims=True) for c in col_blocks], part)
        r = r / f if kind == "reduce_mean" else r
        return r if attrs.get("keepdim") else r[..., 0]
    # elementwise: tokens cyclic over rows, the last axis over columns
    full = [np.broadcast_to(a, out_shape) for a in args]
    t = int(np.prod(out_shape[:-1])) if len(out_shape) > 1 else 1
    flat = [a.reshape(t, f) for a in full]
    out = None
    for r in range(min(rows, t)):
        for c in col_blocks:
            y = np.asarray(registry.evaluate(kind, [a[r::rows, c] for a in flat], attrs))
            if out is None:
                out = np.empty((t, f), dtype=y.dtype)
            out[r::rows, c] = y
    return out.reshape(out_shape)
