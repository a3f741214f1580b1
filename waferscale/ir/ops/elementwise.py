"""Elementwise ops with NumPy broadcasting. References compute in NumPy; the interpreter stores
each result in the op's declared dtype.

FLOPs per output element (our counting convention, see docs/flops.md): 1 for arithmetic and for
each special function (exp, tanh, erf, ...), GELU as the operations of its formula, and 0 for
casts, comparisons, logic and select, which move data but do no floating-point arithmetic.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf as _erf

from ..registry import Attr, define
from ..types import DTYPES, FLOAT_DTYPES, TensorType, broadcast_shapes, promote
from .grad import unbroadcast
from .quant import round_e4m3

# Backward rules: (emit, op, dy) -> the gradient of each operand (None where none flows). Those of
# the binary ops sum a broadcast operand's gradient back to its shape.


def _const(emit, value, like):
    return emit("constant", value=(value,), shape=(), dtype=like.type.dtype)


def _binary_grads(emit, op, da, db):
    a, b = op.operands[-2:]
    return (unbroadcast(emit, da, a.type) if da is not None else None,
            unbroadcast(emit, db, b.type) if db is not None else None)


_BINARY_BACKWARD = {
    "add": lambda e, op, g: _binary_grads(e, op, g, g),  # d(a+b) = (g, g)
    "sub": lambda e, op, g: _binary_grads(e, op, g, e("neg", g)),  # d(a-b) = (g, -g)
    "mul": lambda e, op, g: _binary_grads(e, op, e("mul", g, op.operands[1]), e("mul", g, op.operands[0])),
    # d(a/b) = (g/b, -g*(a/b)/b)
    "div": lambda e, op, g: _binary_grads(e, op, e("div", g, op.operands[1]),
                                          e("neg", e("div", e("mul", g, op.result), op.operands[1]))),
    # d(a^b) = (g*b*a^(b-1), g*y*log(a)); the second is dropped unless b depends on a parameter
    "pow": lambda e, op, g: _binary_grads(
        e, op, e("mul", g, e("mul", op.operands[1], e("pow", op.operands[0],
                                                       e("sub", op.operands[1], _const(e, 1.0, op.operands[1]))))),
        e("mul", g, e("mul", op.result, e("log", op.operands[0])))),
    # the gradient goes to the operand that was chosen (to a on ties)
    "maximum": lambda e, op, g: _select_grads(e, op, e("ge", *op.operands[-2:]), g),
    "minimum": lambda e, op, g: _select_grads(e, op, e("le", *op.operands[-2:]), g),
}


def _select_grads(e, op, take_a, g):
    zero = _const(e, 0.0, g)
    return _binary_grads(e, op, e("where", take_a, g, zero), e("where", take_a, zero, g))


def _unary_backward(kind):
    def rule(e, op, g):
        x, y = op.operands[0], op.result
        if kind == "neg":
            return (e("neg", g),)
        if kind == "exp":  # g*y
            return (e("mul", g, y),)
        if kind == "log":  # g/x
            return (e("div", g, x),)
        if kind == "tanh":  # g*(1-y*y)
            return (e("mul", g, e("sub", _const(e, 1.0, y), e("mul", y, y))),)
        if kind == "sqrt":  # g/(2y)
            return (e("div", g, e("mul", y, _const(e, 2.0, y))),)
        if kind == "rsqrt":  # -g*y^3/2
            return (e("mul", g, e("mul", e("mul", y, e("mul", y, y)), _const(e, -0.5, y))),)
        if kind == "relu":  # g where x > 0
            return (e("where", e("gt", x, _const(e, 0, x)), g, _const(e, 0.0, g)),)
        if kind == "sigmoid":  # g*y*(1-y)
            return (e("mul", g, e("mul", y, e("sub", _const(e, 1.0, y), y))),)
        if kind == "silu":  # g*silu'(x), one op (grad.py)
            return (e("silu_grad", x, g),)
        if kind == "cos":  # -g*sin(x)
            return (e("neg", e("mul", g, e("sin", x))),)
        if kind == "sin":  # g*cos(x)
            return (e("mul", g, e("cos", x)),)
        if kind == "erf":  # g*2/sqrt(pi)*exp(-x^2)
            return (e("mul", g, e("mul", e("exp", e("neg", e("mul", x, x))),
                                  _const(e, float(2.0 / np.sqrt(np.pi)), x))),)
        raise AssertionError(kind)
    return rule


def _no_grad(emit, op, g):
    return (None,) * len(op.operands)


def _binary_infer(result_dtype=None):
    def infer(ins, a):
        shape = broadcast_shapes(*(t.shape for t in ins))
        return TensorType(shape, result_dtype or promote(*(t.dtype for t in ins)))
    return infer


def _per_element(n):
    return lambda ins, out, a: n * out.numel


def _div_infer(ins, a):
    t = _binary_infer()(ins, a)
    return t if t.dtype in FLOAT_DTYPES else t.with_dtype("f32")  # true division, as in torch


define("div", "elementwise", _div_infer, lambda args, a: np.true_divide(*args), flops=_per_element(1), arity=(2, 2),
       backward=_BINARY_BACKWARD["div"], doc="elementwise true division with broadcasting (integers give f32)")

for _kind, _fn, _n in [
    ("add", np.add, 1), ("sub", np.subtract, 1), ("mul", np.multiply, 1),
    ("pow", np.power, 1), ("maximum", np.maximum, 1), ("minimum", np.minimum, 1),
]:
    define(_kind, "elementwise", _binary_infer(), lambda args, a, _fn=_fn: _fn(*args), flops=_per_element(_n),
           arity=(2, 2), backward=_BINARY_BACKWARD.get(_kind), doc=f"elementwise {_fn.__name__} with broadcasting")

for _kind, _fn in [("eq", np.equal), ("ne", np.not_equal), ("lt", np.less), ("le", np.less_equal),
                   ("gt", np.greater), ("ge", np.greater_equal), ("and", np.logical_and),
                   ("or", np.logical_or)]:
    define(_kind, "elementwise", _binary_infer("bool"), lambda args, a, _fn=_fn: _fn(*args), arity=(2, 2),
           backward=_no_grad, doc=f"elementwise {_fn.__name__} giving bool")


def _gelu(x, approximate):
    x32 = x.astype(np.float32) if x.dtype == np.float16 else x
    if approximate == "tanh":
        y = 0.5 * x32 * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x32 + 0.044715 * x32 ** 3)))
    else:
        y = 0.5 * x32 * (1.0 + _erf(x32 / np.sqrt(2.0)))
    return y.astype(x.dtype, copy=False)


def _same(ins, a):
    return ins[0]


def _float_only(kind):
    def infer(ins, a):
        if ins[0].dtype not in FLOAT_DTYPES:
            raise ValueError(f"{kind} needs a float operand, got {ins[0]}")
        return ins[0]
    return infer


_UNARY = {
    "neg": (np.negative, 1), "exp": (np.exp, 1), "log": (np.log, 1), "tanh": (np.tanh, 1),
    "erf": (_erf, 1), "sqrt": (np.sqrt, 1),
    "rsqrt": (lambda x: 1.0 / np.sqrt(x), 1),
    "relu": (lambda x: np.maximum(x, 0), 1),
    "sigmoid": (lambda x: 1.0 / (1.0 + np.exp(-x)), 4),
    "cos": (np.cos, 1), "sin": (np.sin, 1),
    "silu": (lambda x: x / (1.0 + np.exp(-x)), 5),  # x * sigmoid(x): the sigmoid's 4 and the product
}
for _kind, (_fn, _n) in _UNARY.items():
    define(_kind, "elementwise", _same if _kind in ("neg", "relu") else _float_only(_kind),
           lambda args, a, _fn=_fn: _fn(args[0]), flops=_per_element(_n), backward=_unary_backward(_kind),
           doc=f"elementwise {_kind}")

define("gelu", "elementwise", _float_only("gelu"), lambda args, a: _gelu(args[0], a["approximate"]),
       flops=lambda ins, out, a: (8 if a["approximate"] == "tanh" else 5) * out.numel,
       attrs={"approximate": Attr("str", "none", ("none", "tanh"))},
       backward=lambda e, op, g: (e("gelu_grad", op.operands[0], g, approximate=op.attr["approximate"]),),
       doc="GELU: x * Phi(x) with the exact erf ('none') or the tanh approximation ('tanh')")

define("not", "elementwise", lambda ins, a: ins[0].with_dtype("bool"), lambda args, a: np.logical_not(args[0]),
       backward=_no_grad, doc="logical not")

define("cast", "elementwise", lambda ins, a: ins[0].with_dtype(a["dtype"]),
       lambda args, a: round_e4m3(args[0]).astype(np.float32) if a["dtype"] == "f8" else
       args[0].astype(DTYPES[a["dtype"]][0]),
       attrs={"dtype": Attr("str", choices=tuple(DTYPES))},
       backward=lambda e, op, g: (e("cast", g, dtype=op.operands[0].type.dtype)
                                  if op.operands[0].type.dtype in FLOAT_DTYPES else None,),
       doc="convert to another dtype (f8: round to the nearest fp8 e4m3 value, held in f32)")


def _where_infer(ins, a):
    if ins[0].dtype != "bool":
        raise ValueError(f"where needs a bool condition, got {ins[0]}")
    shape = broadcast_shapes(*(t.shape for t in ins))
    return TensorType(shape, promote(ins[1].dtype, ins[2].dtype))


define("where", "elementwise", _where_infer,
       lambda args, a: np.where(args[0], args[1], args[2]),
       arity=(3, 3), backward=lambda e, op, g: (None, *_binary_grads(
           e, op, e("where", op.operands[0], g, _const(e, 0.0, g)),
           e("where", op.operands[0], _const(e, 0.0, g), g))),
       doc="select: cond ? a : b, with broadcasting")
