"""Ops that only backward graphs use, and the helper the backward rules share.

Each forward op declares its backward rule beside its own definition (``backward=`` in
``define``); where a gradient is not a composition of forward ops it gets an op here:

- ``linear_grad_w``: the weight gradient of a linear, x^T dy summed over every token: a product
  of two activations; of a sparse weight (``sparsify``), with the weight's mask as a third operand
  (bool, the weight's shape) and its ``density``: zero where the weight is pruned;
- ``embedding_grad``: the table gradient of a gather, a scatter-add of dy into the rows the ids
  name;
- ``cross_entropy_grad``, ``gelu_grad``, ``silu_grad``, ``layernorm_grad``, ``rmsnorm_grad``,
  ``softmax_grad``: the input gradients of those ops (the saved forward input, not its result, is
  the operand: what a kernel keeps is the activation it was given);
- ``rotary_grad``: the input gradient of ``rotary``, ``dy * cos + rotate_half^T(dy * sin)`` (the
  transpose of the rotation of halves is the rotation the other way, ``[u2, -u1]``);
- ``attention_grad``: dq, dk and dv of one attention, stacked on a new leading axis of 3 (the
  three come out of one kernel that recomputes the scores); under grouped-query attention (k and
  v with fewer heads) dk and dv are each query head's share, in q's shape, and the backward rule
  sums each group's shares into its key/value head (``nn._attention_backward``);
- ``pad``: the gradient of ``slice``, zeros around the slice.

FLOPs (docs/flops.md): the products count 2 per multiply-accumulate as in the forward, so a
backward costs twice its forward in the products (the usual 6N per token for training).
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf as _erf

from ..registry import Attr, define
from ..types import FLOAT_DTYPES, INT_DTYPES, TensorType, broadcast_shapes
from .heads import grouped


def unbroadcast(emit, g, t: TensorType):
    """g summed down to the shape t it was broadcast from (NumPy rules), in t's shape."""
    if g.type.shape == t.shape:
        return g
    lead = g.type.rank - t.rank
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(t.shape) if d == 1 and g.type.shape[lead + i] != 1)
    if axes:
        g = emit("reduce_sum", g, axes=axes, keepdim=False)
    return g if g.type.shape == t.shape else emit("reshape", g, shape=t.shape)


# --- linear_grad_w: dW = x^T dy over all tokens -------------------------------------------------

MASK = "mask."  # a sparse weight P's mask is the parameter mask.P (passes/autodiff.py)


def _lgw_infer(ins, a):
    x, dy = ins[:2]
    if x.shape[:-1] != dy.shape[:-1]:
        raise ValueError(f"linear_grad_w needs x [..., K] and dy [..., N] over the same tokens, got {x} and {dy}")
    k, n = x.shape[-1], dy.shape[-1]
    out = TensorType((n, k) if a["transpose_w"] else (k, n), dy.dtype)
    if len(ins) == 3 and (ins[2].dtype != "bool" or ins[2].shape != out.shape):
        raise ValueError(f"linear_grad_w's mask {ins[2]} must be bool of the gradient's shape {list(out.shape)}")
    if not 0.0 < a["density"] <= 1.0:
        raise ValueError(f"linear_grad_w density={a['density']} must be in (0, 1]")
    return out


def _lgw_ref(args, a):
    x, dy = args[:2]
    x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])
    w = x2.T @ dy2
    w = w.T if a["transpose_w"] else w
    return np.where(args[2], w, 0) if len(args) == 3 else w


define("linear_grad_w", "contraction", _lgw_infer, _lgw_ref, arity=(2, 3),
       flops=lambda ins, out, a: round(2 * ins[0].numel * ins[1].shape[-1] * a["density"]),
       attrs={"transpose_w": Attr("bool", False),
              # a sparse weight's gradient (mask operand): its fraction of non-zeros, as the forward linear's
              "density": Attr("float", 1.0), "mask_seed": Attr("int", 0)},
       doc="x^T dy summed over every leading dim: the gradient of a linear's weight ([out, in] with transpose_w); "
           "with a mask (a sparse weight's), zero where it is False")


# --- embedding_grad: scatter-add ----------------------------------------------------------------

