"""Neural-network ops: normalization, softmax, attention, reductions, loss.

FLOPs (our convention, docs/flops.md): layernorm 8 per element; rmsnorm 4 (square, sum, scale by
1/rms, scale by the weight; 3 without a weight); rotary 3 (x cos + rotate_half(x) sin; the tables
are constants of the positions); softmax 5 per element (max,
subtract, exp, sum, divide); attention counts both products of the dense [Lq, Lk] score matrix
(causal or not: a dense kernel computes all of it), the scale, and the softmax.
"""

from __future__ import annotations

import numpy as np

from ...errors import UnsupportedError
from ..registry import Attr, define
from ..types import FLOAT_DTYPES, INT_DTYPES, TensorType, broadcast_shapes
from .heads import grouped, query_groups


def _layernorm_backward(e, op, g):
    """dx by layernorm_grad; d(scale) = sum over tokens of g * xhat; d(shift) = sum of g."""
    x, params = op.operands[0], op.operands[1:]
    a = op.attr
    lead = tuple(range(x.type.rank - a["axes"]))
    grads = [e("layernorm_grad", g, x, *params[:1], eps=a["eps"], axes=a["axes"])]
    if params:
        xhat = e("layernorm", x, eps=a["eps"], axes=a["axes"])
        grads.append(e("reduce_sum", e("mul", g, xhat), axes=lead, keepdim=False))
    if len(params) == 2:
        grads.append(e("reduce_sum", g, axes=lead, keepdim=False))
    return tuple(grads)


def _rmsnorm_backward(e, op, g):
    """dx by rmsnorm_grad; d(scale) = sum over tokens of g * x / rms (rmsnorm without its scale)."""
    x, params = op.operands[0], op.operands[1:]
    eps = op.attr["eps"]
    grads = [e("rmsnorm_grad", g, x, *params, eps=eps)]
    if params:
        xhat = e("rmsnorm", x, eps=eps)
        ds = e("reduce_sum", e("mul", g, xhat), axes=tuple(range(x.type.rank - 1)), keepdim=False)
        # a scale of another dtype than x (gpt-oss: an f16 weight times the f32 normalised x) gets its own back
        grads.append(ds if ds.type.dtype == params[0].type.dtype else e("cast", ds, dtype=params[0].type.dtype))
    return tuple(grads)


def _rotary_backward(e, op, g):
    """dx by rotary_grad; the tables' gradients (zero unless they depend on a parameter: they are
    functions of the positions) are g * x and g * rotate_half(x), the latter as rotary(x, 0, 1),
    each summed to its table's shape."""
    from .grad import unbroadcast

    x, cos, sin = op.operands

    def scalar(v):
        return e("constant", value=(v,), shape=(), dtype=x.type.dtype)
    rot = e("rotary", x, scalar(0.0), scalar(1.0))
    return (e("rotary_grad", g, cos, sin), unbroadcast(e, e("mul", g, x), cos.type),
            unbroadcast(e, e("mul", g, rot), sin.type))


def _attention_backward(e, op, g):
    """dq, dk, dv from one attention_grad; under grouped-query attention its dk and dv are each query
    head's share, summed here over the query heads of each key/value head's group."""
    q, k, v = op.operands[:3]
    a = op.attr
    s = e("attention_grad", q, k, v, g, *op.operands[3:], causal=a.get("causal", False), scale=a.get("scale"))
    from .grad import kv_groups

    groups = kv_groups(q.type, k.type)
    parts = []
    for i, x in enumerate((q, k, v)):
        part = e("slice", s, axis=0, start=i, stop=i + 1, step=1)
        if i and groups > 1:  # [..., H, S, E] -> [..., Hk, groups, S, E], summed over the group
            t = x.type
            part = e("reshape", part, shape=t.shape[:-3] + (t.shape[-3], groups) + t.shape[-2:])
            part = e("reduce_sum", part, axes=(t.rank - 2,), keepdim=False)
        parts.append(e("reshape", part, shape=x.type.shape))
    return (*parts, None) if len(op.operands) == 4 else tuple(parts)


def _reduce_backward(kind):
    def rule(e, op, g):
        x, a = op.operands[0], op.attr
        if kind == "reduce_max":
            raise UnsupportedError("the gradient of reduce_max (ties make it ambiguous); GPT models do not need it")
        axes = {ax % x.type.rank for ax in a["axes"]}
        kept = tuple(1 if i in axes else d for i, d in enumerate(x.type.shape))
        dx = e("expand", e("reshape", g, shape=kept), shape=x.type.shape)
        if kind == "reduce_mean":
            n = x.type.numel // max(1, g.type.numel)
            dx = e("mul", dx, e("constant", value=(1.0 / n,), shape=(), dtype=x.type.dtype))
        return (dx,)
    return rule


