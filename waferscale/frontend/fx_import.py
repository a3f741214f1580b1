"""Lower a torch.export ``ExportedProgram`` to our IR.

Each FX node becomes IR ops through the converter table in ``aten.py``. A node whose inputs do
not depend on the graph's inputs (position ids, causal masks built from ``arange``) is folded:
it is evaluated with torch on the CPU at import time and kept as a constant (so are the values
of buffers, which are state that training does not change), which the
converters either turn into an attribute (a causal mask becomes ``attention {causal=true}``)
or into a small ``constant`` op. Weights never pass through here: parameters become typed
names, so a model traced on the meta device imports without a byte of weight data.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind

from ..errors import UnsupportedError
from ..ir import GraphBuilder, TensorType
from ..ir.graph import Graph
from ..ir.rewrite import dead_code_elimination
from .aten import CONVERTERS, IGNORED
from .dtypes import ir_dtype
from .importer import Const, ImporterBase, fold, is_dynamic, node_name


class Importer(ImporterBase):
    def __init__(self, ep: ExportedProgram, name: str, strip_prefix: str = "",
                 rename: dict[str, str] | None = None):
        self.ep = ep
        self.rename = rename or {}
        self.b = GraphBuilder(name)
        self.env: dict[str, Any] = {}
        self.strip = strip_prefix
        self.loc: str | None = None
        self.node: torch.fx.Node | None = None
        self.param_targets: dict[str, str] = {}  # IR parameter name -> state_dict key
        self.memo: dict = {}
        self.unfolded: dict[str, Any] = {}  # node name -> the IR value computing a large folded constant

    def out_type(self) -> TensorType:
        val = self.node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            raise UnsupportedError(f"{self.where()}: its result is not a single tensor")
        return TensorType(tuple(int(d) for d in val.shape), ir_dtype(val.dtype))

    def where(self) -> str:
        return f"{node_name(self.node.target)} at {self.loc or '<top>'}"

    # -- the walk
    def location(self, node: torch.fx.Node) -> str | None:
        stack = node.meta.get("nn_module_stack")
        if not stack:
            return None
        path = list(stack.values())[-1][0]
        if self.strip and path.startswith(self.strip):
            path = path[len(self.strip):]
        return path or None

    def placeholders(self) -> None:
        kinds = {s.arg.name: s for s in self.ep.graph_signature.input_specs}
        for node in self.ep.graph.nodes:
            if node.op != "placeholder":
                continue
            spec = kinds[node.name]
            val = node.meta["val"]
            if not isinstance(val, torch.Tensor):
                raise UnsupportedError(f"graph input {node.name} of type {type(val).__name__}")
            t = TensorType(tuple(int(d) for d in val.shape), ir_dtype(val.dtype))
            if spec.kind == InputKind.USER_INPUT:
                self.env[node.name] = self.b.input(node.name, t)
            elif spec.kind in (InputKind.BUFFER, InputKind.CONSTANT_TENSOR) and (
                    known := self._known(spec.target)) is not None:
                self.env[node.name] = Const(known)  # fixed state: folded like arange
            elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
                if not node.users:
                    continue  # e.g. one of two tied embeddings: the other name carries the weight
                target = self.rename.get(spec.target, spec.target)
                name = target[len(self.strip):] if target.startswith(self.strip) else target
                self.env[node.name] = self.b.param(name, t)
                self.param_targets[name] = spec.target
            else:
                raise UnsupportedError(f"graph input {node.name} of kind {spec.kind.name}")

    def _known(self, target: str) -> torch.Tensor | None:
        """The value of a buffer or constant tensor, if it is real (not on the meta device)."""
        t = self.ep.state_dict.get(target, self.ep.constants.get(target))
        return t if isinstance(t, torch.Tensor) and not t.is_meta else None

    def arg(self, a: Any) -> Any:
        if isinstance(a, torch.fx.Node):
            return self.env[a.name]
        if isinstance(a, (list, tuple)):
            return type(a)(self.arg(x) for x in a)
        return a

    def convert(self, node: torch.fx.Node) -> Any:
        self.node, self.loc = node, self.location(node)
        args, kwargs = self.arg(node.args), self.arg(node.kwargs)
        name = node_name(node.target)
        if node.target is operator.getitem:
            seq, i = args
            return seq.value[i] if isinstance(seq, Const) else seq[i]
        if name in IGNORED:
            return None
        if not is_dynamic(args) and not is_dynamic(list(kwargs.values())):
            val = node.meta.get("val")
            shape = tuple(int(d) for d in val.shape) if isinstance(val, torch.Tensor) else None
            return fold(node.target, args, kwargs, shape, self.where(), node)
        conv = CONVERTERS.get(name)
        if conv is None:
            raise UnsupportedError(f"ATen op {name} at {self.loc or '<top>'} "
                                   f"(no converter in waferscale/frontend/aten.py)")
        return conv(self, args, kwargs)

    def unfold(self, c: Const) -> Any:
        """A folded constant too large to be a literal, computed in the graph: its node converted with
        its own operands (which are literals, iotas or, recursively, computed the same way)."""
        node = c.node
        if node is None or CONVERTERS.get(node_name(node.target)) is None:
            return None
        if node.name not in self.unfolded:
            saved = self.node, self.loc
            self.node, self.loc = node, self.location(node)
            try:
                args, kwargs = self.arg(node.args), self.arg(node.kwargs)
                args = tuple(self.tensor(a) if isinstance(a, Const) and isinstance(a.value, torch.Tensor) else a
                             for a in args)
                out = CONVERTERS[node_name(node.target)](self, args, kwargs)
            finally:
                self.node, self.loc = saved
            self.unfolded[node.name] = out
        return self.unfolded[node.name]

    def run(self) -> Graph:
        self.placeholders()
        outputs = []
        for node in self.ep.graph.nodes:
            if node.op == "call_function":
                self.env[node.name] = self.convert(node)
            elif node.op == "output":
                self.node, self.loc = node, None
                flat = node.args[0] if isinstance(node.args[0], (list, tuple)) else [node.args[0]]
                outputs = [self.tensor(self.arg(x)) for x in flat]
            elif node.op != "placeholder":
                raise UnsupportedError(f"FX node kind {node.op} ({node.name})")
        return dead_code_elimination(self.b.output(*outputs))


def import_program(ep: ExportedProgram, name: str, strip_prefix: str = "",
                   rename: dict[str, str] | None = None) -> tuple[Graph, dict[str, str]]:
    """The IR graph of an exported program, and the state_dict key of each IR parameter.

    rename maps a state_dict key to the name the parameter should carry (tied weights take
    the name PyTorch lists first, e.g. transformer.wte.weight rather than lm_head.weight)."""
    imp = Importer(ep, name, strip_prefix, rename)
    g = imp.run()
    kept = {p.name for p in g.params}
    return g, {k: v for k, v in imp.param_targets.items() if k in kept}


