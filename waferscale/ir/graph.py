"""The dataflow graph: typed values, single-result ops in SSA order, inputs, parameters, outputs.

A graph holds no weight bytes: parameters are names with types, and their data (when there is
any) lives in a ``WeightStore`` beside the graph. Side data (source location, cost, placement)
lives in ``Graph.meta`` keyed by value name and never changes what the graph computes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .types import TensorType


@dataclass(frozen=True, slots=True)
class Value:
    name: str
    type: TensorType

    def __str__(self) -> str:
        return f"%{self.name}"


@dataclass(frozen=True, slots=True)
class Op:
    """``result = kind(operands) {attrs}``. Attribute values are ints, floats, bools, strings,
    None, tuples of those, or a graph (the body of a ``fused`` op)."""

    kind: str
    operands: tuple[Value, ...]
    attrs: tuple[tuple[str, Any], ...]
    result: Value

    @property
    def attr(self) -> dict[str, Any]:
        return dict(self.attrs)

    @property
    def type(self) -> TensorType:
        return self.result.type


def make_attrs(attrs: dict[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    """Attributes in a canonical order, lists frozen to tuples."""

    def freeze(v):
        return tuple(freeze(x) for x in v) if isinstance(v, (list, tuple)) else v

    return tuple(sorted((k, freeze(v)) for k, v in (attrs or {}).items()))


def fresh_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name1``, ``name2``, ... : the first not in ``taken``, which it joins (a pass adding
    values beside a graph's own)."""
    out, i = name, 1
    while out in taken:
        out, i = f"{name}{i}", i + 1
    taken.add(out)
    return out


@dataclass
class Graph:
    name: str
    inputs: list[Value] = field(default_factory=list)
    params: list[Value] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    outputs: list[Value] = field(default_factory=list)
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)

    def values(self) -> Iterator[Value]:
        yield from self.inputs
        yield from self.params
        for op in self.ops:
            yield op.result

    def op_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(op.kind for op in self.ops).items()))

    def loc(self, value: Value) -> str | None:
        return self.meta.get(value.name, {}).get("loc")


class WeightStore(dict[str, np.ndarray]):
    """Parameter data by parameter name, kept outside the graph (a meta-traced model has none)."""
