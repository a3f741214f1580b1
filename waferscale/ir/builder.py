"""Build a graph op by op, each result typed by the registry's inference rule."""

from __future__ import annotations

from .graph import Graph, Op, Value, make_attrs
from .registry import infer_type
from .types import TensorType


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
