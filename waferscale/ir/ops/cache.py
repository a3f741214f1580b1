"""The KV cache as graph state: ``cache_update`` appends keys (or values) to a cache that a graph
reads as an input and hands back as an output, and ``cached_attention`` attends over it.

A generation step is a graph run: its KV caches come in as inputs ``[batch, heads, capacity,
d_head]``, each ``cache_update`` writes the step's new rows at the positions the step gives, the
attention reads the updated cache, and the updated caches are outputs, carried to the next run.
The capacity is fixed (prompt plus new tokens), so one decode graph serves every step; the
positions (an ``i64[batch, tokens]`` operand) say which rows are written and which keys each query
sees. On the mesh the cache never moves: it lives in the SRAM of the attention kernel's cores,
and the new key enters its row there (``backends/kernels/attention.py``).

An int8 cache (``passes/quantize.py`` ``kv=int8``) is two caches per key (or value) cache: its
codes ``i8[batch, heads, capacity, d_head]`` and one f16 scale per row ``[batch, heads, capacity, 1]``.
``cache_update {rows="int8"}`` writes a step's float rows as codes and ``{rows="int8_scale"}`` their
scales (``row_scales``: symmetric, ``max|row| / 127``, codes rounded to nearest, clamped to +-127);
``cached_attention`` then takes the two scale caches as operands 5 and 6 and reads ``code * scale``.
"""

from __future__ import annotations

import numpy as np

from ..graph import Graph, Value
from ..registry import Attr, define
from ..types import FLOAT_DTYPES, INT_DTYPES, TensorType

# the ops that attend over a KV cache: cached_attention, and gpt-oss's with sinks and a window (ir/ops/sinks.py)
CACHED_ATTENTION = ("cached_attention", "cached_sink_attention")
POSITIONS = "position_ids"  # the input of a step graph that holds its tokens' positions, i64[batch, tokens]


def _positions_ok(pos: TensorType, batch: int, tokens: int, what: str) -> None:
    if pos.dtype not in INT_DTYPES or pos.shape != (batch, tokens):
        raise ValueError(f"{what} positions {pos} must be integers of shape [{batch}, {tokens}] "
                         "(batch, tokens)")


INT8_MAX = 127.0  # an int8 cache's largest code: symmetric, -127..127


def row_scales(x: np.ndarray) -> np.ndarray:
    """One f16 scale per row (the last axis) of x: ``max|row| / 127`` (an all-zero row: 1)."""
    s = (np.abs(np.asarray(x, dtype=np.float32)).max(-1, keepdims=True) / INT8_MAX).astype(np.float16)
    s[s == 0] = 1.0
    return s


def row_codes(x: np.ndarray) -> np.ndarray:
    """The int8 codes of x's rows: ``round(x / scale)`` (to nearest) clamped to +-127."""
    q = np.rint(np.asarray(x, dtype=np.float32) / row_scales(x).astype(np.float32))
    return np.clip(q, -INT8_MAX, INT8_MAX).astype(np.int8)


def _update_infer(ins, a):
    cache, new, pos = ins
    rows = a.get("rows", "")
    if rows not in ("", "int8", "int8_scale"):
        raise ValueError(f'cache_update rows={rows!r}: use "" (copy), "int8" (codes) or "int8_scale" (row scales)')
    if rows:
        want = new.shape[:3] + ((1,) if rows == "int8_scale" else new.shape[3:])
        ok = cache.dtype == ("i8" if rows == "int8" else "f16") and new.dtype in FLOAT_DTYPES
        if cache.rank != 4 or new.rank != 4 or not ok or cache.shape[:2] + cache.shape[3:] != want[:2] + want[3:]:
            raise ValueError(f"cache_update {{rows={rows}}} of cache {cache} with rows {new}: need float rows "
                             f"[batch, heads, tokens, d] and a cache of {'i8' if rows == 'int8' else 'f16'} "
                             f"[batch, heads, capacity, {'d' if rows == 'int8' else '1'}]")
    elif cache.rank != 4 or new.rank != 4 or cache.dtype != new.dtype or \
            cache.shape[:2] + cache.shape[3:] != new.shape[:2] + new.shape[3:]:
        raise ValueError(f"cache_update of cache {cache} with rows {new}: need [batch, heads, capacity, d] and "
                         "[batch, heads, tokens, d] of one dtype")
    if new.shape[2] > cache.shape[2]:
        raise ValueError(f"cache_update writes {new.shape[2]} rows into a cache of capacity {cache.shape[2]}")
    _positions_ok(pos, cache.shape[0], new.shape[2], "cache_update")
    return cache


