"""Mixture-of-experts backward: the grouped products the experts' gradients are made of, and the
backward rules of the router's ``topk``, ``moe_dispatch``, ``moe_experts`` and ``moe_combine``.

For R = T k routed rows, row r bound for expert ``index.flat[r]`` (``ir/ops/moe.py``):

- ``moe_linear (x [R, K], index, w [E, K, N] | [E, N, K] with transpose_w[, b [E, N]])``: row r times
  its expert's weight (plus its bias): the grouped GEMM an expert's layer is. Its own backward is
  itself (with the weight the other way), ``moe_linear_grad_w`` and ``moe_segment_sum``.
- ``moe_linear_grad_w (x [R, K], dy [R, N], index) {experts}``: per expert, x^T dy over its rows only
  (``linear_grad_w`` grouped by expert), [E, K, N] or [E, N, K] with transpose_w.
- ``moe_segment_sum (dy [R, N], index) {experts}``: per expert, the sum of its rows (a bias gradient).
- ``topk_grad (dy [..., k], index [..., k]) {size}``: dy scattered into zeros at the positions top-k
  chose (the backward of a gather).
- ``moe_combine_grad_rows (dy [T, d], w [T, k])``: row t k + j is w[t, j] dy[t] (each expert output's
  gradient); ``moe_combine_grad_w (yr [T k, d], dy [T, d])``: the routing weights' gradient, the dot of
  each expert output with its token's gradient. The combine weights carry the router's gradient: through
  the renormalisation, ``topk_grad`` and the softmax back to the router's linear.

The experts' backward recomputes the gate and up product from the saved routed rows (the forward
kernel keeps only its output), then runs down's and gate/up's products the other way and their
weight gradients: 16 d f FLOPs per routed row against the forward's 6 d f; the recomputation's
4 d f are marked ``recompute`` (model FLOPs leave them out, as the ``recompute`` pass's), so the
model's backward is 12 d f, twice the forward. No auxiliary (load-balancing) loss: the loss is the language model's.
"""

from __future__ import annotations

import numpy as np

from ..graph import Op, make_attrs
from ..registry import Attr, backward_rule, define, with_defaults
from ..types import TensorType

# Expert activations by transformers' ``hidden_act`` name -> (our op, its attributes, FLOPs per element).
ACTIVATIONS = {
    "silu": ("silu", {}, 5), "swish": ("silu", {}, 5),
    "gelu": ("gelu", {"approximate": "none"}, 5),
    "gelu_new": ("gelu", {"approximate": "tanh"}, 8), "gelu_pytorch_tanh": ("gelu", {"approximate": "tanh"}, 8),
    "relu": ("relu", {}, 1),
}


def _rows(x: TensorType, idx: TensorType, what: str) -> int:
    if idx.rank != 2 or idx.dtype not in ("i64", "i32"):
        raise ValueError(f"{what}: the expert indices must be an integer [tokens, k], got {idx}")
    n = idx.shape[0] * idx.shape[1]
    if x.rank != 2 or x.shape[0] != n:
        raise ValueError(f"{what}: routed rows {x} must be [{n}, features] (tokens x k rows)")
    return n


# --- moe_linear --------------------------------------------------------------------------------

def _ml_infer(ins, a):
    x, idx, w = ins[:3]
    n = _rows(x, idx, "moe_linear")
    if w.rank != 3:
        raise ValueError(f"moe_linear: the weight {w} must be [E, K, N] (or [E, N, K] with transpose_w)")
    e, k, out = (w.shape[0], w.shape[2], w.shape[1]) if a["transpose_w"] else w.shape
    if x.shape[1] != k:
        raise ValueError(f"moe_linear contracts {x} with {w}{' (transposed)' if a['transpose_w'] else ''}: "
                         f"{x.shape[1]} != {k}")
    if len(ins) == 4 and ins[3].shape != (e, out):
        raise ValueError(f"moe_linear bias {ins[3]} must be [{e}, {out}]")
    return TensorType((n, out), x.dtype)


def _ml_ref(args, a):
    x, idx, w = args[:3]
    flat = idx.reshape(-1)
    x32 = x.astype(np.float32) if x.dtype == np.float16 else x
    out = np.zeros((x.shape[0], w.shape[1] if a["transpose_w"] else w.shape[2]), dtype=x32.dtype)
    for e in np.unique(flat):
        rows = flat == e
        we = w[e].T if a["transpose_w"] else w[e]
        out[rows] = x32[rows] @ we + (args[3][e] if len(args) == 4 else 0)
    return out.astype(x.dtype, copy=False)