def _eg_infer(ins, a):
    dy, ids = ins
    if ids.dtype not in INT_DTYPES or dy.shape[:-1] != ids.shape:
        raise ValueError(f"embedding_grad needs dy [..., D] and integer ids [...], got {dy} and {ids}")
    if a["rows"] < 1:
        raise ValueError(f"embedding_grad rows={a['rows']} must be at least 1")
    return TensorType((a["rows"], dy.shape[-1]), dy.dtype)


def _eg_ref(args, a):
    dy, ids = args
    out = np.zeros((a["rows"], dy.shape[-1]), dtype=np.float64)
    np.add.at(out, ids.reshape(-1), dy.reshape(-1, dy.shape[-1]))
    return out


define("embedding_grad", "gather", _eg_infer, _eg_ref, arity=(2, 2),
       flops=lambda ins, out, a: ins[0].numel, attrs={"rows": Attr("int")},
       bytes_moved=lambda ins, out, a: (ins[0].nbytes + ins[1].nbytes, ins[0].nbytes),  # touches only its rows
       doc="scatter-add of dy's rows into a [rows, D] table of zeros at the ids: an embedding's table gradient")


# --- cross_entropy_grad -------------------------------------------------------------------------

def _xg_infer(ins, a):
    logits, labels, g = ins
    if labels.dtype not in INT_DTYPES or logits.shape[:-1] != labels.shape or g.shape != ():
        raise ValueError(f"cross_entropy_grad needs logits [..., C], integer labels [...] and a scalar "
                         f"gradient, got {logits}, {labels} and {g}")
    return logits


def _xg_ref(args, a):
    logits, labels, g = args
    z = logits.reshape(-1, logits.shape[-1]).astype(np.float64)
    y = labels.reshape(-1)
    keep = y != a["ignore_index"]
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    p[np.flatnonzero(keep), y[keep]] -= 1.0
    p[~keep] = 0.0
    return (p * (np.float64(g) / max(int(keep.sum()), 1))).reshape(logits.shape)


define("cross_entropy_grad", "loss", _xg_infer, _xg_ref, arity=(3, 3),
       flops=lambda ins, out, a: 4 * out.numel, attrs={"ignore_index": Attr("int", -100)},
       doc="(softmax(logits) - onehot(labels)) * g / (labels kept): the logits' gradient of cross_entropy")


# --- gelu_grad ----------------------------------------------------------------------------------

def _gelu_grad(x, dy, approximate):
    x = x.astype(np.float64)
    if approximate == "tanh":
        c = np.sqrt(2.0 / np.pi)
        u = c * (x + 0.044715 * x ** 3)
        t = np.tanh(u)
        d = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3 * 0.044715 * x * x)
    else:
        d = 0.5 * (1.0 + _erf(x / np.sqrt(2.0))) + x * np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)
    return dy * d


def _same_float(kind):
    def infer(ins, a):
        if ins[0].dtype not in FLOAT_DTYPES or ins[0].shape != ins[1].shape:
            raise ValueError(f"{kind} needs two float operands of one shape, got {ins[0]} and {ins[1]}")
        return ins[0]
    return infer


define("gelu_grad", "elementwise", _same_float("gelu_grad"),
       lambda args, a: _gelu_grad(args[0], args[1], a["approximate"]), arity=(2, 2),
       flops=lambda ins, out, a: (14 if a["approximate"] == "tanh" else 9) * out.numel,
       attrs={"approximate": Attr("str", "none", ("none", "tanh"))},
       doc="dy * gelu'(x), operands (x, dy)")


def _silu_grad(x, dy):
    x = x.astype(np.float64)
    s = 1.0 / (1.0 + np.exp(-x))
    return dy * (s * (1.0 + x * (1.0 - s)))  # d(x s(x)) = s + x s (1 - s)


define("silu_grad", "elementwise", _same_float("silu_grad"), lambda args, a: _silu_grad(args[0], args[1]),
       arity=(2, 2), flops=lambda ins, out, a: 9 * out.numel,  # the sigmoid's 4, then 1 - s, x *, 1 +, s *, dy *
       doc="dy * silu'(x) = dy * s (1 + x (1 - s)) with s = sigmoid(x), operands (x, dy)")


# --- layernorm_grad -----------------------------------------------------------------------------

