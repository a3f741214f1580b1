"""gpt-oss's attention on the mesh (``sink_attention``): the ``Attention`` kernel's layout and costs
(heads over columns, key positions over rows), each query scoring only the keys its window leaves
(``min(i + 1, window)``; all of them, causal, on a full layer), and its head's sink joining the
softmax's running sum: one more exp and add per query, left out of the cycles (a lower bound, as
the kernel's other per-query terms). The keys outside a window stay in SRAM (not freed: an upper
bound on its bytes). Numbers: the registry's reference, whole.

Its backward (``sink_attention_grad``) is ``AttentionGrad`` under the same window; the sinks' gradient
(``sink_attention_grad_sinks``: per query the product of the sink's weight and D, which that kernel
has in hand, summed over the positions) is a rowwise reduction of a value per head and token.

Over a KV cache (``cached_sink_attention``, a step of generation) it is ``cached_attention``'s kernel
(the cache in its cores' SRAM, the partials combined by the two-level tree) with the sink in the
sum and, on a sliding layer, the window bounding both what a query reads (``min(t + 1, window)``
keys at position t) and what the cores hold: a ring of ``window`` rows per sequence (position p in
slot p mod window, on row slot mod rows), as transformers' sliding-window cache keeps; a step of
``tokens`` tokens (the prefill) holds ``window + tokens - 1`` rows, every query's window at once.
The keys' rows are all a decode step waits for, as ``cached_attention``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np

from ...errors import UnsupportedError
from ...ir import registry
from ...ir.graph import Op
from ...ir.ops.sinks import read_rows
from ...ir.types import DTYPES
from .attention import Attention, lower_cached_attention
from .base import ACT, LowerCtx, lowers
from .grads import AttentionGrad, RowwiseWhole


class Windowed:
    """What the three kernels share: each query scores at most ``window`` keys (0: every earlier one),
    and the numbers are the registry's reference, whole. A mixin before the kernel it narrows."""

    window: int

    def _keys(self, p0, p1):
        keys = super()._keys(p0, p1)
        return np.minimum(keys, self.window) if self.window else keys

    def run(self, op, args, rows, cols):
        return np.asarray(registry.evaluate(op.kind, args, op.attr)).astype(op.type.np_dtype, copy=False)


@dataclass(frozen=True)
class SinkAttention(Windowed, Attention):
    window: int = 0  # keys a query reads at most (0: every earlier one)
    decomposition = "heads over columns, key/value positions over rows (cyclic); a sink per head"


@dataclass(frozen=True)
class SinkAttentionGrad(Windowed, AttentionGrad):
    window: int = 0
    decomposition = ("heads over columns, key/value positions over rows (cyclic); dk, dv beside k, v; "
                     "a sink per head")


@lowers("sink_attention_grad")
def lower_sink_attention_grad(op: Op, ctx: LowerCtx) -> SinkAttentionGrad:
    f = lower_sink_attention(op, ctx)
    return SinkAttentionGrad(tokens=f.tokens, dtype=f.dtype, elem=f.elem, heads=f.heads, d_head=f.d_head, causal=True,
                             kv_heads=f.kv_heads, window=f.window)


@lowers("sink_attention_grad_sinks")
def lower_sink_grad_sinks(op: Op, ctx: LowerCtx) -> RowwiseWhole:
    t = op.type
    return RowwiseWhole(tokens=ctx.tokens, dtype=t.dtype, elem=DTYPES[t.dtype][1], op="add", features=t.shape[0],
                        inputs=max(ctx.sources.count(ACT), 1), params=0, flops_per_token=ctx.flops_per_token(op))


@lowers("sink_attention")
def lower_sink_attention(op: Op, ctx: LowerCtx) -> SinkAttention:
    q, k = op.operands[0].type, op.operands[1].type
    if ctx.position:
        raise UnsupportedError(f"lowering {ctx.where}: sink_attention at a decode step's position (no KV cache form)")
    heads = prod(q.shape[:-2]) * q.shape[-2] // ctx.total
    kv_heads = prod(k.shape[:-2]) * k.shape[-2] // ctx.total
    t = op.type
    return SinkAttention(tokens=ctx.tokens, dtype=t.dtype, elem=DTYPES[t.dtype][1], heads=max(heads, 1),
                         d_head=q.shape[-1], causal=True, window=registry.with_defaults(op.kind, op.attr)["window"],
                         kv_heads=kv_heads if 0 < kv_heads < heads and heads % kv_heads == 0 else 0)


@dataclass(frozen=True)
class CachedSinkAttention(Windowed, Attention):
    window: int = 0  # keys a query reads at most, and cache rows held (0: every earlier one, the capacity)
    decomposition = "heads over columns, cached key/value positions over rows (cyclic; a ring on a sliding layer)"

    @property
    def key_rows(self) -> int:
        return read_rows(self.capacity, self.window + self.tokens - 1 if self.window else 0)


@lowers("cached_sink_attention")
def lower_cached_sink_attention(op: Op, ctx: LowerCtx) -> CachedSinkAttention:
    a = lower_cached_attention(op, ctx)  # its checks, its shapes and its cache's bytes
    return CachedSinkAttention(**{f: getattr(a, f) for f in a.__dataclass_fields__},
                               window=registry.with_defaults(op.kind, op.attr)["window"])