def _ml_backward(e, op, g):
    x, idx, w = op.operands[:3]
    t = op.attr["transpose_w"]
    experts = w.type.shape[0]
    grads = [e("moe_linear", g, idx, w, transpose_w=not t), None,
             e("moe_linear_grad_w", x, g, idx, experts=experts, transpose_w=t)]
    if len(op.operands) == 4:
        grads.append(e("moe_segment_sum", g, idx, experts=experts))
    return tuple(grads)


define("moe_linear", "contraction", _ml_infer, _ml_ref, arity=(3, 4),
       flops=lambda ins, out, a: 2 * out.numel * ins[0].shape[1] + (out.numel if len(ins) == 4 else 0),
       attrs={"transpose_w": Attr("bool", False)}, backward=_ml_backward,
       doc="routed row r times its expert's weight w[index.flat[r]] (+ b[index.flat[r]]): a grouped GEMM; "
           "w [E, K, N], or [E, N, K] with transpose_w")


# --- moe_linear_grad_w, moe_segment_sum --------------------------------------------------------

def _mlg_infer(ins, a):
    x, dy, idx = ins
    _rows(x, idx, "moe_linear_grad_w")
    _rows(dy, idx, "moe_linear_grad_w")
    if a["experts"] < 1:
        raise ValueError(f"moe_linear_grad_w experts={a['experts']} must be at least 1")
    k, n = x.shape[1], dy.shape[1]
    return TensorType((a["experts"],) + ((n, k) if a["transpose_w"] else (k, n)), dy.dtype)


def _mlg_ref(args, a):
    x, dy, idx = (np.asarray(t, dtype=np.float64) if i < 2 else t for i, t in enumerate(args))
    flat = idx.reshape(-1)
    out = np.zeros((a["experts"], x.shape[1], dy.shape[1]))
    for e in np.unique(flat):
        rows = flat == e
        out[e] = x[rows].T @ dy[rows]
    return np.swapaxes(out, 1, 2) if a["transpose_w"] else out


define("moe_linear_grad_w", "contraction", _mlg_infer, _mlg_ref, arity=(3, 3),
       flops=lambda ins, out, a: 2 * ins[0].numel * ins[1].shape[1],
       attrs={"experts": Attr("int"), "transpose_w": Attr("bool", False)},
       doc="per expert, x^T dy over the routed rows bound for it: the gradient of moe_linear's weight")


def _seg_infer(ins, a):
    dy, idx = ins
    _rows(dy, idx, "moe_segment_sum")
    if a["experts"] < 1:
        raise ValueError(f"moe_segment_sum experts={a['experts']} must be at least 1")
    return TensorType((a["experts"], dy.shape[1]), dy.dtype)


def _seg_ref(args, a):
    dy, idx = args
    out = np.zeros((a["experts"], dy.shape[1]))
    np.add.at(out, idx.reshape(-1), dy.astype(np.float64))
    return out


define("moe_segment_sum", "reduction", _seg_infer, _seg_ref, arity=(2, 2),
       flops=lambda ins, out, a: ins[0].numel, attrs={"experts": Attr("int")},
       doc="per expert, the sum of the routed rows bound for it: the gradient of moe_linear's bias")


# --- topk_grad ---------------------------------------------------------------------------------

def _tkg_infer(ins, a):
    dy, idx = ins
    if idx.dtype not in ("i64", "i32") or idx.shape != dy.shape or a["size"] < dy.shape[-1]:
        raise ValueError(f"topk_grad needs dy [..., k], integer positions of its shape and size >= k, got {dy}, "
                         f"{idx} and size={a['size']}")
    return dy.with_shape(dy.shape[:-1] + (a["size"],))


def _tkg_ref(args, a):
    dy, idx = args
    out = np.zeros(dy.shape[:-1] + (a["size"],), dtype=dy.dtype)
    np.put_along_axis(out, idx, dy, axis=-1)
    return out


define("topk_grad", "gather", _tkg_infer, _tkg_ref, arity=(2, 2), attrs={"size": Attr("int")},
       doc="dy scattered into zeros of the last axis' size at the positions topk chose (its values' gradient)")


def topk_backward(e, op, g):
    if op.attr["indices"]:
        return (None,)
    x = op.operands[0]
    idx = e("topk", x, k=op.attr["k"], indices=True)
    return (e("topk_grad", g, idx, size=x.type.shape[-1]),)


# --- moe_combine's gradients -------------------------------------------------------------------

def _cgr_infer(ins, a):
    dy, w = ins
    if dy.rank != 2 or w.rank != 2 or dy.shape[0] != w.shape[0]:
        raise ValueError(f"moe_combine_grad_rows needs dy [T, d] and weights [T, k], got {dy} and {w}")
    return dy.with_shape((w.shape[0] * w.shape[1], dy.shape[1]))


