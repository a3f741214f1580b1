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
    None, or tuples of those."""

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


class GraphBuilder:
    """Appends ops to a graph, checking types through the op registry as it goes."""

    def __init__(self, name: str):
        self.graph = Graph(name)
        self._names: set[str] = set()
        self._counter = 0

    def _fresh(self, name: str | None) -> str:
        if name is None:
            while str(self._counter) in self._names:
                self._counter += 1
            name = str(self._counter)
        if name in self._names:
            raise ValueError(f"value %{name} defined twice")
        self._names.add(name)
        return name

    def input(self, name: str, type: TensorType) -> Value:
        v = Value(self._fresh(name), type)
        self.graph.inputs.append(v)
        return v

    def param(self, name: str, type: TensorType) -> Value:
        v = Value(self._fresh(name), type)
        self.graph.params.append(v)
        return v

    def op(self, kind: str, *operands: Value, loc: str | None = None, name: str | None = None,
           **attrs) -> Value:
        from .registry import infer_type

        frozen = make_attrs(attrs)
        type = infer_type(kind, [v.type for v in operands], dict(frozen))
        result = Value(self._fresh(name), type)
        self.graph.ops.append(Op(kind, tuple(operands), frozen, result))
        if loc:
            self.graph.meta[result.name] = {"loc": loc}
        return result

    def output(self, *values: Value) -> Graph:
        self.graph.outputs.extend(values)
        return self.graph


class WeightStore(dict[str, np.ndarray]):
    """Parameter data by parameter name, kept outside the graph (a meta-traced model has none)."""