def _lng_infer(ins, a):
    dy, x = ins[:2]
    if dy.shape != x.shape or not 1 <= a["axes"] <= x.rank:
        raise ValueError(f"layernorm_grad needs dy and x of one shape and axes in 1..rank, got {dy} and {x}")
    if len(ins) == 3 and ins[2].shape != x.shape[-a["axes"]:]:
        raise ValueError(f"layernorm_grad scale {ins[2]} must have shape {list(x.shape[-a['axes']:])}")
    return x


def _lng_ref(args, a):
    dy, x = (t.astype(np.float64) for t in args[:2])
    axes = tuple(range(-a["axes"], 0))
    mean = x.mean(axis=axes, keepdims=True)
    rstd = 1.0 / np.sqrt(((x - mean) ** 2).mean(axis=axes, keepdims=True) + a["eps"])
    xhat = (x - mean) * rstd
    dxhat = dy * args[2] if len(args) == 3 else dy
    return rstd * (dxhat - dxhat.mean(axis=axes, keepdims=True) - xhat * (dxhat * xhat).mean(axis=axes, keepdims=True))


define("layernorm_grad", "normalization", _lng_infer, _lng_ref, arity=(2, 3),
       flops=lambda ins, out, a: 12 * out.numel, attrs={"eps": Attr("float", 1e-5), "axes": Attr("int", 1)},
       doc="the input gradient of layernorm, operands (dy, x[, scale])")


# --- rmsnorm_grad -------------------------------------------------------------------------------

def _rng_infer(ins, a):
    dy, x = ins[:2]
    if dy.shape != x.shape or x.rank < 1:
        raise ValueError(f"rmsnorm_grad needs dy and x of one shape, got {dy} and {x}")
    if len(ins) == 3 and ins[2].shape != x.shape[-1:]:
        raise ValueError(f"rmsnorm_grad scale {ins[2]} must have shape {list(x.shape[-1:])}")
    return x


def _rng_ref(args, a):
    dy, x = (t.astype(np.float64) for t in args[:2])
    rstd = 1.0 / np.sqrt((x * x).mean(axis=-1, keepdims=True) + a["eps"])
    xhat = x * rstd
    dxhat = dy * args[2] if len(args) == 3 else dy
    return rstd * (dxhat - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True))


define("rmsnorm_grad", "normalization", _rng_infer, _rng_ref, arity=(2, 3),
       flops=lambda ins, out, a: 8 * out.numel, attrs={"eps": Attr("float", 1e-6)},
       doc="the input gradient of rmsnorm, rstd * (dy w - xhat mean(dy w xhat)), operands (dy, x[, scale])")


# --- rotary_grad --------------------------------------------------------------------------------

def _rotary_grad_infer(ins, a):
    dy = ins[0]
    if dy.rank < 1 or dy.shape[-1] % 2 or dy.dtype not in FLOAT_DTYPES:
        raise ValueError(f"rotary_grad needs a float gradient whose last axis is even, got {dy}")
    for t in ins[1:]:
        if broadcast_shapes(t.shape, dy.shape) != dy.shape:
            raise ValueError(f"rotary_grad table {t} does not broadcast to {dy}")
    return dy


def _rotary_grad_ref(args, a):
    dy, cos, sin = args
    u = dy * sin
    h = u.shape[-1] // 2
    return dy * cos + np.concatenate([u[..., h:], -u[..., :h]], axis=-1)  # rotate_half^T(u) = [u2, -u1]


define("rotary_grad", "normalization", _rotary_grad_infer, _rotary_grad_ref, arity=(3, 3),
       flops=lambda ins, out, a: 3 * out.numel,
       doc="the input gradient of rotary, dy * cos + rotate_half^T(dy * sin) with rotate_half^T(u) = [u2, -u1]; "
           "operands (dy, cos, sin)")


# --- softmax_grad -------------------------------------------------------------------------------

def _sg_ref(args, a):
    y, dy = (t.astype(np.float64) for t in args)
    return y * (dy - (dy * y).sum(axis=a["axis"], keepdims=True))


define("softmax_grad", "normalization", _same_float("softmax_grad"), _sg_ref, arity=(2, 2),
       flops=lambda ins, out, a: 4 * out.numel, attrs={"axis": Attr("int", -1)},
       doc="y * (dy - sum(dy * y)): the input gradient of softmax from its result y, operands (y, dy)")