def _update_ref(args, a):
    cache, new, pos = args
    rows = a.get("rows", "")
    new = row_codes(new) if rows == "int8" else row_scales(new) if rows == "int8_scale" else new
    out = cache.copy()
    if ((pos < 0) | (pos >= cache.shape[2])).any():
        raise ValueError(f"cache_update: a position outside the cache's {cache.shape[2]} rows")
    for b in range(cache.shape[0]):
        out[b][:, pos[b], :] = new[b]
    return out


def _update_bytes(ins, out, a):
    new = ins[1]
    rows = a.get("rows", "")
    written = new.numel if rows == "int8" else new.numel // new.shape[-1] * 2 if rows == "int8_scale" else new.nbytes
    return new.nbytes + ins[2].nbytes, written


define("cache_update", "state", _update_infer, _update_ref, arity=(3, 3), bytes_moved=_update_bytes,
       attrs={"rows": Attr("str", "")},
       doc="the cache [b, h, capacity, d] with rows new[b, h, i] written at row positions[b, i]")


def _attn_infer(ins, a):
    q, k, v, pos = ins[:4]
    if len(ins) == 6:  # an int8 cache (module docstring): codes and one scale per row
        ks, vs = ins[4:]
        if k.dtype != "i8" or v.dtype != "i8" or ks.dtype not in FLOAT_DTYPES or vs.dtype not in FLOAT_DTYPES \
                or ks.shape != k.shape[:3] + (1,) or vs.shape != v.shape[:3] + (1,):
            raise ValueError(f"cached_attention over an int8 cache needs i8 k {k} and v {v} and float scales "
                             f"[b, hk, C, 1], got {ks}, {vs}")
        k, v = k.with_dtype(q.dtype), v.with_dtype(q.dtype)
    elif len(ins) != 4:
        raise ValueError("cached_attention takes q, k, v, positions (and an int8 cache's k and v scales)")
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


def dequantized(args: list) -> list:
    """cached_attention's (q, k, v, positions) with an int8 cache's codes times their row scales."""
    if len(args) == 6:
        q, k, v, pos, ks, vs = args
        f = np.float32 if q.dtype == np.float16 else q.dtype
        return [q, k.astype(f) * ks.astype(f), v.astype(f) * vs.astype(f), pos]
    return list(args)


def _attn_ref(args, a):
    q, k, v, pos = dequantized(args)
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


define("cached_attention", "attention", _attn_infer, _attn_ref, flops=_attn_flops, arity=(4, 6),
       attrs={"scale": Attr("float?", None)},
       doc="softmax(q k^T * scale) v, query i of sample b seeing the cache's keys at rows <= positions[b, i]; "
           "k and v may have fewer heads than q (grouped-query attention); an int8 cache adds its k and v row scales")


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


def cache_windows(g: Graph) -> dict[str, int]:
    """The KV caches (input names) that a sliding-window layer reads (``cached_sink_attention {window > 0}``): the
    rows a step reads of them at position p are ``min(p + 1, window)``, and a mesh kernel holds ``window``."""
    source = {op.result.name: op.operands[0].name for op in g.ops if op.kind == "cache_update"}
    return {source[x.name]: op.attr["window"] for op in g.ops if op.kind == "cached_sink_attention"
            and op.attr.get("window", 0) > 0 for x in op.operands[1:3] if x.name in source}


def cache_bytes_read(g: Graph, position: int) -> float:
    """The bytes of every KV cache a step at ``position`` reads: its rows up to the position, or its window's."""
    windows, total = cache_windows(g), 0.0
    for v in cache_inputs(g):
        rows, w = v.type.shape[2], windows.get(v.name, 0)
        total += v.type.nbytes * min(position + 1, w or rows, rows) / rows
    return total


def cache_dtype(g: Graph) -> str:
    """What a step graph's KV caches hold: ``int8`` (codes and row scales), ``fp8``, or their dtype."""
    if any(op.kind == "cache_update" and op.attr.get("rows") == "int8" for op in g.ops):
        return "int8"
    dtypes = sorted({v.type.dtype for v in cache_inputs(g)})
    return "fp8" if dtypes == ["f8"] else "/".join(dtypes) or "none"
