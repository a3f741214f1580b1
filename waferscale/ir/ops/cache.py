"""The KV cache as graph state: ``cache_update`` appends keys (or values) to a cache that a graph
reads as an input and hands back as an output, and ``cached_attention`` attends over it.

A generation step is a graph run: its KV caches come in as inputs ``[batch, heads, capacity,
d_head]``, each ``cache_update`` writes the step's new rows at the positions the step gives, the
attention reads the updated cache, and the updated caches are outputs, carried to the next run.
The capacity is fixed (prompt plus new tokens), so one decode graph serves every step; the
positions (an ``i64[batch, tokens]`` operand) say which rows are written and which keys each query
sees. On the mesh the cache never moves: it lives in the SRAM of the attention kernel's cores,
and the new key enters its row there (``backends/kernels/attention.py``).
"""

from __future__ import annotations

import numpy as np

from ..graph import Graph, Value
from ..registry import Attr, define
from ..types import FLOAT_DTYPES, INT_DTYPES, TensorType

POSITIONS = "position_ids"  # the input of a step graph that holds its tokens' positions, i64[batch, tokens]


def _positions_ok(pos: TensorType, batch: int, tokens: int, what: str) -> None:
    if pos.dtype not in INT_DTYPES or pos.shape != (batch, tokens):
        raise ValueError(f"{what} positions {pos} must be integers of shape [{batch}, {tokens}] "
                         "(batch, tokens)")


def _update_infer(ins, a):
    cache, new, pos = ins
    if cache.rank != 4 or new.rank != 4 or cache.dtype != new.dtype or \
            cache.shape[:2] + cache.shape[3:] != new.shape[:2] + new.shape[3:]:
        raise ValueError(f"cache_update of cache {cache} with rows {new}: need [batch, heads, capacity, d] and "
                         "[batch, heads, tokens, d] of one dtype")
    if new.shape[2] > cache.shape[2]:
        raise ValueError(f"cache_update writes {new.shape[2]} rows into a cache of capacity {cache.shape[2]}")
    _positions_ok(pos, cache.shape[0], new.shape[2], "cache_update")
    return cache


def _update_ref(args, a):
    cache, new, pos = args
    out = cache.copy()
    if ((pos < 0) | (pos >= cache.shape[2])).any():
        raise ValueError(f"cache_update: a position outside the cache's {cache.shape[2]} rows")
    for b in range(cache.shape[0]):
        out[b][:, pos[b], :] = new[b]
    return out


define("cache_update", "state", _update_infer, _update_ref, arity=(3, 3),
       bytes_moved=lambda ins, out, a: (ins[1].nbytes + ins[2].nbytes, ins[1].nbytes),
       doc="the cache [b, h, capacity, d] with rows new[b, h, i] written at row positions[b, i]")


def _attn_infer(ins, a):
    q, k, v, pos = ins
    if q.rank != 4 or k.rank != 4 or v.rank != 4:
        raise ValueError(f"cached_attention needs q, k, v of rank 4, got {q}, {k}, {v}")
    if q.dtype not in FLOAT_DTYPES:
        raise ValueError(f"cached_attention needs float operands, got {q}")
    if q.shape[-1] != k.shape[-1] or k.shape[:3] != v.shape[:3] or q.shape[0] != k.shape[0]:
        raise ValueError(f"cached_attention shapes q {q}, k {k}, v {v} do not agree "
                         "(need q[b, h, L, E], k[b, hk, C, E], v[b, hk, C, Ev])")
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"cached_attention: {k.shape[1]} key heads do not divide {q.shape[1]} query heads")
    _positions_ok(pos, q.shape[0], q.shape[2], "cached_attention")
    return TensorType(q.shape[:3] + v.shape[-1:], q.dtype)


def _attn_ref(args, a):
    q, k, v, pos = args
    q, k, v = (x.astype(np.float32) if x.dtype == np.float16 else x for x in (q, k, v))
    group = q.shape[1] // k.shape[1]  # grouped-query attention: each key head serves `group` query heads
    k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    scale = a["scale"] if a["scale"] is not None else 1.0 / np.sqrt(q.shape[-1])
    s = (q @ np.swapaxes(k, -1, -2)) * np.asarray(scale, dtype=q.dtype)
    seen = np.arange(k.shape[2])[None, None, :] <= pos[:, :, None]  # [b, L, C]
    s = np.where(seen[:, None], s, -np.inf)
    e = np.exp(s - s.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)) @ v


def _attn_flops(ins, out, a):
    # every row of the cache, as the dense attention counts its whole square: the positions are
    # known only when the graph runs (the mesh kernel's executed FLOPs count the keys it reads)
    q, k, v = ins[:3]
    heads, L, C, E, Ev = q.shape[0] * q.shape[1], q.shape[2], k.shape[2], q.shape[3], v.shape[3]
    return heads * (2 * L * C * E + 2 * L * C * Ev + L * C + 5 * L * C)


define("cached_attention", "attention", _attn_infer, _attn_ref, flops=_attn_flops, arity=(4, 4),
       attrs={"scale": Attr("float?", None)},
       doc="softmax(q k^T * scale) v, query i of sample b seeing the cache's keys at rows <= positions[b, i]; "
           "k and v may have fewer heads than q (grouped-query attention)")


def cache_inputs(g: Graph) -> list[Value]:
    """The graph inputs that are KV caches (state): read only as the cache of a ``cache_update``."""
    readers: dict[str, list[tuple[str, int]]] = {}
    for op in g.ops:
        for i, x in enumerate(op.operands):
            readers.setdefault(x.name, []).append((op.kind, i))
    return [v for v in g.inputs if readers.get(v.name)
            and all(kind == "cache_update" and i == 0 for kind, i in readers[v.name])]


def cache_outputs(g: Graph) -> list[Value]:
    """The graph outputs that are updated KV caches, carried to the next run."""
    updates = {op.result.name for op in g.ops if op.kind == "cache_update"}
    return [v for v in g.outputs if v.name in updates]
