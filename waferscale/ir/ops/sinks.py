"""gpt-oss's attention: causal, optionally over a sliding window, with a learned sink per head.

``sink_attention (q [B, H, L, E], k [B, Hkv, L, E], v [B, Hkv, L, Ev], sinks [H]) {scale, window}``:
per query head h and position i, the scores ``q_i . k_j * scale`` of the keys j <= i (and, with a
window W > 0, i - j < W, as transformers' sliding-window mask) join one more logit, ``sinks[h]``,
in the softmax; the sink's probability is dropped (it weighs no value), so a row's weights sum to
less than one. That is transformers' ``eager_attention_forward`` of ``modeling_gpt_oss``:
``softmax(concat(scores, sink))[..., :-1] @ v``. Grouped-query attention as ``attention``'s.

FLOPs: those of ``attention`` over the keys each query reads under the window (the dense square
without one, as ``attention`` counts), plus the sink's exp and add per query.

Backward (``sink_attention_grad``): as attention's, with the sink in the softmax: for the keys' weights
p (the sink's p_s), dP = dy v^T and D = sum_j p_j dP_j per query, dS = p (dP - D) * scale, dq = dS k,
dk = dS^T q, dv = p^T dy (each query head's share of dk and dv under grouped-query attention, summed
per group after it, as ``attention_grad``'s); the sink's logit weighs no value, so its gradient is
-p_s D, summed over the batch and the positions (``sink_attention_grad_sinks``).

Over a KV cache (a step of generation, ``passes/kv_cache.py``): ``cached_sink_attention (q, k_cache,
v_cache, positions, sinks) {scale, window}``, ``cached_attention``'s operands (``ir/ops/cache.py``) and
the sinks: the query at position t reads the rows j <= t, and t - j < window on a sliding layer.
"""

from __future__ import annotations

import numpy as np

from .. import registry
from ..registry import Attr, define
from ..types import FLOAT_DTYPES, TensorType
from .heads import grouped, query_groups


def _infer(ins, a):
    q, k, v, sinks = ins
    if min(q.rank, k.rank, v.rank) != 4 or q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"sink_attention needs q [B, H, L, E], k [B, Hkv, S, E] and v [B, Hkv, S, Ev], got {q}, "
                         f"{k}, {v}")
    if k.shape[1] != q.shape[1] and query_groups(q, k, v) == 1:
        raise ValueError(f"sink_attention: key/value heads {k.shape[1]} must divide query heads {q.shape[1]}")
    if q.shape[-2] != k.shape[-2]:
        raise ValueError(f"sink_attention is self-attention: queries {q} and keys {k} of different length")
    if sinks.shape != (q.shape[1],) or sinks.dtype not in FLOAT_DTYPES:
        raise ValueError(f"sink_attention sinks {sinks} must be a float [{q.shape[1]}] (one per query head)")
    if a["window"] < 0:
        raise ValueError(f"sink_attention window={a['window']} must be >= 0 (0: no window)")
    return q.with_shape(q.shape[:-1] + (v.shape[-1],))


def allowed(length: int, window: int) -> np.ndarray:
    """[L, L] True where query i reads key j: j <= i, and i - j < window when there is one."""
    i, j = np.arange(length)[:, None], np.arange(length)[None, :]
    return (j <= i) & ((i - j < window) if window else True)


def _scale(q, a) -> float:
    return a["scale"] if a["scale"] is not None else 1.0 / np.sqrt(q.shape[-1])


def _probs(q, k, sinks, a):
    """The keys' weights p [B, H, L, S] and the sink's p_s [B, H, L, 1]."""
    s = (q @ np.swapaxes(k, -1, -2)) * np.asarray(_scale(q, a), dtype=q.dtype)
    s = np.where(allowed(s.shape[-1], a["window"]), s, -np.inf)
    sink = np.broadcast_to(sinks.reshape(1, -1, 1, 1).astype(s.dtype), s.shape[:-1] + (1,))
    top = np.maximum(s.max(-1, keepdims=True), sink)
    e, es = np.exp(s - top), np.exp(sink - top)
    z = e.sum(-1, keepdims=True) + es
    return e / z, es / z


