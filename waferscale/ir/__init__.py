"""The typed dataflow IR: types, graphs, the op registry, printer, parser, verifier, and the
rewriting helpers that passes are written with."""

from . import ops  # noqa: F401  (registers every op kind)
from .builder import GraphBuilder
from .graph import Graph, Op, Value, WeightStore
from .parser import parse
from .printer import print_graph
from .types import TensorType
from .verifier import verify

__all__ = ["Graph", "GraphBuilder", "Op", "Value", "WeightStore", "TensorType",
           "parse", "print_graph", "verify"]
