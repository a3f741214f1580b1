"""Rotary position embedding, ``x * cos + rotate_half(x) * sin``: tokens over the rows of the
rectangle (token t on row t mod rows, as the other rowwise kernels), heads over its columns, each
core rotating whole heads, so the two halves of a head that ``rotate_half`` swaps sit on one core.

Its cos and sin tables are functions of the position only, so no kernel makes them and no flow
carries them (``lowering.py``): each core computes them for the token it holds, from the token's
position and the ``d/2`` frequencies it keeps in SRAM. Per token and core that is, on the datapath
(``rowwise.ELEMENT_CYCLES`` rates, each vector pass one vector instruction):

- the angles, position x frequency: one pass over ``d/2`` elements;
- their cos and sin: two passes, a transcendental per element each (``TRANSCENDENTAL_CYCLES``);
- per head it holds: ``x * cos`` and then ``+= rotate_half(x) * sin`` (an FMA whose operand is read
  with its halves swapped, which the vector instruction's address offsets do at no cost), two
  passes over ``d``.

The tables are shared by every head a core holds, so wide rectangles (one head a core) pay them
once per head and narrow ones amortize them. The stream in and out is ``d`` wavelets per head.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil, prod

import numpy as np

from ...errors import UnsupportedError
from ...ir import registry
from ...ir.graph import Op
from ...ir.types import DTYPES
from .. import assumptions as A
from ..blocks import block, slices
from .base import ACT, Kernel, LowerCtx, Work, f32, lowers
from .rowwise import element_cycles

TABLE_PASSES = 3  # angles, cos, sin
HEAD_PASSES = 2  # x * cos, then the FMA of rotate_half(x) * sin
FREQ_BYTES = 4  # the frequencies are kept in f32 (as transformers computes them)


@dataclass(frozen=True)
class Rotary(Kernel):
    heads: int  # heads per token (rows of the last axis)
    d_head: int  # elements rotated per head
    flops_per_token: float
    decomposition = "tokens over rows, heads over columns"

    def max_cols(self) -> int:
        return self.heads

    def sram(self, rows, cols):
        hc = block(self.heads, min(cols, self.heads))
        half = self.d_head // 2
        return {"weights": half * FREQ_BYTES,  # the frequencies
                "activations_in": 2 * hc * self.d_head * self.elem, "activations_out": 2 * hc * self.d_head * self.elem,
                "partial_sums": 2 * half * self.elem,  # this token's cos and sin
                "fabric_queues": self.queues()}

    def work(self, p0, p1):
        c, n = p1 - p0, (p1 - p0) * self.heads * self.d_head
        # reads x twice (as itself and with its halves swapped) and a table value per element, writes each once
        return Work(flops=c * self.flops_per_token, sram_read=4 * n * self.elem, sram_write=n * self.elem,
                    delivered=n, edge=2 * n)

    def token_cycles(self, cols: int, machine) -> int:
        """Datapath cycles of one token on the core holding the most heads."""
        hc = block(self.heads, min(cols, self.heads))
        lanes = machine.datapath(self.dtype).rate * A.ELEMENTWISE_LANE_FRACTION
        c = machine.costs
        half = ceil(self.d_head / 2 / lanes)
        tables = (TABLE_PASSES * c.vector_issue + half * element_cycles("mul")
                  + half * (element_cycles("cos") + element_cycles("sin")))
        per_head = HEAD_PASSES * (c.vector_issue + ceil(self.d_head / lanes))
        return c.task_start + tables + hc * per_head

    def model_cycles(self, rows, cols, p0, p1, machine):
        hc = block(self.heads, min(cols, self.heads))
        per_token = max(self.token_cycles(cols, machine), hc * self.d_head)  # or its stream in
        return (p1 - p0) * per_token / min(rows, self.tokens)

    def run(self, op, args, rows, cols):
        x = f32(args[0])
        if x.ndim < 3:
            return registry.evaluate("rotary", [x, *args[1:]], op.attr)
        out = np.empty(op.type.shape, dtype=np.float32)
        cos, sin = (np.broadcast_to(f32(t), x.shape) for t in args[1:])
        for hj in slices(x.shape[-3], min(cols, x.shape[-3])):  # each column its heads
            out[..., hj, :, :] = registry.evaluate("rotary", [x[..., hj, :, :], cos[..., hj, :, :],
                                                               sin[..., hj, :, :]], op.attr)
        return out


@lowers("rotary")
def lower_rotary(op: Op, ctx: LowerCtx) -> Rotary:
    if ctx.sources[0] != ACT:
        raise UnsupportedError(f"lowering {ctx.where}: rotary of a weight or a constant")
    t = op.type
    d = t.shape[-1]
    heads = max(1, round(prod(t.shape) / ctx.total / d))
    return Rotary(tokens=ctx.tokens, dtype=t.dtype, elem=DTYPES[t.dtype][1], heads=heads, d_head=d,
                  flops_per_token=ctx.flops_per_token(op))
