"""The typed dataflow IR: types, graphs, the op registry, printer, parser and verifier."""

from .graph import Graph, GraphBuilder, Op, Value, WeightStore
from .parser import parse
from .printer import print_graph
from .types import TensorType
from .verifier import verify

__all__ = ["Graph", "GraphBuilder", "Op", "Value", "WeightStore", "TensorType",
           "parse", "print_graph", "verify"]
