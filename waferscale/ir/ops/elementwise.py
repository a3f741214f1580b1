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
       doc="elementwise true division with broadcasting (integers give f32)")

for _kind, _fn, _n in [
    ("add", np.add, 1), ("sub", np.subtract, 1), ("mul", np.multiply, 1),
    ("pow", np.power, 1), ("maximum", np.maximum, 1), ("minimum", np.minimum, 1),
]:
    define(_kind, "elementwise", _binary_infer(), lambda args, a, _fn=_fn: _fn(*args), flops=_per_element(_n),
           arity=(2, 2), doc=f"elementwise {_fn.__name__} with broadcasting")

for _kind, _fn in [("eq", np.equal), ("ne", np.not_equal), ("lt", np.less), ("le", np.less_equal),
                   ("gt", np.greater), ("ge", np.greater_equal), ("and", np.logical_and),
                   ("or", np.logical_or)]:
    define(_kind, "elementwise", _binary_infer("bool"), lambda args, a, _fn=_fn: _fn(*args), arity=(2, 2),
           doc=f"elementwise {_fn.__name__} giving bool")


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
           lambda args, a, _fn=_fn: _fn(args[0]), flops=_per_element(_n), doc=f"elementwise {_kind}")

define("gelu", "elementwise", _float_only("gelu"), lambda args, a: _gelu(args[0], a["approximate"]),
       flops=lambda ins, out, a: (8 if a["approximate"] == "tanh" else 5) * out.numel,
       attrs={"approximate": Attr("str", "none", ("none", "tanh"))},
       doc="GELU: x * Phi(x) with the exact erf ('none') or the tanh approximation ('tanh')")

define("not", "elementwise", lambda ins, a: ins[0].with_dtype("bool"), lambda args, a: np.logical_not(args[0]),
       doc="logical not")

define("cast", "elementwise", lambda ins, a: ins[0].with_dtype(a["dtype"]),
       lambda args, a: args[0].astype(DTYPES[a["dtype"]][0]),
       attrs={"dtype": Attr("str", choices=tuple(DTYPES))}, doc="convert to another dtype")


def _where_infer(ins, a):
    if ins[0].dtype != "bool":
        raise ValueError(f"where needs a bool condition, got {ins[0]}")
    shape = broadcast_shapes(*(t.shape for t in ins))
    return TensorType(shape, promote(ins[1].dtype, ins[2].dtype))


define("where", "elementwise", _where_infer,
       lambda args, a: np.where(args[0], args[1], args[2]),
       arity=(3, 3), doc="select: cond ? a : b, with broadcasting")
