"""What both importers share: the constants known at import time, how an op on them is folded
with torch, and how converters build IR ops at the current node's location.

A node whose inputs are all known at import time (position ids, the causal mask transformers
builds) is folded: run with torch on the CPU and kept as a ``Const``. An elementwise op over
tensors that repeat along an axis (a stride-0 axis, as ``expand`` makes, or size 1) is run on one
copy and expanded back, and a folded tensor that repeats along its leading (batch or head) axes
is kept as one copy expanded: so the causal mask of a batch of 1,024 sequences of 2,048 tokens
takes the memory of one [2048, 2048] mask, not four billion elements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import UnsupportedError
from ..ir import GraphBuilder, TensorType, Value
from .dtypes import ir_dtype

# A folded constant larger than this many elements is refused (a guard against folding a
# weight-sized computation at import time).
MAX_FOLDED_ELEMENTS = 1 << 26
# A constant with at most this many elements may be written into the IR as a literal.
MAX_LITERAL_ELEMENTS = 4096


@dataclass(frozen=True)
class Const:
    """A value known at import time: a CPU tensor, or a Python scalar. ``node`` is the op that
    folded it (None for a buffer or a literal), so that a tensor too large to write into the IR
    can be computed in the graph from its smaller ingredients instead (``ImporterBase.unfold``)."""

    value: Any
    node: Any = field(default=None, compare=False)


def is_dynamic(x: Any) -> bool:
    if isinstance(x, Value):
        return True
    if isinstance(x, (list, tuple)):
        return any(is_dynamic(y) for y in x)
    return False


def _iota_axis(v: torch.Tensor) -> int | None:
    """The axis along which an integer tensor counts 0, 1, 2, ... (and is constant across the
    others), or None."""
    if v.is_floating_point() or v.dtype == torch.bool or v.dim() == 0 or v.numel() < 2:
        return None
    for axis in range(v.dim()):
        n = v.shape[axis]
        if n < 2:
            continue
        ramp = torch.arange(n, dtype=v.dtype).reshape([-1 if i == axis else 1 for i in range(v.dim())])
        if torch.equal(v, ramp.expand(v.shape)):
            return axis
    return None


def node_name(target: Any) -> str:
    """'aten.view.default' for an OpOverload, the function name otherwise."""
    if isinstance(target, torch._ops.OpOverload):
        return str(target)
    return getattr(target, "__name__", str(target))


def folding_arg(x):
    """An argument of an op folded at import time: constants as their values, devices as the CPU."""
    if isinstance(x, Const):
        return x.value
    if isinstance(x, (list, tuple)):
        return type(x)(folding_arg(y) for y in x)
    return torch.device("cpu") if isinstance(x, torch.device) else x


# Ops with elementwise semantics that torch does not tag as pointwise.
_ELEMENTWISE = ("aten.__and__.", "aten.__or__.", "aten.to.", "aten._to_copy.", "aten.type_as.")


def _elementwise(target: Any) -> bool:
    if isinstance(target, torch._ops.OpOverload) and torch.Tag.pointwise in target.tags:
        return True
    return str(target).startswith(_ELEMENTWISE)


def _tensors(x: Any) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, (list, tuple)):
        return [t for y in x for t in _tensors(y)]
    if isinstance(x, dict):
        return [t for y in x.values() for t in _tensors(y)]
    return []


def _repeated_axes(tensors: list[torch.Tensor], shape: tuple[int, ...]) -> list[int]:
    """Axes of the result along which every tensor operand repeats (size 1 or stride 0)."""
    axes = []
    for d, size in enumerate(shape):
        if size > 1 and all((j := d - (len(shape) - t.dim())) < 0 or t.shape[j] == 1 or t.stride(j) == 0
                            for t in tensors):
            axes.append(d)
    return axes


def _narrow(x: Any, axes: list[int], rank: int) -> Any:
    if isinstance(x, torch.Tensor):
        for d in axes:
            j = d - (rank - x.dim())
            if j >= 0 and x.shape[j] > 1:
                x = x.narrow(j, 0, 1)
        return x
    if isinstance(x, (list, tuple)):
        return type(x)(_narrow(y, axes, rank) for y in x)
    return x


def compact(t: Any) -> Any:
    """t, or, if it repeats along a leading axis, one copy of it expanded (a stride-0 view)."""
    if not isinstance(t, torch.Tensor) or t.numel() <= MAX_LITERAL_ELEMENTS or t.dim() < 2:
        return t
    for d in range(max(t.dim() - 2, 1)):
        if t.shape[d] > 1 and t.stride(d) != 0:
            first = t.narrow(d, 0, 1)
            if torch.equal(t, first.expand(t.shape)):
                t = first.clone().expand(t.shape) if d == 0 else first.expand(t.shape)
    return t


def fold(target: Any, args: Any, kwargs: dict, shape: tuple[int, ...] | None, where: str, node: Any = None) -> Const:
    """target(*args, **kwargs) with torch on the CPU, for constant operands; shape is the result's
    (None when it is not one tensor). A result that would hold more than MAX_FOLDED_ELEMENTS
    elements in memory is refused (a view, such as expand, holds none of its own)."""
    args = folding_arg(args)
    kwargs = {k: folding_arg(v) for k, v in kwargs.items()}
    if "device" in kwargs:
        kwargs["device"] = torch.device("cpu")
    elementwise = _elementwise(target)
    axes = _repeated_axes(_tensors((args, kwargs)), shape) if shape is not None and elementwise else []
    view = getattr(target, "is_view", False) and not elementwise  # aliases its input: no new memory
    if shape is not None and not view and math.prod(shape) // math.prod(shape[d] for d in axes) > MAX_FOLDED_ELEMENTS:
        raise UnsupportedError(f"{where}: folding a constant of shape {list(shape)}")
    if axes:
        args, kwargs = _narrow(args, axes, len(shape)), {k: _narrow(v, axes, len(shape)) for k, v in kwargs.items()}
    with torch.no_grad():
        out = target(*args, **kwargs)
    if axes and isinstance(out, torch.Tensor):
        out = out.expand(shape)
    return Const(compact(out), node)


class ImporterBase:
    """The converters' view of an importer (``aten.py``): ``op`` builds an IR op at the current
    node's location, ``tensor`` turns a folded constant into an IR value, ``out_type`` and
    ``where`` describe the node being converted."""

    b: GraphBuilder
    loc: str | None = None
    memo: dict  # what converters remember across nodes (a mask's kind, checked once)

    def op(self, kind: str, *operands: Value, **attrs) -> Value:
        return self.b.op(kind, *operands, loc=self.loc, **attrs)

    def out_type(self) -> TensorType:
        raise NotImplementedError

    def where(self) -> str:
        raise NotImplementedError

    def unfold(self, c: Const) -> Value | None:
        """The ops that compute a folded constant too large for a literal, from its ingredients (rotary
        embeddings' cos and sin tables, from the frequencies and the positions), or None if it cannot."""
        return None

    def tensor(self, x: Any, like: Value | None = None) -> Value:
        """An IR value for x: itself, or a literal constant op for a folded scalar or small tensor."""
        if isinstance(x, Value):
            return x
        v = x.value if isinstance(x, Const) else x
        if isinstance(v, torch.Tensor):
            axis = _iota_axis(v)
            if axis is not None:
                return self.op("iota", shape=tuple(v.shape), axis=axis, dtype=ir_dtype(v.dtype))
            if v.numel() > MAX_LITERAL_ELEMENTS and (
                    computed := self.unfold(x) if isinstance(x, Const) else None) is not None:
                return computed
            if v.numel() > MAX_LITERAL_ELEMENTS:
                raise UnsupportedError(
                    f"{self.where()} uses a constant tensor of shape {list(v.shape)} computed at import "
                    f"time; only causal masks and constants of up to {MAX_LITERAL_ELEMENTS} elements are kept")
            dtype = ir_dtype(v.dtype)
            if like is not None and v.dim() == 0 and dtype != "bool":
                dtype = like.type.dtype
            flat = v.flatten().tolist()
            values = (flat[0],) if flat and all(f == flat[0] for f in flat) else tuple(flat)
            return self.op("constant", value=values, shape=tuple(v.shape), dtype=dtype)
        if isinstance(v, (bool, int, float)):
            dtype = like.type.dtype if like is not None else (
                "bool" if isinstance(v, bool) else "i64" if isinstance(v, int) else "f32")
            return self.op("constant", value=(v,), shape=(), dtype=dtype)
        raise UnsupportedError(f"{self.where()}: operand {v!r} is not a tensor")