# --- attention_grad -----------------------------------------------------------------------------

def _ag_infer(ins, a):
    q, k, v, dy = ins[:4]
    groups = kv_groups(q, k)
    if not (q.shape == dy.shape and k.shape == v.shape and
            (k.shape == q.shape or groups > 1 and k.shape[:-3] + k.shape[-2:] == q.shape[:-3] + q.shape[-2:])):
        raise ValueError(f"attention_grad needs q, k, v and dy of one shape (self-attention; k and v may have fewer "
                         f"heads that divide q's: grouped-query attention), got {q}, {k}, {v}, {dy}")
    return q.with_shape((3,) + q.shape)


def kv_groups(q: TensorType, k: TensorType) -> int:
    """Query heads per key/value head (axis -3): 1 unless k has fewer heads that divide q's (one head
    included, which the forward broadcasts)."""
    if min(q.rank, k.rank) < 3 or k.shape[-3] == q.shape[-3] or q.shape[-3] % k.shape[-3]:
        return 1
    return q.shape[-3] // k.shape[-3]


def _ag_ref(args, a):
    q, k, v, dy = (t.astype(np.float64) for t in args[:4])
    k, v = grouped(q, k), grouped(q, v)  # each query head's share of dk and dv (module docstring)
    scale = a["scale"] if a["scale"] is not None else 1.0 / np.sqrt(q.shape[-1])
    s = (q @ np.swapaxes(k, -1, -2)) * scale
    L, S = s.shape[-2:]
    if a["causal"]:
        s = np.where(np.tril(np.ones((L, S), dtype=bool)), s, -np.inf)
    elif len(args) == 5:
        m = args[4]
        s = np.where(m, s, -np.inf) if m.dtype == np.bool_ else s + m
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    dv = np.swapaxes(p, -1, -2) @ dy
    dp = dy @ np.swapaxes(v, -1, -2)
    ds = p * (dp - (dp * p).sum(-1, keepdims=True)) * scale
    dq = ds @ k
    dk = np.swapaxes(ds, -1, -2) @ q
    return np.stack(np.broadcast_arrays(dq, dk, dv))


def _ag_flops(ins, out, a):
    q = ins[0]
    L, E = q.shape[-2], q.shape[-1]
    heads = q.numel // (L * E)
    return heads * (8 * L * L * E + 6 * L * L)  # four products of [L, L] by E, and the softmax's backward


define("attention_grad", "attention", _ag_infer, _ag_ref, arity=(4, 5), flops=_ag_flops,
       attrs={"causal": Attr("bool", False), "scale": Attr("float?", None)},
       doc="dq, dk, dv of attention(q, k, v) for dy, stacked on a new axis 0; operands (q, k, v, dy[, mask]); "
           "k and v may have fewer heads (grouped-query): then dk and dv are each query head's share")


# --- pad: the gradient of slice -----------------------------------------------------------------

def _pad_infer(ins, a):
    x, ax = ins[0], a["axis"]
    if not 0 <= ax < x.rank:
        raise ValueError(f"pad axis {ax} out of range for {x}")
    n = len(range(*slice(a["start"], a["stop"], a["step"]).indices(a["size"])))
    if n != x.shape[ax] or a["step"] < 1:
        raise ValueError(f"pad of {x} into [{a['start']}:{a['stop']}:{a['step']}] of {a['size']} places "
                         f"{n} elements along axis {ax}, not {x.shape[ax]}")
    return x.with_shape(x.shape[:ax] + (a["size"],) + x.shape[ax + 1:])


def _pad_ref(args, a):
    x = args[0]
    out = np.zeros(x.shape[:a["axis"]] + (a["size"],) + x.shape[a["axis"] + 1:], dtype=x.dtype)
    index = [slice(None)] * x.ndim
    index[a["axis"]] = slice(a["start"], a["stop"], a["step"])
    out[tuple(index)] = x
    return out


define("pad", "layout", _pad_infer, _pad_ref,
       attrs={"axis": Attr("int"), "start": Attr("int"), "stop": Attr("int"), "step": Attr("int", 1),
              "size": Attr("int")},
       doc="zeros of `size` along axis with x at [start:stop:step] (the gradient of slice)")