def _ref(args, a):
    q, k, v, sinks = (x.astype(np.float32) if x.dtype == np.float16 else x for x in args)
    k, v = grouped(q, k), grouped(q, v)
    return (_probs(q, k, sinks, a)[0] @ v).astype(args[0].dtype, copy=False)


def _flops(ins, out, a):
    q, k, v = ins[:3]
    L, E, Ev = q.shape[-2], q.shape[-1], v.shape[-1]
    S = min(k.shape[-2], a["window"]) if a["window"] else k.shape[-2]
    heads = q.shape[0] * q.shape[1]
    return heads * (2 * L * S * E + 2 * L * S * Ev + 6 * L * S + 2 * L)


define("sink_attention", "attention", _infer, _ref, flops=_flops, arity=(4, 4),
       backward=lambda e, op, g: _backward(e, op, g),  # defined below, with its ops
       attrs={"scale": Attr("float?", None), "window": Attr("int", 0)},
       doc="causal attention whose softmax has one more logit per head, sinks[h], dropped after it; window > 0: "
           "query i reads keys i - window < j <= i (gpt-oss)")


# --- backward ------------------------------------------------------------------------------------

def _grads(args, a):
    q, k, v, sinks, dy = (x.astype(np.float64) for x in args)
    k, v = grouped(q, k), grouped(q, v)
    p, ps = _probs(q, k, sinks, a)
    dp = dy @ np.swapaxes(v, -1, -2)
    d = (p * dp).sum(-1, keepdims=True)
    ds = p * (dp - d) * _scale(q, a)
    return ds @ k, np.swapaxes(ds, -1, -2) @ q, np.swapaxes(p, -1, -2) @ dy, -(ps * d).sum(axis=(0, 2, 3))


def _grad_infer(ins, a):
    q, k, v, sinks, dy = ins
    _infer(ins[:4], a)
    if dy.shape != q.shape[:-1] + (v.shape[-1],) or v.shape[-1] != q.shape[-1]:
        raise ValueError(f"sink_attention_grad needs dy of the output's shape and v as wide as q, got {dy}, {v}")
    return q.with_shape((3,) + q.shape)


def _grad_flops(ins, out, a):
    q, k = ins[:2]
    L, E = q.shape[-2], q.shape[-1]
    S = min(k.shape[-2], a["window"]) if a["window"] else k.shape[-2]
    return q.shape[0] * q.shape[1] * (8 * L * S * E + 6 * L * S + 4 * L)  # attention_grad's, and the sink's


define("sink_attention_grad", "attention", _grad_infer, lambda args, a: np.stack(_grads(args, a)[:3]),
       flops=_grad_flops, arity=(5, 5), attrs={"scale": Attr("float?", None), "window": Attr("int", 0)},
       doc="dq, dk, dv of sink_attention for dy, stacked on a new axis 0 (dk, dv: each query head's share); "
           "operands (q, k, v, sinks, dy)")


def _sinks_infer(ins, a):
    _grad_infer(ins, a)
    return TensorType(ins[3].shape, ins[4].dtype)


define("sink_attention_grad_sinks", "reduction", _sinks_infer, lambda args, a: _grads(args, a)[3],
       # p_s and D per query come out of sink_attention_grad's pass; here their product, summed
       flops=lambda ins, out, a: 2 * ins[4].numel // ins[4].shape[-1], arity=(5, 5),
       attrs={"scale": Attr("float?", None), "window": Attr("int", 0)},
       doc="the sinks' gradient of sink_attention, -sum over batch and positions of p_sink * sum_j p_j (dy . v_j)")


