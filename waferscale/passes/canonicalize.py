"""canonicalize: the graph in its simplest equivalent form, so that later passes and the
lowering see one spelling of each thing. Rules, applied to a fixed point (``ir/rewrite.py``):

- common subexpressions: two ops of the same kind, operands and attributes are one;
- reshape(x) to x's own shape -> x; reshape(reshape(x)) -> reshape(x);
  expand(x) to x's own shape -> x; concat of one operand -> it;
- transpose(x, identity) -> x; transpose(transpose(x, p), q) -> transpose(x, p then q);
- linear(reshape(x)) with x's trailing axes merged into the contracted one -> the same linear
  on x with its leading axes kept, reshaped after: the reshapes around a linear then meet and
  cancel (``torch.nn.Linear`` flattens tokens to 2-D and back around every product);
- x * 1, x / 1, x + 0, x - 0 -> x (where the result type is x's);
- cast(x) to x's dtype -> x; cast(cast(x, wider), x's dtype) -> x;
- x * sigmoid(x) -> ``silu`` x;
- RMSNorm's arithmetic, x * rsqrt(mean(x^2, last axis) + eps) -> ``rmsnorm`` x (with the casts
  to f32 and back that Hugging Face puts around it taken in: the op computes in f32), and
  w * rmsnorm(x) with w a weight vector of the last axis -> ``rmsnorm`` x, w;
- x * cos + concat(-x[h:], x[:h]) * sin (rotate_half on the last axis) -> ``rotary`` x, cos, sin;
- attention(q, repeat_kv(k), repeat_kv(v)), each key/value head copied for the query heads of its
  group by a reshape, an expand and a reshape, -> attention(q, k, v) (grouped-query attention:
  the copies are not made, and the flows carry only the key/value heads);
- Hugging Face's ``gelu_new`` arithmetic, 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), ->
  ``gelu {approximate="tanh"}`` (in any order of its commutative operands);
- and, between sweeps, dead code elimination.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..ir.graph import Graph, Op, Value
from ..ir.pattern import P, match, scalar
from ..ir.rewrite import Rewriter, rewrite
from .base import GRAPH, CompileState, Pass, register


def cse(op: Op, rw: Rewriter) -> Value | None:
    # x = f(a, b); y = f(a, b) -> y is x
    if any(isinstance(v, Graph) for _, v in op.attrs):
        return None
    key = ("cse", op.kind, tuple(x.name for x in op.operands), op.attrs)
    first = rw.memo.setdefault(key, op.result)
    return first if first is not op.result and first.type == op.type else None


def same_shape(op: Op, rw: Rewriter) -> Value | None:
    # reshape(x) -> x, expand(x) -> x when the shape is x's; concat(x) -> x
    if op.kind in ("reshape", "expand", "concat") and len(op.operands) == 1 and op.operands[0].type == op.type:
        return op.operands[0]
    return None


_RESHAPE_RESHAPE = P("reshape", P("reshape", P.any("x")))
_TRANSPOSE_TRANSPOSE = P("transpose", P("transpose", P.any("x"), name="inner"))


def reshape_chain(op: Op, rw: Rewriter) -> Value | None:
    # reshape(reshape(x)) -> reshape(x)
    b = match(_RESHAPE_RESHAPE, op.result, rw.producer)
    return rw.op("reshape", b["x"], shape=op.attr["shape"]) if b else None


def transpose_chain(op: Op, rw: Rewriter) -> Value | None:
    # transpose(x, identity) -> x; transpose(transpose(x, p), q) -> transpose(x, p[q])
    if op.kind != "transpose":
        return None
    perm = op.attr["perm"]
    if list(perm) == sorted(perm):
        return op.operands[0]
    b = match(_TRANSPOSE_TRANSPOSE, op.result, rw.producer)
    if b is None:
        return None
    inner = rw.producer(b["inner"]).attr["perm"]
    return rw.op("transpose", b["x"], perm=tuple(inner[i] for i in perm))


def linear_keeps_leading_axes(op: Op, rw: Rewriter) -> Value | None:
    # linear(reshape(x -> S)) -> reshape(linear(reshape(x -> x.shape[:j] + [S[-1]])), S[:-1] + [n])
    # with j the last axis of x such that x.shape[j:] merges into S[-1] and x.shape[:j] into S[:-1]
    if op.kind != "linear":
        return None
    inner = rw.producer(op.operands[0])
    if inner is None or inner.kind != "reshape":
        return None
    x = inner.operands[0]
    s = op.operands[0].type.shape
    for j in range(x.type.rank - 1, -1, -1):
        if math.prod(x.type.shape[j:]) == s[-1] and math.prod(x.type.shape[:j]) == math.prod(s[:-1]):
            break
    else:
        return None
    keep = x.type.shape[:j] + (s[-1],)
    if keep == s:
        return None
    moved = rw.op("reshape", x, shape=keep) if keep != x.type.shape else x
    y = rw.op("linear", moved, *op.operands[1:], **op.attr)
    return rw.op("reshape", y, shape=op.type.shape)


_IDENTITY = {"mul": 1.0, "div": 1.0, "add": 0.0, "sub": 0.0}


def neutral_element(op: Op, rw: Rewriter) -> Value | None:
    # x * 1 -> x, x / 1 -> x, x + 0 -> x, x - 0 -> x
    if op.kind not in _IDENTITY:
        return None
    sides = [(0, 1)] if op.kind in ("div", "sub") else [(0, 1), (1, 0)]
    for keep, drop in sides:
        if scalar(rw.producer(op.operands[drop])) == _IDENTITY[op.kind] and op.operands[keep].type == op.type:
            return op.operands[keep]
    return None


# Casts a -> b -> a that give back every value of a exactly.
_EXACT = {("f16", "f32"), ("f16", "f64"), ("bf16", "f32"), ("bf16", "f64"), ("f32", "f64"), ("i8", "i32"),
          ("i8", "i64"), ("i32", "i64"), ("bool", "i8"), ("bool", "i32"), ("bool", "i64"), ("i8", "f32"),
          ("i8", "f16"), ("i32", "f64")}


def redundant_cast(op: Op, rw: Rewriter) -> Value | None:
    # cast(x) to x's dtype -> x; cast(cast(x, wider), x's dtype) -> x
    if op.kind != "cast":
        return None
    x = op.operands[0]
    if x.type == op.type:
        return x
    inner = rw.producer(x)
    if inner is not None and inner.kind == "cast" and inner.operands[0].type == op.type:
        if (op.type.dtype, x.type.dtype) in _EXACT:
            return inner.operands[0]
    return None


_X = P.any("x")
GELU_TANH = P("mul", P("mul", _X, P.const(0.5)),
              P("add", P.const(1.0),
                P("tanh", P("mul", P.const(math.sqrt(2.0 / math.pi)),
                            P("add", _X, P("mul", P.const(0.044715), P("pow", _X, P.const(3.0))))))))


def gelu_tanh(op: Op, rw: Rewriter) -> Value | None:
    # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) -> gelu(x, approximate="tanh")
    if op.kind != "mul":
        return None
    b = match(GELU_TANH, op.result, rw.producer)
    if b is None or b["x"].type != op.type:
        return None
    return rw.op("gelu", b["x"], approximate="tanh")


_SILU = P("mul", _X, P("sigmoid", _X))


def silu(op: Op, rw: Rewriter) -> Value | None:
    # x * sigmoid(x) -> silu(x)
    b = match(_SILU, op.result, rw.producer) if op.kind == "mul" else None
    return rw.op("silu", b["x"]) if b is not None and b["x"].type == op.type else None


_RMS = P("mul", _X, P("rsqrt", P("add", P("reduce_mean", P("pow", _X, P.const(2.0)), name="mean"),
                                 P.any("eps"))))


def rmsnorm(op: Op, rw: Rewriter) -> Value | None:
    # x * rsqrt(mean(x^2) + eps) -> rmsnorm(x); cast(rmsnorm(cast(x, f32)), x.dtype) -> rmsnorm(x);
    # w * rmsnorm(x) -> rmsnorm(x, w)
    if op.kind == "cast":
        inner = rw.producer(op.operands[0])
        if inner is not None and inner.kind == "rmsnorm" and len(inner.operands) == 1:
            up = rw.producer(inner.operands[0])
            if up is not None and up.kind == "cast" and up.operands[0].type == op.type:
                return rw.op("rmsnorm", up.operands[0], eps=inner.attr["eps"])
        return None
    if op.kind != "mul":
        return None
    if "params" not in rw.memo:
        rw.memo["params"] = {p.name for p in rw.graph.params}
    params = rw.memo["params"]
    for w, y in (op.operands, op.operands[::-1]):
        norm = rw.producer(y)
        if (norm is not None and norm.kind == "rmsnorm" and len(norm.operands) == 1 and y.type == op.type
                and w.name in params and w.type.shape == op.type.shape[-1:]):
            return rw.op("rmsnorm", norm.operands[0], w, eps=norm.attr["eps"])
    b = match(_RMS, op.result, rw.producer)
    if b is None or b["x"].type != op.type:
        return None
    mean = rw.producer(b["mean"])
    eps = scalar(rw.producer(b["eps"]))
    if eps is None or not mean.attr["keepdim"] or tuple(mean.attr["axes"]) != (op.type.rank - 1,):
        return None
    return rw.op("rmsnorm", b["x"], eps=eps)


_ROTARY = P("add", P("mul", _X, P.any("cos")),
             P("mul", P("concat", P("neg", P("slice", _X, name="x2")), P("slice", _X, name="x1"), name="rot"),
               P.any("sin")))


def rotary(op: Op, rw: Rewriter) -> Value | None:
    # x * cos + concat(-x[..., h:], x[..., :h]) * sin -> rotary(x, cos, sin)
    b = match(_ROTARY, op.result, rw.producer) if op.kind == "add" else None
    if b is None or b["x"].type != op.type:
        return None
    n, last = op.type.shape[-1], op.type.rank - 1
    x1, x2, cat = rw.producer(b["x1"]).attr, rw.producer(b["x2"]).attr, rw.producer(b["rot"]).attr
    halves = ((x1["axis"], x1["start"], x1["stop"], x1["step"]), (x2["axis"], x2["start"], x2["stop"], x2["step"]))
    if cat["axis"] != last or n % 2 or halves != ((last, 0, n // 2, 1), (last, n // 2, n, 1)):
        return None
    return rw.op("rotary", b["x"], b["cos"], b["sin"])


_REPEAT_KV = P("reshape", P("expand", P("reshape", P.any("kv"), name="one"), name="many"))


def _unrepeated(v: Value, rw: Rewriter) -> Value | None:
    # reshape(expand(reshape(kv [.., H, S, E] -> [.., H, 1, S, E]) -> [.., H, g, S, E]) -> [.., H g, S, E]) -> kv
    b = match(_REPEAT_KV, v, rw.producer)
    if b is None:
        return None
    kv, one, many = b["kv"].type.shape, b["one"].type.shape, b["many"].type.shape
    if len(kv) < 3 or one != kv[:-2] + (1,) + kv[-2:] or many[:-3] != kv[:-2] or many[-2:] != kv[-2:]:
        return None
    return b["kv"] if v.type.shape == kv[:-3] + (kv[-3] * many[-3],) + kv[-2:] else None


def grouped_attention(op: Op, rw: Rewriter) -> Value | None:
    # attention(q, repeat_kv(k), repeat_kv(v)) -> attention(q, k, v)
    if op.kind != "attention" or len(op.operands) != 3:
        return None
    q, k, v = op.operands
    k0, v0 = _unrepeated(k, rw), _unrepeated(v, rw)
    if k0 is None or v0 is None or k0.type.shape[:-1] != v0.type.shape[:-1]:
        return None
    return rw.op("attention", q, k0, v0, **op.attr)


PATTERNS = [cse, same_shape, reshape_chain, transpose_chain, linear_keeps_leading_axes, neutral_element,
            redundant_cast, gelu_tanh, silu, rmsnorm, rotary, grouped_attention]


def canonicalize(g: Graph) -> Graph:
    return rewrite(g, PATTERNS)[0]


@register
@dataclass(frozen=True)
class Canonicalize(Pass):
    name = "canonicalize"
    stage = GRAPH
    summary = ("CSE, reshape/transpose/cast folding, neutral elements, gelu_new -> gelu(tanh), silu, rmsnorm, rotary, "
               "grouped attention")

    def run(self, s: CompileState) -> CompileState:
        return replace(s, graph=canonicalize(s.graph))
