"""ATen op -> IR converters, one small function per ATen op family.

A converter receives the importer and the node's arguments, with FX nodes already replaced by
IR values or folded constants, and returns an IR value (or a tuple of them). The importer
checks the result against the type torch.export recorded for the node and casts where only
the dtype differs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..errors import UnsupportedError
from ..ir import Value
from .dtypes import IR_TO_TORCH
from .importer import Const, ImporterBase

Converter = Callable[[ImporterBase, tuple, dict], Any]
CONVERTERS: dict[str, Converter] = {}

# Nodes that only assert facts torch already checked; they produce nothing we use.
IGNORED = frozenset({
    "aten._assert_tensor_metadata.default", "aten._assert_scalar.default",
    "aten.sym_constrain_range_for_size.default", "_assert_async",
})


def converts(*names: str):
    def register(fn: Converter) -> Converter:
        for n in names:
            CONVERTERS[n] = fn
        return fn
    return register


def checked(imp: ImporterBase, v: Value) -> Value:
    """v, cast to the dtype torch recorded; a shape that disagrees is a converter bug."""
    want = imp.out_type()
    if v.type.shape != want.shape:
        raise AssertionError(f"{imp.where()}: converted to {v.type}, torch says {want}")
    return v if v.type.dtype == want.dtype else imp.op("cast", v, dtype=want.dtype)


def operands(imp: ImporterBase, *xs) -> list[Value]:
    like = next((x for x in xs if isinstance(x, Value)), None)
    return [imp.tensor(x, like) for x in xs]


# -- identities: values that torch copies or re-labels but whose contents do not change
@converts("aten.clone.default", "aten.alias.default", "aten.contiguous.default",
          "aten.detach.default", "aten.lift_fresh_copy.default", "aten.dropout.default",
          "aten.native_dropout.default", "aten.to.dtype", "aten.to.dtype_layout",
          "aten._to_copy.default", "aten.type_as.default", "aten.to.device")
def _identity(imp, args, kwargs):
    name = str(imp.node.target)
    if "dropout" in name:
        p = args[1] if len(args) > 1 else kwargs.get("p", 0.5)
        train = args[2] if len(args) > 2 else kwargs.get("train", True)
        if p and train:
            raise UnsupportedError(f"{imp.where()}: dropout with p={p} in training mode "
                                   "(call model.eval() or set the dropout probabilities to 0)")
        if "native_dropout" in name:
            return (args[0], None)
    return checked(imp, args[0])


# -- elementwise
def _binary(kind):
    def conv(imp, args, kwargs):
        a, b = operands(imp, args[0], args[1])
        alpha = kwargs.get("alpha", 1)
        if alpha != 1:
            b = imp.op("mul", b, imp.tensor(alpha, b))
        return checked(imp, imp.op(kind, a, b))
    return conv


for _aten, _kind in [("add", "add"), ("sub", "sub"), ("mul", "mul"), ("div", "div"),
                     ("pow", "pow"), ("maximum", "maximum"), ("minimum", "minimum"),
                     ("eq", "eq"), ("ne", "ne"), ("lt", "lt"), ("le", "le"), ("gt", "gt"),
                     ("ge", "ge"), ("logical_and", "and"), ("__and__", "and"),
                     ("bitwise_and", "and"), ("logical_or", "or"), ("__or__", "or"),
                     ("bitwise_or", "or")]:
    converts(*(f"aten.{_aten}.{o}" for o in ("Tensor", "Scalar", "Tensor_Scalar",
                                             "Tensor_Tensor", "default")))(_binary(_kind))


@converts("aten.rsub.Scalar", "aten.rsub.Tensor")
def _rsub(imp, args, kwargs):
    return _binary("sub")(imp, (args[1], args[0]), kwargs)


def _unary(kind, **attrs):
    def conv(imp, args, kwargs):
        return checked(imp, imp.op(kind, args[0], **attrs))
    return conv


for _aten, _kind in [("neg", "neg"), ("exp", "exp"), ("log", "log"), ("tanh", "tanh"),
                     ("erf", "erf"), ("sqrt", "sqrt"), ("rsqrt", "rsqrt"), ("relu", "relu"),
                     ("sigmoid", "sigmoid"), ("cos", "cos"), ("sin", "sin"), ("logical_not", "not"),
                     ("bitwise_not", "not")]:
    converts(f"aten.{_aten}.default")(_unary(_kind))


@converts("aten.silu.default")
def _silu(imp, args, kwargs):
    """SiLU (swish), x * sigmoid(x): one op (``canonicalize`` makes the same of a hand-written one)."""
    return checked(imp, imp.op("silu", imp.tensor(args[0])))


@converts("aten.gelu.default")
def _gelu(imp, args, kwargs):
    return checked(imp, imp.op("gelu", args[0], approximate=kwargs.get("approximate", "none")))


@converts("aten.where.self", "aten.where.ScalarSelf", "aten.where.ScalarOther", "aten.where.Scalar")
def _where(imp, args, kwargs):
    cond = imp.tensor(args[0])
    a, b = operands(imp, args[1], args[2])
    return checked(imp, imp.op("where", cond, a, b))


@converts("aten.masked_fill.Scalar", "aten.masked_fill.Tensor")
def _masked_fill(imp, args, kwargs):
    x = imp.tensor(args[0])
    return checked(imp, imp.op("where", imp.tensor(args[1]), imp.tensor(args[2], x), x))


# -- linear algebra
@converts("aten.addmm.default")
def _addmm(imp, args, kwargs):
    if kwargs.get("beta", 1) != 1 or kwargs.get("alpha", 1) != 1:
        raise UnsupportedError(f"{imp.where()}: addmm with beta or alpha other than 1")
    bias, x, w = operands(imp, *args[:3])
    if bias.type.rank != 1:
        return checked(imp, imp.op("add", imp.op("matmul", x, w), bias))
    return checked(imp, imp.op("linear", x, w, bias))


@converts("aten.linear.default")
def _linear(imp, args, kwargs):
    xs = operands(imp, *(a for a in args[:3] if a is not None))
    return checked(imp, imp.op("linear", *xs, transpose_w=True))


@converts("aten.mm.default", "aten.bmm.default", "aten.matmul.default")
def _matmul(imp, args, kwargs):
    a, b = operands(imp, args[0], args[1])
    if a.type.rank < 2 or b.type.rank < 2:
        raise UnsupportedError(f"{imp.where()}: matmul of a 1-D tensor")
    return checked(imp, imp.op("matmul", a, b))


@converts("aten.embedding.default")
def _embedding(imp, args, kwargs):
    table, ids = imp.tensor(args[0]), imp.tensor(args[1])
    return checked(imp, imp.op("embedding", table, ids))


# -- normalization, softmax, attention
@converts("aten.layer_norm.default", "aten.native_layer_norm.default")
def _layer_norm(imp, args, kwargs):
    x, shape = imp.tensor(args[0]), args[1]
    w = args[2] if len(args) > 2 else kwargs.get("weight")
    b = args[3] if len(args) > 3 else kwargs.get("bias")
    eps = args[4] if len(args) > 4 else kwargs.get("eps", 1e-5)
    if w is None and b is not None:
        raise UnsupportedError(f"{imp.where()}: layer_norm with a bias but no weight")
    params = [imp.tensor(p) for p in (w, b) if p is not None]
    y = imp.op("layernorm", x, *params, eps=float(eps), axes=len(shape))
    if "native" in str(imp.node.target):
        return (y, None, None)  # mean and rstd are for backward; a use of them fails at getitem
    return checked(imp, y)


@converts("aten.softmax.int", "aten._softmax.default", "aten._safe_softmax.default")
def _softmax(imp, args, kwargs):
    return checked(imp, imp.op("softmax", imp.tensor(args[0]), axis=int(args[1])))


def mask_kind(mask: torch.Tensor, L: int, S: int) -> str:
    """'none' if the mask keeps everything, 'causal' if it keeps exactly j <= i, else 'general'."""
    for d in range(mask.dim()):  # an axis it repeats along (a batch expanded, stride 0) is checked once
        if mask.stride(d) == 0 and mask.shape[d] > 1:
            mask = mask.narrow(d, 0, 1)
    m = mask.broadcast_to(mask.shape[:-2] + (L, S)) if mask.dim() >= 2 else mask.broadcast_to((L, S))
    causal = torch.ones(L, S, dtype=torch.bool).tril(S - L)
    if m.dtype == torch.bool:
        keep, dropped_ok = m, True
    else:  # additive float mask: 0 keeps, a very negative number drops
        keep = m == 0
        dropped_ok = bool((m[~keep] < -1e4).all()) if (~keep).any() else True
    if bool(keep.all()) and dropped_ok:
        return "none"
    if bool((keep == causal).all()) and dropped_ok:
        return "causal"
    return "general"


@converts("aten.scaled_dot_product_attention.default")
def _sdpa(imp, args, kwargs):
    names = ["query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa"]
    a = dict(zip(names, args)) | kwargs
    q, k, v = (imp.tensor(a[n]) for n in names[:3])
    if a.get("dropout_p", 0.0):
        raise UnsupportedError(f"{imp.where()}: attention dropout p={a['dropout_p']}")
    mask, causal = a.get("attn_mask"), bool(a.get("is_causal", False))
    scale = a.get("scale")
    scale = None if scale is None else float(scale)
    extra = []
    if isinstance(mask, Const):
        key = ("mask", id(mask.value), q.type.shape[-2], k.type.shape[-2])
        seen = imp.memo.get(key)  # every layer reads the same mask: check it once
        if seen is None or seen[0] is not mask.value:
            seen = imp.memo[key] = (mask.value, mask_kind(mask.value, *key[2:]))
        kind = seen[1]
        if kind == "causal":
            causal = True
        elif kind == "general":
            extra = [imp.tensor(mask)]
    elif mask is not None:
        extra = [mask]
    return checked(imp, imp.op("attention", q, k, v, *extra, causal=causal, scale=scale))


@converts("aten.cross_entropy_loss.default")
def _cross_entropy(imp, args, kwargs):
    names = ["self", "target", "weight", "reduction", "ignore_index", "label_smoothing"]
    a = dict(zip(names, args)) | kwargs
    if a.get("weight") is not None or a.get("reduction", 1) != 1 or a.get("label_smoothing", 0.0):
        raise UnsupportedError(f"{imp.where()}: cross_entropy with class weights, label smoothing "
                               "or a reduction other than mean")
    return checked(imp, imp.op("cross_entropy", imp.tensor(a["self"]), imp.tensor(a["target"]),
                               ignore_index=int(a.get("ignore_index", -100))))


# -- reductions
def _reduce(kind):
    def conv(imp, args, kwargs):
        x = imp.tensor(args[0])
        dims = args[1] if len(args) > 1 else kwargs.get("dim")
        dims = tuple(range(x.type.rank)) if dims is None or dims == [] else (
            (dims,) if isinstance(dims, int) else tuple(dims))
        keep = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
        return checked(imp, imp.op(kind, x, axes=tuple(d % x.type.rank for d in dims), keepdim=bool(keep)))
    return conv


converts("aten.sum.dim_IntList")(_reduce("reduce_sum"))
converts("aten.mean.dim")(_reduce("reduce_mean"))
converts("aten.amax.default")(_reduce("reduce_max"))


# -- shapes: every view takes its result shape from what torch recorded
@converts("aten.view.default", "aten.reshape.default", "aten._unsafe_view.default",
          "aten.unsqueeze.default", "aten.squeeze.dim", "aten.squeeze.dims", "aten.squeeze.default",
          "aten.flatten.using_ints", "aten.unflatten.int")
def _reshape(imp, args, kwargs):
    x, shape = imp.tensor(args[0]), imp.out_type().shape
    return x if x.type.shape == shape else checked(imp, imp.op("reshape", x, shape=shape))


@converts("aten.expand.default", "aten.broadcast_to.default")
def _expand(imp, args, kwargs):
    x, shape = imp.tensor(args[0]), imp.out_type().shape
    return x if x.type.shape == shape else checked(imp, imp.op("expand", x, shape=shape))


@converts("aten.transpose.int", "aten.permute.default", "aten.t.default", "aten.swapaxes.default")
def _transpose(imp, args, kwargs):
    x = imp.tensor(args[0])
    r = x.type.rank
    name = str(imp.node.target)
    if "permute" in name:
        perm = [d % r for d in args[1]]
    else:
        d0, d1 = (args[1] % r, args[2] % r) if len(args) > 2 else (0, 1)
        perm = list(range(r))
        perm[d0], perm[d1] = perm[d1], perm[d0]
    if perm == list(range(r)):
        return x
    return checked(imp, imp.op("transpose", x, perm=tuple(perm)))


def _slice(imp, x, dim, start, stop, step=1):
    n = x.type.shape[dim]
    start, stop, step = slice(start, stop, step).indices(n)
    if (start, stop, step) == (0, n, 1):
        return x
    return imp.op("slice", x, axis=dim, start=start, stop=stop, step=step)


@converts("aten.slice.Tensor")
def _slice_tensor(imp, args, kwargs):
    x = imp.tensor(args[0])
    dim, start, stop, step = (list(args[1:]) + [0, None, None, 1][len(args) - 1:])[:4]
    return checked(imp, _slice(imp, x, dim % x.type.rank, start, stop, step))


@converts("aten.select.int")
def _select(imp, args, kwargs):
    x = imp.tensor(args[0])
    dim = args[1] % x.type.rank
    i = args[2] % x.type.shape[dim]
    y = _slice(imp, x, dim, i, i + 1)
    return checked(imp, imp.op("reshape", y, shape=imp.out_type().shape))


@converts("aten.split.Tensor", "aten.split_with_sizes.default")
def _split(imp, args, kwargs):
    x = imp.tensor(args[0])
    dim = (args[2] if len(args) > 2 else kwargs.get("dim", 0)) % x.type.rank
    n = x.type.shape[dim]
    sizes = args[1] if isinstance(args[1], (list, tuple)) else [
        min(args[1], n - s) for s in range(0, n, args[1])]
    out, start = [], 0
    for s in sizes:
        out.append(_slice(imp, x, dim, start, start + s))
        start += s
    return tuple(out)


@converts("aten.chunk.default")
def _chunk(imp, args, kwargs):
    """``chunks`` pieces of ceil(n / chunks) along ``dim`` (the last smaller, as torch cuts them)."""
    x = imp.tensor(args[0])
    chunks = args[1]
    dim = (args[2] if len(args) > 2 else kwargs.get("dim", 0)) % x.type.rank
    n = x.type.shape[dim]
    size = max(1, -(-n // chunks))
    return tuple(_slice(imp, x, dim, s, min(s + size, n)) for s in range(0, n, size))


@converts("aten.cat.default", "aten.concat.default")
def _cat(imp, args, kwargs):
    xs = operands(imp, *args[0])
    dim = (args[1] if len(args) > 1 else kwargs.get("dim", 0)) % xs[0].type.rank
    return checked(imp, imp.op("concat", *xs, axis=dim))


# -- tensors made from another tensor's shape only: folded like any constant
@converts("aten.new_ones.default", "aten.new_zeros.default", "aten.new_full.default",
          "aten.ones_like.default", "aten.zeros_like.default", "aten.full_like.default")
def _like(imp, args, kwargs):
    t = imp.out_type()
    name = str(imp.node.target)
    fill = args[2] if "new_full" in name else args[1] if "full_like" in name else (
        1 if "ones" in name else 0)
    return Const(torch.full(t.shape, fill, dtype=IR_TO_TORCH[t.dtype]))