def _backward(e, op, g):
    q, k, v, sinks = op.operands
    a = {"scale": op.attr.get("scale"), "window": op.attr.get("window", 0)}
    st = e("sink_attention_grad", q, k, v, sinks, g, **a)
    groups = q.type.shape[1] // k.type.shape[1]
    parts = []
    for i, x in enumerate((q, k, v)):
        part = e("slice", st, axis=0, start=i, stop=i + 1, step=1)
        if i and groups > 1:  # [B, H, L, E] -> [B, Hk, groups, L, E], summed over the group
            t = x.type
            part = e("reshape", part, shape=(t.shape[0], t.shape[1], groups) + t.shape[2:])
            part = e("reduce_sum", part, axes=(2,), keepdim=False)
        parts.append(e("reshape", part, shape=x.type.shape))
    ds = e("sink_attention_grad_sinks", q, k, v, sinks, g, **a)
    return (*parts, ds if ds.type.dtype == sinks.type.dtype else e("cast", ds, dtype=sinks.type.dtype))


# --- over a KV cache (a step of generation: passes/kv_cache.py) ----------------------------------

def _cached_infer(ins, a):
    q, k, v, pos, sinks = ins
    registry.infer_type("cached_attention", [q, k, v, pos], {"scale": a.get("scale")})
    if sinks.shape != (q.shape[1],) or sinks.dtype not in FLOAT_DTYPES:
        raise ValueError(f"cached_sink_attention sinks {sinks} must be a float [{q.shape[1]}] (one per query head)")
    if a.get("window", 0) < 0:
        raise ValueError(f"cached_sink_attention window={a['window']} must be >= 0 (0: no window)")
    return q.with_shape(q.shape[:3] + v.shape[-1:])


def seen(pos: np.ndarray, capacity: int, window: int) -> np.ndarray:
    """[b, L, C] True where the query at positions[b, i] reads cache row j: j <= its position, and
    position - j < window when there is one (sink_attention's ``allowed`` at the queries' positions)."""
    j = np.arange(capacity)[None, None, :]
    p = np.asarray(pos)[:, :, None]
    return (j <= p) & ((p - j < window) if window else True)


def _cached_ref(args, a):
    q, k, v, pos, sinks = (x.astype(np.float32) if x.dtype in (np.float16,) else x for x in args)
    f = q.dtype
    k, v = grouped(q, k.astype(f)), grouped(q, v.astype(f))  # an fp8 cache is widened as it is read
    s = (q @ np.swapaxes(k, -1, -2)) * np.asarray(_scale(q, a), dtype=f)
    s = np.where(seen(pos, k.shape[2], a.get("window", 0))[:, None], s, -np.inf)
    sink = np.broadcast_to(sinks.reshape(1, -1, 1, 1).astype(f), s.shape[:-1] + (1,))
    top = np.maximum(s.max(-1, keepdims=True), sink)
    e = np.exp(s - top)
    return ((e / (e.sum(-1, keepdims=True) + np.exp(sink - top))) @ v).astype(args[0].dtype, copy=False)


def read_rows(capacity: int, window: int) -> int:
    """Cache rows a query reads at most: the capacity, or the window on a sliding layer."""
    return min(capacity, window) if window else capacity


def _cached_flops(ins, out, a):
    # the rows a query can read (the window on a sliding layer; else every row, as cached_attention counts),
    # plus the sink's exp and add per query
    q, k, v = ins[:3]
    heads, L, E, Ev = q.shape[0] * q.shape[1], q.shape[2], q.shape[3], v.shape[3]
    S = read_rows(k.shape[2], a.get("window", 0))
    return heads * (2 * L * S * E + 2 * L * S * Ev + 6 * L * S + 2 * L)


def _cached_bytes(ins, out, a):
    q, k, v, pos, sinks = ins
    share = read_rows(k.shape[2], a.get("window", 0)) / k.shape[2]  # a sliding layer reads its window's rows only
    return round(q.nbytes + pos.nbytes + sinks.nbytes + share * (k.nbytes + v.nbytes)), out.nbytes


define("cached_sink_attention", "attention", _cached_infer, _cached_ref, flops=_cached_flops, arity=(5, 5),
       bytes_moved=_cached_bytes, attrs={"scale": Attr("float?", None), "window": Attr("int", 0)},
       doc="sink_attention over a KV cache: query i of sample b reads the rows j <= positions[b, i] (window > 0: "
           "and positions[b, i] - j < window), its head's sink in the softmax's sum; operands (q, k, v, positions, "
           "sinks)")
