"""Read a torch-dialect module (as torch-mlir writes it) into our IR.

The module is walked with torch-mlir's MLIR Python bindings: operations in order, their
operands, result types and attributes. Each ``torch.aten.*`` op (or ``torch.operator
"torch.aten.*"`` for ops the dialect has no definition of) is matched to its ATen overload; its
operands are laid out by the overload's schema as the FX node's args and kwargs would be, and the
converter of ``aten.py`` does the rest, so both frontends produce the same IR. Ops whose operands
are all known at import time are folded with torch, as the torch.export frontend folds FX nodes.

Parameters are ``torch.vtensor.literal`` ops holding a ``dense_resource<NAME>``: the handle names
the parameter, and its data (if the file holds any) is never read. Dense literals are folded.

Two things are read from printed forms because the bindings expose no accessor for them: the
shape and dtype of a ``!torch.vtensor<[...],dtype>`` type, and the key of a ``dense_resource``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_mlir import ir
from torch_mlir.extras.fx_importer import (
    TORCH_DTYPE_TO_INT,
    TORCH_DTYPE_TO_MLIR_TYPE_ASM,
    TORCH_LAYOUT_TO_INT,
    TORCH_MEMORY_FORMAT_TO_INT,
)

from .. import limits as L
from ..errors import UnsupportedError, UsageError
from ..ir import GraphBuilder, TensorType, Value
from ..ir.graph import Graph
from ..ir.rewrite import dead_code_elimination
from ..safe_read import check_file
from .aten import CONVERTERS, IGNORED
from .dtypes import ir_dtype
from .importer import Const, ImporterBase, fold, is_dynamic

_DTYPE_OF_ASM = {v: k for k, v in TORCH_DTYPE_TO_MLIR_TYPE_ASM.items()}
# schema argument type -> how a torch.constant.int operand becomes the Python object torch expects
_ENUMS = {
    "ScalarType": {v: k for k, v in TORCH_DTYPE_TO_INT.items()},
    "Layout": {v: k for k, v in TORCH_LAYOUT_TO_INT.items()},
    "MemoryFormat": {v: k for k, v in TORCH_MEMORY_FORMAT_TO_INT.items()},
}
_SCALAR_CONSTANTS = ("torch.constant.int", "torch.constant.float", "torch.constant.bool", "torch.constant.str")


@dataclass(frozen=True)
class VTensor:
    shape: tuple[int, ...]
    dtype: torch.dtype


@functools.cache
def _vtensor(text: str) -> VTensor | None:
    """'!torch.vtensor<[1,16],si64>' -> VTensor((1, 16), torch.int64); None for other types."""
    if not text.startswith("!torch.vtensor<[") or not text.endswith(">"):
        return None
    dims, _, asm = text[len("!torch.vtensor<["):-1].partition("],")
    if "?" in dims:
        raise UnsupportedError(f"dynamic shape in {text} (export with static shapes)")
    if asm not in _DTYPE_OF_ASM:
        raise UnsupportedError(f"element type {asm} in {text}")
    return VTensor(tuple(int(d) for d in dims.split(",") if d), _DTYPE_OF_ASM[asm])


def vtensor(t: ir.Type) -> VTensor | None:
    return _vtensor(str(t))


def resource_key(attr: ir.Attribute) -> str:
    """The handle of 'dense_resource<KEY> : tensor<...>' (KEY may be a quoted string)."""
    text = str(attr)
    head = "dense_resource<"
    assert text.startswith(head), text
    if text[len(head)] == '"':
        return mlir_string(text, len(head))
    return text[len(head):text.index(">", len(head))]


_ESCAPES = {'"': b'"', "\\": b"\\", "n": b"\n", "t": b"\t"}


def mlir_string(text: str, start: int) -> str:
    """The value of the MLIR string literal that opens at ``text[start]`` (a '"'): MLIR escapes \\", \\\\, \\n,
    \\t and any byte as two hex digits (\\01), which JSON does not read. Bytes that are not UTF-8 are replaced."""
    out, i = bytearray(), start + 1
    while i < len(text):
        c = text[i]
        if c == '"':
            return out.decode("utf-8", errors="replace")
        if c != "\\":
            out += c.encode()
            i += 1
        elif text[i + 1:i + 2] in _ESCAPES:
            out += _ESCAPES[text[i + 1]]
            i += 2
        elif len(text[i + 1:i + 3]) == 2 and all(h in "0123456789abcdefABCDEF" for h in text[i + 1:i + 3]):
            out += bytes([int(text[i + 1:i + 3], 16)])
            i += 3
        else:
            raise UsageError(f"a bad escape in the string {text[start:i + 3][:80]!r}")
    raise UsageError(f"an unterminated string {text[start:start + 80]!r}")


def _is_resource(attr: ir.Attribute) -> bool:
    try:
        ir.DenseResourceElementsAttr(attr)  # the bindings' checked cast
        return True
    except ValueError:
        return False


def _downcast(loc: ir.Location) -> ir.Location:
    """The bindings hand out some locations (a diagnostic's) as plain Location: cast them."""
    if type(loc) is not ir.Location:
        return loc
    for kind in (ir.FileLineColLoc, ir.NameLoc, ir.CallSiteLoc, ir.FusedLoc):
        try:
            return kind(loc)
        except ValueError:
            pass
    return loc


def describe(loc: ir.Location) -> str:
    """A location as a person reads it: 'file.mlir:12:10', 'transformer.h.0 (model.py:80:0)'."""
    loc = _downcast(loc)
    if isinstance(loc, ir.FileLineColLoc):
        return f"{loc.filename}:{loc.start_line}:{loc.start_col}"
    if isinstance(loc, ir.NameLoc):
        child = describe(loc.child_loc)
        return loc.name_str if child == "<unknown>" else f"{loc.name_str} ({child})"
    if isinstance(loc, ir.CallSiteLoc):
        return describe(loc.callee)
    if isinstance(loc, ir.FusedLoc):
        return ", ".join(describe(x) for x in loc.locations)
    return "<unknown>"


def module_path(loc: ir.Location) -> str | None:
    """The nn.Module path a NameLoc carries (what the IR keeps as an op's loc), else None."""
    loc = _downcast(loc)
    return (loc.name_str or None) if isinstance(loc, ir.NameLoc) else None


def aten_name(mlir_name: str) -> str:
    """'torch.aten.add.Tensor' -> 'aten.add.Tensor', 'torch.aten.view' -> 'aten.view.default'."""
    parts = mlir_name.split(".")[1:]
    return ".".join(parts if len(parts) > 2 else parts + ["default"])


def overload(name: str) -> torch._ops.OpOverload | None:
    ns, op, ovl = name.split(".", 2)
    try:
        return getattr(getattr(getattr(torch.ops, ns), op), ovl)
    except (AttributeError, RuntimeError):
        return None


def _python_value(v: Any, jit_type) -> Any:
    """A constant operand as torch takes it for a schema argument of this type."""
    base = str(jit_type).removeprefix("Optional[").removesuffix("]")
    if isinstance(v, int) and not isinstance(v, bool) and base in _ENUMS:
        return _ENUMS[base][v]
    if isinstance(v, str) and base == "Device":
        try:
            return torch.device(v)
        except RuntimeError:
            raise UsageError(f"bad device string {v!r} in a constant of the .mlir file (torch knows e.g. "
                             "'cpu', 'meta', 'cuda:0')") from None
    return v


@dataclass(frozen=True)
class OpNode:
    """What the converters in aten.py read from ``imp.node``: the ATen name of the op."""

    target: str


class MlirImporter(ImporterBase):
    """Walks one ``func.func`` of a torch-dialect module; converters see the ImporterBase interface."""

    def __init__(self, func: ir.Operation):
        self.func = func
        self.b = GraphBuilder(_symbol(func.attributes["sym_name"].value))
        self.env: dict[ir.Value, Any] = {}
        self.strip, self.rename = "", {}
        self.loc: str | None = None
        self.node: OpNode | None = None
        self.mlir_op: ir.Operation | None = None
        self.params: dict[str, Value] = {}  # resource key -> IR parameter
        self.memo: dict = {}

    # -- what converters call, beyond ImporterBase's op() and tensor()
    def out_type(self) -> TensorType:
        results = list(self.mlir_op.results)
        t = vtensor(results[0].type) if len(results) == 1 else None
        if t is None:
            raise UnsupportedError(f"{self.where()}: its result is not a single tensor")
        return TensorType(t.shape, ir_dtype(t.dtype))

    def where(self) -> str:
        return f"{self.node.target} at {describe(self.mlir_op.location)}"

    # -- the walk
    def run(self) -> Graph:
        block = self.func.regions[0].blocks[0]
        for i, arg in enumerate(block.arguments):
            t = vtensor(arg.type)
            if t is None:
                raise UnsupportedError(f"function argument {i} of type {arg.type} (tensors are)")
            name = module_path(arg.location) or f"arg{i}"
            self.env[arg] = self.b.input(_symbol(name), TensorType(t.shape, ir_dtype(t.dtype)))
        outputs = []
        for op in block.operations:
            op = op.operation
            self.mlir_op, self.loc, self.node = op, module_path(op.location), OpNode(op.name)
            if op.name == "func.return":
                self.loc = None
                outputs = [self.tensor(self.env[v]) for v in op.operands]
            else:
                self.visit(op)
        return dead_code_elimination(self.b.output(*outputs))

    def visit(self, op: ir.Operation) -> None:
        name, results = op.name, list(op.results)
        if name in _SCALAR_CONSTANTS or name == "torch.constant.device":
            self.env[results[0]] = op.attributes["value"].value
        elif name == "torch.constant.none":
            self.env[results[0]] = None
        elif name in ("torch.prim.ListConstruct", "torch.prim.TupleConstruct"):
            self.env[results[0]] = [self.env[v] for v in op.operands]
        elif name in ("torch.prim.ListUnpack", "torch.prim.TupleUnpack"):
            seq = self.env[op.operands[0]]
            for i, r in enumerate(results):
                self.env[r] = Const(seq.value[i]) if isinstance(seq, Const) else seq[i]
        elif name == "torch.vtensor.literal":
            self.env[results[0]] = self.literal(op)
        elif name == "torch.operator":
            self.aten(op, op.attributes["name"].value)
        elif name.startswith("torch.aten.") or name.startswith("torch.prims.") or name.startswith("torch.prim."):
            self.aten(op, name)
        else:
            self.unsupported(name, "no ATen op of that name")

    def unsupported(self, name: str, why: str):
        raise UnsupportedError(f"torch dialect op {name} at {describe(self.mlir_op.location)} ({why})")

    def literal(self, op: ir.Operation) -> Any:
        attr = op.attributes["value"]
        t = vtensor(op.results[0].type)
        if t is None:
            self.unsupported(op.name, f"a literal of type {op.results[0].type} (value tensors are)")
        if _is_resource(attr):
            key = resource_key(attr)
            if key not in self.params:  # torch-mlir's frozen import repeats a literal at each use
                self.params[key] = self.b.param(_symbol(key), TensorType(t.shape, ir_dtype(t.dtype)))
            return self.params[key]
        if isinstance(attr, (ir.DenseIntElementsAttr, ir.DenseFPElementsAttr)):
            try:
                data = np.full(t.shape, attr.get_splat_value().value) if attr.is_splat else np.array(attr)
                return Const(torch.from_numpy(np.ascontiguousarray(data).reshape(t.shape)).to(t.dtype))
            except (ValueError, TypeError, RuntimeError):
                self.unsupported(op.name, f"a dense literal of type {attr.type} that NumPy cannot read")
        self.unsupported(op.name, f"a literal of attribute kind {type(attr).__name__}")

    def aten(self, op: ir.Operation, mlir_name: str) -> None:
        name = aten_name(mlir_name)
        self.node = OpNode(name)
        results = list(op.results)
        if name in IGNORED:
            for r in results:
                self.env[r] = None
            return
        target = overload(name)
        if target is None:
            self.unsupported(mlir_name, f"{name} is not an op of this PyTorch")
        schema = target._schema
        if len(schema.arguments) != len(op.operands):
            self.unsupported(mlir_name, f"{len(op.operands)} operands where {name} takes {len(schema.arguments)}")
        args, kwargs = [], {}
        for a, v in zip(schema.arguments, op.operands):
            x = _python_value(self.env[v], a.type)
            if a.kwarg_only:
                kwargs[a.name] = x
            else:
                args.append(x)
        if not is_dynamic(args) and not is_dynamic(list(kwargs.values())):
            convert = lambda: self.fold(target, results, args, kwargs)
        else:
            conv = CONVERTERS.get(name)
            if conv is None:
                self.unsupported(mlir_name, f"no converter for {name} in waferscale/frontend/aten.py")
            convert = lambda: conv(self, tuple(args), kwargs)
        try:
            out = convert()
        except (AssertionError, ValueError, TypeError, RuntimeError) as e:
            # operands or result types the op cannot have: a hand-written module that torch would not write
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise UsageError(f"{mlir_name} at {describe(op.location)} does not type-check: {first}") from e
        if len(results) == 1:
            self.env[results[0]] = out
        else:
            for i, r in enumerate(results):
                self.env[r] = out[i] if isinstance(out, (tuple, list)) else Const(out.value[i])

    def fold(self, target, results, args, kwargs) -> Const:
        t = vtensor(results[0].type) if len(results) == 1 else None
        return fold(target, args, kwargs, t.shape if t is not None else None, self.where())


def _symbol(name: str) -> str:
    """A name the IR's text form accepts (letters, digits, '_', '.', '-')."""
    return "".join(c if c.isalnum() or c in "_.-" else "_" for c in name) or "model"


def entry_function(m: ir.Module, source: str) -> ir.Operation:
    funcs = [op.operation for op in m.body.operations if op.operation.name == "func.func"]
    public = [f for f in funcs if "sym_visibility" not in f.attributes
              or f.attributes["sym_visibility"].value != "private"]
    if len(public) != 1:
        raise UsageError(f"{source}: expected one public func.func in the module, found {len(public)}")
    return public[0]


def import_module(m: ir.Module, source: str = "<module>") -> tuple[Graph, dict[str, str]]:
    """The IR graph of a torch-dialect module, and the resource key of each IR parameter."""
    imp = MlirImporter(entry_function(m, source))
    g = imp.run()
    kept = {p.name for p in g.params}
    return g, {p.name: key for key, p in imp.params.items() if p.name in kept}


def parse_file(path: str | Path, context: ir.Context) -> ir.Module:
    """Parse and verify a .mlir file; a malformed one is a one-line UsageError."""
    # A regular file within the bound, checked before MLIR opens it (a FIFO would hang its read); MLIR
    # reads the file at the size it has when opened.
    path = check_file(path, "torch-dialect .mlir file", L.MAX_MLIR_FILE_BYTES)
    try:
        m = ir.Module.parseFile(str(path), context=context)
        m.operation.verify()
    except ir.MLIRError as e:
        diags = e.error_diagnostics
        where = describe(diags[0].location) if diags else "<unknown>"
        where = str(path) if where == "<unknown>" else where
        what = " ".join((diags[0].message if diags else str(e)).split())
        raise UsageError(f"{where}: not a valid torch-dialect module: {what}") from None
    return m