def _axis(axis, rank, what):
    if not -rank <= axis < max(rank, 1):
        raise ValueError(f"{what} axis {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


def _layernorm_infer(ins, a):
    x, params = ins[0], ins[1:]
    n = a["axes"]
    if not 1 <= n <= x.rank:
        raise ValueError(f"layernorm over the last {n} dims of {x} is out of range")
    for p in params:
        if p.shape != x.shape[-n:]:
            raise ValueError(f"layernorm scale/shift {p} must have shape {list(x.shape[-n:])}")
    return x


def _layernorm_ref(args, a):
    x = args[0]
    axes = tuple(range(-a["axes"], 0))
    x32 = x.astype(np.float32) if x.dtype == np.float16 else x
    mean = x32.mean(axis=axes, keepdims=True)
    var = ((x32 - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x32 - mean) / np.sqrt(var + a["eps"])
    if len(args) > 1:
        y = y * args[1]
    if len(args) > 2:
        y = y + args[2]
    return y


define("layernorm", "normalization", _layernorm_infer, _layernorm_ref,
       flops=lambda ins, out, a: 8 * out.numel, arity=(1, 3), backward=_layernorm_backward,
       attrs={"eps": Attr("float", 1e-5), "axes": Attr("int", 1)},
       doc="normalize over the last `axes` dims, then scale and shift")


def _rmsnorm_infer(ins, a):
    x = ins[0]
    if x.rank < 1 or x.dtype not in FLOAT_DTYPES:
        raise ValueError(f"rmsnorm needs a float operand of rank >= 1, got {x}")
    if len(ins) > 1 and ins[1].shape != x.shape[-1:]:
        raise ValueError(f"rmsnorm scale {ins[1]} must have shape {list(x.shape[-1:])}")
    return x


def _rmsnorm_ref(args, a):
    x = args[0]
    x32 = x.astype(np.float32) if x.dtype == np.float16 else x
    y = x32 / np.sqrt((x32 * x32).mean(axis=-1, keepdims=True) + np.asarray(a["eps"], dtype=x32.dtype))
    return y * args[1] if len(args) > 1 else y


define("rmsnorm", "normalization", _rmsnorm_infer, _rmsnorm_ref,
       flops=lambda ins, out, a: (4 if len(ins) > 1 else 3) * out.numel, arity=(1, 2),
       attrs={"eps": Attr("float", 1e-6)}, backward=_rmsnorm_backward,
       doc="x / sqrt(mean(x^2 over the last axis) + eps), then scale (RMSNorm: Llama, Mistral, Qwen2)")


def _rotary_infer(ins, a):
    x, cos, sin = ins
    if x.rank < 1 or x.shape[-1] % 2 or x.dtype not in FLOAT_DTYPES:
        raise ValueError(f"rotary needs a float operand whose last axis is even, got {x}")
    for t in (cos, sin):
        if broadcast_shapes(t.shape, x.shape) != x.shape:
            raise ValueError(f"rotary table {t} does not broadcast to {x}")
    return x


def _rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


define("rotary", "normalization", _rotary_infer,
       lambda args, a: args[0] * args[1] + _rotate_half(args[0]) * args[2],
       flops=lambda ins, out, a: 3 * out.numel, arity=(3, 3), backward=_rotary_backward,
       doc="rotary position embedding: x * cos + rotate_half(x) * sin, rotate_half(x) = [-x2, x1] of the last "
           "axis' halves (Llama, GPT-NeoX, Phi, ...)")


def _softmax_infer(ins, a):
    _axis(a["axis"], ins[0].rank, "softmax")
    if ins[0].dtype not in FLOAT_DTYPES:
        raise ValueError(f"softmax needs a float operand, got {ins[0]}")
    return ins[0]


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


define("softmax", "normalization", _softmax_infer, lambda args, a: _softmax(args[0], a["axis"]),
       flops=lambda ins, out, a: 5 * out.numel, attrs={"axis": Attr("int", -1)},
       backward=lambda e, op, g: (e("softmax_grad", op.result, g, axis=op.attr["axis"]),),
       doc="softmax along one axis")


def _attention_infer(ins, a):
    q, k, v = ins[:3]
    if min(q.rank, k.rank, v.rank) < 2:
        raise ValueError(f"attention needs q, k, v of rank >= 2, got {q}, {k}, {v}")
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"attention shapes q {q}, k {k}, v {v} do not agree "
                         "(need q[..., L, E], k[..., S, E], v[..., S, Ev])")
    if query_groups(q, k, v) > 1:  # grouped-query attention: each key/value head serves `groups` query heads
        k, v = (t.with_shape(t.shape[:-3] + (q.shape[-3],) + t.shape[-2:]) for t in (k, v))
    batch = broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    if len(ins) == 4:
        scores = batch + (q.shape[-2], k.shape[-2])
        if broadcast_shapes(ins[3].shape, scores) != scores:
            raise ValueError(f"attention mask {ins[3]} does not broadcast to scores {list(scores)}")
    if a["causal"] and len(ins) == 4:
        raise ValueError("attention takes either causal=true or a mask operand, not both")
    return TensorType(batch + (q.shape[-2], v.shape[-1]), q.dtype)


def _attention_ref(args, a):
    q, k, v = (x.astype(np.float32) if x.dtype == np.float16 else x for x in args[:3])
    k, v = grouped(q, k), grouped(q, v)
    scale = a["scale"] if a["scale"] is not None else 1.0 / np.sqrt(q.shape[-1])
    s = (q @ np.swapaxes(k, -1, -2)) * np.asarray(scale, dtype=q.dtype)
    L, S = s.shape[-2:]
    if a["causal"]:
        s = np.where(np.tril(np.ones((L, S), dtype=bool)), s, -np.inf)
    elif len(args) == 4:
        m = args[3]
        s = np.where(m, s, -np.inf) if m.dtype == np.bool_ else s + m
    return _softmax(s, -1) @ v


def _attention_flops(ins, out, a):
    q, k, v = ins[:3]
    L, S, E, Ev = q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1]
    heads = out.numel // (L * Ev)
    return heads * (2 * L * S * E + 2 * L * S * Ev + L * S + 5 * L * S)


