"""One registry of op kinds. Each kind declares, in one place: its category, its operand count,
its attributes, its type rule, its FLOPs and bytes, its NumPy reference, and its backward rule
(for ``autodiff``: the gradients of its operands from the gradient of its result). Later stages keep
their own tables keyed by the same kind names (the mesh kernels of ``backends/kernels``), so a
new op is its declaration here plus one row in each table that concerns it.

The op families in ``ir/ops/`` register themselves when the ``waferscale.ir`` package is
imported, so every lookup below sees them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .graph import Graph
from .types import TensorType

REQUIRED = object()

# What an op is, for the stages that treat whole families alike: ``elementwise`` (one output
# element from the same element of each operand, after broadcasting), ``layout`` (moves or
# makes data without arithmetic: reshape, transpose, slice, constants), ``contraction``
# (matmul, linear), ``gather`` (embedding), ``normalization`` (layernorm, softmax over one axis),
# ``reduction``, ``attention``, ``loss``, ``fused`` (a region of other ops run as one), and ``state``
# (writes state that a graph reads as an input and hands on as an output: the KV cache).
CATEGORIES = ("elementwise", "layout", "contraction", "gather", "normalization", "reduction", "attention",
              "loss", "fused", "state")

# attribute kind -> predicate on the value
ATTR_KINDS: dict[str, Callable[[Any], bool]] = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "float?": lambda v: v is None or ATTR_KINDS["float"](v),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "ints": lambda v: isinstance(v, tuple) and all(ATTR_KINDS["int"](x) for x in v),
    "scalars": lambda v: isinstance(v, tuple) and all(isinstance(x, (int, float, bool)) for x in v),
    "graph": lambda v: isinstance(v, Graph),
}


@dataclass(frozen=True)
class Attr:
    kind: str
    default: Any = REQUIRED
    choices: tuple | None = None


Types = list[TensorType]


@dataclass(frozen=True)
class OpDef:
    kind: str
    category: str
    infer: Callable[[Types, dict], TensorType]
    reference: Callable[[list[np.ndarray], dict], np.ndarray]
    flops: Callable[[Types, TensorType, dict], int] = lambda ins, out, a: 0
    bytes_moved: Callable[[Types, TensorType, dict], tuple[int, int]] | None = None
    arity: tuple[int, int | None] = (1, 1)  # (min, max); max None means variadic
    attrs: dict[str, Attr] = field(default_factory=dict)
    doc: str = ""
    # backward(emit, op, dy) -> one gradient Value (or None: no gradient flows) per operand, built
    # with ``emit(kind, *operands, **attrs)``; None means the op has no rule (autodiff refuses it)
    backward: Callable | None = None

    def bytes(self, ins: Types, out: TensorType, attrs: dict) -> tuple[int, int]:
        """(bytes read, bytes written); by default every operand is read and the result written."""
        if self.bytes_moved is not None:
            return self.bytes_moved(ins, out, attrs)
        return sum(t.nbytes for t in ins), out.nbytes


OPS: dict[str, OpDef] = {}


def define(kind: str, category: str, infer, reference, **kw) -> OpDef:
    if kind in OPS:
        raise ValueError(f"op {kind!r} defined twice")
    if category not in CATEGORIES:
        raise ValueError(f"op {kind!r}: unknown category {category!r}")
    OPS[kind] = d = OpDef(kind, category, infer, reference, **kw)
    return d


def get(kind: str) -> OpDef:
    try:
        return OPS[kind]
    except KeyError:
        raise KeyError(f"unknown op kind {kind!r}") from None


def backward_rule(kind: str) -> Callable | None:
    return get(kind).backward


def known(kind: str) -> bool:
    return kind in OPS


def category(kind: str) -> str:
    return get(kind).category


def with_defaults(kind: str, attrs: dict) -> dict:
    """The attributes with every optional one that is absent filled with its default."""
    spec = get(kind).attrs
    out = {k: a.default for k, a in spec.items() if a.default is not REQUIRED}
    out.update(attrs)
    return out


def check_attrs(kind: str, attrs: dict) -> str | None:
    """None if the attributes are valid for the kind, else what is wrong."""
    spec = get(kind).attrs
    for name in attrs:
        if name not in spec:
            return f"unknown attribute {name!r} (allowed: {', '.join(spec) or 'none'})"
    for name, a in spec.items():
        if name not in attrs:
            if a.default is REQUIRED:
                return f"missing required attribute {name!r}"
            continue
        v = attrs[name]
        if not ATTR_KINDS[a.kind](v):
            return f"attribute {name}={v!r} is not of kind {a.kind}"
        if a.choices is not None and v not in a.choices:
            return f"attribute {name}={v!r} is not one of {', '.join(map(repr, a.choices))}"
    return None


def check_arity(kind: str, n: int) -> str | None:
    lo, hi = get(kind).arity
    if n < lo or (hi is not None and n > hi):
        want = f"{lo}" if lo == hi else f"{lo} to {hi}" if hi is not None else f"at least {lo}"
        return f"takes {want} operands, got {n}"
    return None


def infer_type(kind: str, ins: Types, attrs: dict) -> TensorType:
    """The result type of an op; raises ValueError saying which rule the operands break."""
    d = get(kind)
    for problem in (check_arity(kind, len(ins)), check_attrs(kind, attrs)):
        if problem:
            raise ValueError(f"{kind}: {problem}")
    return d.infer(ins, with_defaults(kind, attrs))


def evaluate(kind: str, args: list[np.ndarray], attrs: dict) -> np.ndarray:
    return get(kind).reference(args, with_defaults(kind, attrs))


def flops(kind: str, ins: Types, out: TensorType, attrs: dict) -> int:
    return int(get(kind).flops(ins, out, with_defaults(kind, attrs)))


def bytes_moved(kind: str, ins: Types, out: TensorType, attrs: dict) -> tuple[int, int]:
    return get(kind).bytes(ins, out, with_defaults(kind, attrs))

