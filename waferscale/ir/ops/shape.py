"""Data-movement ops: reshape, transpose, slice, concat, expand, constant. None does arithmetic.

Reshape and expand are views: they read and write no bytes. Transpose, slice and concat copy.
"""

from __future__ import annotations

import math

import numpy as np

from ..registry import Attr, define
from ..types import DTYPES, TensorType
from .grad import unbroadcast

# Backward rules move the gradient back the way the data came: a reshape back, the inverse
# permutation, zeros around a slice (``pad``), a slice of a concat, a sum over what expand copied.


def _inverse(perm):
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


def _concat_backward(e, op, g):
    ax, start, grads = op.attr["axis"], 0, []
    for x in op.operands:
        stop = start + x.type.shape[ax]
        grads.append(e("slice", g, axis=ax, start=start, stop=stop, step=1))
        start = stop
    return tuple(grads)


def _views(ins, out, a):
    return 0, 0


def _reshape_infer(ins, a):
    x, shape = ins[0], a["shape"]
    if any(d < 0 for d in shape) or math.prod(shape) != x.numel:
        raise ValueError(f"reshape of {x} ({x.numel} elements) to {list(shape)} "
                         f"({math.prod(shape)} elements)")
    return x.with_shape(shape)


define("reshape", "layout", _reshape_infer, lambda args, a: args[0].reshape(a["shape"]),
       attrs={"shape": Attr("ints")}, bytes_moved=_views,
       backward=lambda e, op, g: (e("reshape", g, shape=op.operands[0].type.shape),),
       doc="same elements, new shape")


def _transpose_infer(ins, a):
    x, perm = ins[0], a["perm"]
    if sorted(perm) != list(range(x.rank)):
        raise ValueError(f"transpose perm {list(perm)} is not a permutation of {x.rank} dims")
    return x.with_shape(tuple(x.shape[p] for p in perm))


define("transpose", "layout", _transpose_infer, lambda args, a: np.transpose(args[0], a["perm"]),
       attrs={"perm": Attr("ints")},
       backward=lambda e, op, g: (e("transpose", g, perm=_inverse(op.attr["perm"])),),
       doc="permute dimensions")


def _slice_infer(ins, a):
    x = ins[0]
    ax = a["axis"]
    if not 0 <= ax < x.rank:
        raise ValueError(f"slice axis {ax} out of range for {x}")
    if a["step"] < 1:
        raise ValueError(f"slice step {a['step']} must be >= 1")
    n = len(range(*slice(a["start"], a["stop"], a["step"]).indices(x.shape[ax])))
    return x.with_shape(x.shape[:ax] + (n,) + x.shape[ax + 1:])


def _slice_ref(args, a):
    index = [slice(None)] * args[0].ndim
    index[a["axis"]] = slice(a["start"], a["stop"], a["step"])
    return args[0][tuple(index)]


define("slice", "layout", _slice_infer, _slice_ref,
       attrs={"axis": Attr("int"), "start": Attr("int"), "stop": Attr("int"), "step": Attr("int", 1)},
       backward=lambda e, op, g: (e("pad", g, axis=op.attr["axis"], start=op.attr["start"], stop=op.attr["stop"],
                                    step=op.attr["step"], size=op.operands[0].type.shape[op.attr["axis"]]),),
       doc="x[start:stop:step] along one axis (Python slice rules)")


def _concat_infer(ins, a):
    ax, first = a["axis"], ins[0]
    if not 0 <= ax < first.rank:
        raise ValueError(f"concat axis {ax} out of range for {first}")
    for t in ins[1:]:
        if t.rank != first.rank or t.dtype != first.dtype or any(
                d != e for i, (d, e) in enumerate(zip(t.shape, first.shape)) if i != ax):
            raise ValueError(f"concat along axis {ax} of {first} and {t}: other dims differ")
    return first.with_shape(first.shape[:ax] + (sum(t.shape[ax] for t in ins),) + first.shape[ax + 1:])


define("concat", "layout", _concat_infer, lambda args, a: np.concatenate(args, axis=a["axis"]),
       arity=(1, None), attrs={"axis": Attr("int")}, backward=_concat_backward, doc="join along one axis")


def _expand_infer(ins, a):
    x, shape = ins[0], a["shape"]
    if len(shape) < x.rank or any(d != 1 and d != s for d, s in zip(x.shape[::-1], shape[::-1])):
        raise ValueError(f"expand of {x} to {list(shape)}: sizes must match or be 1")
    return x.with_shape(shape)


define("expand", "layout", _expand_infer, lambda args, a: np.broadcast_to(args[0], a["shape"]),
       attrs={"shape": Attr("ints")}, bytes_moved=_views,
       backward=lambda e, op, g: (unbroadcast(e, g, op.operands[0].type),), doc="broadcast to a larger shape")


def _constant_infer(ins, a):
    t = TensorType(tuple(a["shape"]), a["dtype"])
    if len(a["value"]) not in (1, t.numel):
        raise ValueError(f"constant of type {t} needs 1 or {t.numel} values, got {len(a['value'])}")
    return t


def _constant_ref(args, a):
    v = np.asarray(a["value"], dtype=DTYPES[a["dtype"]][0])
    return np.full(a["shape"], v[0], v.dtype) if v.size == 1 else v.reshape(a["shape"])


define("constant", "layout", _constant_infer, _constant_ref, arity=(0, 0), backward=lambda e, op, g: (),
       attrs={"value": Attr("scalars"), "shape": Attr("ints"), "dtype": Attr("str", choices=tuple(DTYPES))},
       doc="a literal tensor: one value broadcast to the shape, or all of them in row-major order")


def _iota_infer(ins, a):
    t = TensorType(tuple(a["shape"]), a["dtype"])
    if not 0 <= a["axis"] < max(t.rank, 1) or t.rank == 0:
        raise ValueError(f"iota axis {a['axis']} out of range for {t}")
    return t


def _iota_ref(args, a):
    shape, axis = a["shape"], a["axis"]
    ramp = np.arange(shape[axis], dtype=DTYPES[a["dtype"]][0])
    return np.broadcast_to(ramp.reshape([-1 if i == axis else 1 for i in range(len(shape))]), shape)


define("iota", "layout", _iota_infer, _iota_ref, arity=(0, 0), backward=lambda e, op, g: (),
       attrs={"shape": Attr("ints"), "axis": Attr("int"), "dtype": Attr("str", choices=tuple(DTYPES))},
       doc="0, 1, 2, ... along one axis, repeated along the others (position ids)")