define("attention", "attention", _attention_infer, _attention_ref, flops=_attention_flops, arity=(3, 4),
       backward=_attention_backward,
       attrs={"causal": Attr("bool", False), "scale": Attr("float?", None)},
       doc="softmax(q k^T * scale [+ mask]) v; scale defaults to 1/sqrt(E); a bool mask keeps True; k and v may "
           "have fewer heads than q (axis -3) that divide them: grouped-query attention")


def _reduce_infer(ins, a):
    x = ins[0]
    axes = {_axis(ax, x.rank, "reduction") for ax in a["axes"]}
    shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape) if a["keepdim"] or i not in axes)
    return x.with_shape(shape)


for _kind, _fn in [("reduce_sum", np.sum), ("reduce_mean", np.mean), ("reduce_max", np.max)]:
    define(_kind, "reduction", _reduce_infer,
           lambda args, a, _fn=_fn: _fn(args[0], axis=tuple(a["axes"]), keepdims=a["keepdim"]),
           flops=lambda ins, out, a: ins[0].numel, backward=_reduce_backward(_kind),
           attrs={"axes": Attr("ints"), "keepdim": Attr("bool", False)},
           doc=f"{_fn.__name__} over the given axes")


def _xent_infer(ins, a):
    logits, labels = ins
    if labels.dtype not in INT_DTYPES or logits.shape[:-1] != labels.shape:
        raise ValueError(f"cross_entropy needs logits [..., C] and integer labels [...], "
                         f"got {logits} and {labels}")
    return TensorType((), logits.dtype)


def _xent_ref(args, a):
    logits, labels = args
    z = logits.reshape(-1, logits.shape[-1]).astype(np.float64)
    y = labels.reshape(-1)
    keep = y != a["ignore_index"]
    z, y = z[keep], y[keep]
    lse = np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1)) + z.max(-1)
    return np.asarray((lse - z[np.arange(len(y)), y]).mean())


define("cross_entropy", "loss", _xent_infer, _xent_ref, arity=(2, 2),
       flops=lambda ins, out, a: 5 * ins[0].numel, attrs={"ignore_index": Attr("int", -100)},
       backward=lambda e, op, g: (e("cross_entropy_grad", *op.operands, g, ignore_index=op.attr["ignore_index"]),
                                  None),
       doc="mean negative log-likelihood of integer labels under softmax(logits)")
