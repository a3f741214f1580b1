"""gpt-oss's attention: causal, optionally over a sliding window, with a learned sink per head.

``sink_attention (q [B, H, L, E], k [B, Hkv, L, E], v [B, Hkv, L, Ev], sinks [H]) {scale, window}``:
per query head h and position i, the scores ``q_i . k_j * scale`` of the keys j <= i (and, with a
window W > 0, i - j < W, as transformers' sliding-window mask) join one more logit, ``sinks[h]``,
in the softmax; the sink's probability is dropped (it weighs no value), so a row's weights sum to
less than one. That is transformers' ``eager_attention_forward`` of ``modeling_gpt_oss``:
``softmax(concat(scores, sink))[..., :-1] @ v``. Grouped-query attention as ``attention``'s.

FLOPs: those of ``attention`` over the keys each query reads under the window (the dense square
without one, as ``attention`` counts), plus the sink's exp and add per query. No backward rule:
training gpt-oss is refused by ``autodiff`` with the op named (docs/moe.md).
"""

from __future__ import annotations

import numpy as np

from ..registry import Attr, define
from ..types import FLOAT_DTYPES
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


def _ref(args, a):
    q, k, v, sinks = (x.astype(np.float32) if x.dtype == np.float16 else x for x in args)
    k, v = grouped(q, k), grouped(q, v)
    scale = a["scale"] if a["scale"] is not None else 1.0 / np.sqrt(q.shape[-1])
    s = (q @ np.swapaxes(k, -1, -2)) * np.asarray(scale, dtype=q.dtype)
    s = np.where(allowed(s.shape[-1], a["window"]), s, -np.inf)
    sink = np.broadcast_to(sinks.reshape(1, -1, 1, 1).astype(s.dtype), s.shape[:-1] + (1,))
    top = np.maximum(s.max(-1, keepdims=True), sink)
    e = np.exp(s - top)
    p = e / (e.sum(-1, keepdims=True) + np.exp(sink - top))
    return (p @ v).astype(args[0].dtype, copy=False)


def _flops(ins, out, a):
    q, k, v = ins[:3]
    L, E, Ev = q.shape[-2], q.shape[-1], v.shape[-1]
    S = min(k.shape[-2], a["window"]) if a["window"] else k.shape[-2]
    heads = q.shape[0] * q.shape[1]
    return heads * (2 * L * S * E + 2 * L * S * Ev + 6 * L * S + 2 * L)


define("sink_attention", "attention", _infer, _ref, flops=_flops, arity=(4, 4),
       attrs={"scale": Attr("float?", None), "window": Attr("int", 0)},
       doc="causal attention whose softmax has one more logit per head, sinks[h], dropped after it; window > 0: "
           "query i reads keys i - window < j <= i (gpt-oss)")