def _cgr_ref(args, a):
    dy, w = args
    rows = w.astype(np.float32)[:, :, None] * dy.astype(np.float32)[:, None, :]
    return rows.reshape(-1, dy.shape[1]).astype(dy.dtype, copy=False)


define("moe_combine_grad_rows", "elementwise", _cgr_infer, _cgr_ref, arity=(2, 2),
       flops=lambda ins, out, a: out.numel,
       doc="row t*k+j is w[t, j] * dy[t]: the gradient of each expert output that moe_combine weighted")


def _cgw_infer(ins, a):
    yr, dy = ins
    if yr.rank != 2 or dy.rank != 2 or yr.shape[1] != dy.shape[1] or yr.shape[0] % max(dy.shape[0], 1):
        raise ValueError(f"moe_combine_grad_w needs expert outputs [T*k, d] and dy [T, d], got {yr} and {dy}")
    return dy.with_shape((dy.shape[0], yr.shape[0] // dy.shape[0]))


def _cgw_ref(args, a):
    yr, dy = args
    t = dy.shape[0]
    y = yr.reshape(t, -1, yr.shape[1]).astype(np.float32)
    return (y * dy.astype(np.float32)[:, None, :]).sum(-1).astype(dy.dtype, copy=False)


define("moe_combine_grad_w", "normalization", _cgw_infer, _cgw_ref, arity=(2, 2),
       flops=lambda ins, out, a: 2 * ins[0].numel,
       doc="[t, j] is the dot of expert output t*k+j with dy[t]: the gradient of moe_combine's routing weights")


def combine_backward(e, op, g):
    yr, w = op.operands
    wd = w if w.type.dtype == g.type.dtype else e("cast", w, dtype=g.type.dtype)
    dw = e("moe_combine_grad_w", yr, g)
    return (e("moe_combine_grad_rows", g, wd), dw if dw.type.dtype == w.type.dtype else
            e("cast", dw, dtype=w.type.dtype))


def dispatch_backward(e, op, g):
    """Token t's gradient is the sum of its k routed rows': a combine with weights of one."""
    x, idx = op.operands
    ones = e("constant", value=(1.0,), shape=idx.type.shape, dtype=g.type.dtype)
    return (e("moe_combine", g, ones), None)


# --- moe_experts' backward ---------------------------------------------------------------------

def apply(e, kind: str, attrs: dict, x):
    """``kind`` applied to x, and the backward rule's gradient function of that application."""
    y = e(kind, x, **attrs)
    op = Op(kind, (x,), make_attrs(with_defaults(kind, attrs)), y)
    return y, lambda g: backward_rule(kind)(e, op, g)[0]


def recomputed(e, *values) -> None:
    """Marks values a backward rule recomputes from the forward's (``meta["recompute"]``, as the
    ``recompute`` pass does): model FLOPs leave them out (docs/flops.md)."""
    meta = getattr(getattr(e, "graph", None), "meta", None)
    if meta is not None:
        for v in values:
            meta.setdefault(v.name, {})["recompute"] = True


def experts_backward(e, op, g):
    """h = x w13^T (+ b13) recomputed; gate, up = h's halves; m = act(gate) * up; y = m w2^T (+ b2)."""
    xr, idx, w13, w2 = op.operands[:4]
    biased = len(op.operands) == 6
    experts, f = w13.type.shape[0], w13.type.shape[1] // 2
    kind, attrs, _ = ACTIVATIONS[op.attr["act"]]
    h = e("moe_linear", xr, idx, w13, *op.operands[4:5], transpose_w=True)
    gate = e("slice", h, axis=1, start=0, stop=f, step=1)
    up = e("slice", h, axis=1, start=f, stop=2 * f, step=1)
    act, act_grad = apply(e, kind, attrs, gate)
    m = e("mul", act, up)
    recomputed(e, h, gate, up, act, m)
    dm = e("moe_linear", g, idx, w2, transpose_w=False)  # dy [R, d] @ w2[e] [d, f]
    dw2 = e("moe_linear_grad_w", m, g, idx, experts=experts, transpose_w=True)
    dh = e("concat", act_grad(e("mul", dm, up)), e("mul", dm, act), axis=1)
    dx = e("moe_linear", dh, idx, w13, transpose_w=False)  # dh [R, 2f] @ w13[e] [2f, d]
    dw13 = e("moe_linear_grad_w", xr, dh, idx, experts=experts, transpose_w=True)
    grads = [dx, None, dw13, dw2]
    if biased:
        grads += [e("moe_segment_sum", dh, idx, experts=experts), e("moe_segment_sum", g, idx, experts=experts)]
    return tuple(grads)
