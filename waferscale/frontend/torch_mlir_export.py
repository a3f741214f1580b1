"""Export a PyTorch module to torch-mlir's torch dialect without a byte of weight data.

``torch_mlir.fx.export_and_import`` imports the ``torch.export`` program before any
decomposition (so the ATen ops are the ones the torch.export frontend sees), with three
changes made through torch-mlir's own extension points:

- a parameter (or a buffer on the meta device) becomes
  ``torch.vtensor.literal(dense_resource<NAME> : tensor<...>)``: a named resource handle with no
  blob, i.e. "data supplied elsewhere". NAME is the IR parameter name (tied weights take the name
  PyTorch lists first, the ``model.`` prefix of the wrapper is stripped). These literals are
  placed at the top of the function in the order of the program's signature, so the module
  reads like a parameter list and the IR parameters come out in the torch.export order;
- a real buffer or constant becomes an inline ``dense<...>`` literal, which the reader folds;
- every op's location is ``loc("module.path"("file.py":line:0))``: the nn.Module path that the
  IR keeps as its ``loc``, around the innermost source line torch recorded; the function's
  arguments carry their names as locations too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.export.graph_signature import InputKind
from torch_mlir import ir
from torch_mlir.dialects import torch as torch_d
from torch_mlir.extras.fx_importer import (
    TORCH_DTYPE_TO_MLIR_TYPE,
    TORCH_DTYPE_TO_MLIR_TYPE_ASM,
    TORCH_DTYPE_TO_NPY_TYPE,
    ContextCache,
    FxImporter,
    FxImporterHooks,
    create_mlir_tensor_type,
)
from torch_mlir.fx import export_and_import

from ..errors import UnsupportedError, UsageError, WaferError


def new_context() -> ir.Context:
    """An MLIR context with the torch dialect registered."""
    ctx = ir.Context()
    torch_d.register_dialect(ctx)
    return ctx


class _ModulePathLocations(ContextCache):
    """Locations that name the nn.Module an op comes from (torch-mlir's own keep only file:line)."""

    def __init__(self, context: ir.Context, strip: str, **kw):
        super().__init__(context, **kw)
        self.strip = strip

    def get_node_location(self, node: torch.fx.Node) -> ir.Location:
        loc = super().get_node_location(node) or ir.Location.unknown(self._c)
        if isinstance(loc, ir.CallSiteLoc):
            loc = loc.callee  # the innermost frame: the line in the model's source
        stack = node.meta.get("nn_module_stack")
        path = list(stack.values())[-1][0] if stack else ""
        if self.strip and path.startswith(self.strip):
            path = path[len(self.strip):]
        return ir.Location.name(path, childLoc=loc, context=self._c) if path else loc


class _Importer(FxImporter):
    def __init__(self, context: ir.Context, hooks: FxImporterHooks, strip: str):
        super().__init__(context=context, hooks=hooks)
        # torch-mlir has no hook for locations: swap in the cache that makes them (pinned version)
        self._cc = _ModulePathLocations(self._c, strip, py_attr_tracker=self._py_attr_tracker)


def _inline_literal(t: torch.Tensor) -> ir.Value:
    """torch.vtensor.literal(dense<...>): a real constant, small, which the reader folds."""
    if t.dtype not in TORCH_DTYPE_TO_NPY_TYPE:
        raise UnsupportedError(f"a constant tensor of dtype {t.dtype}")
    t = t.detach().cpu()
    array = (t.float() if t.dtype == torch.bfloat16 else t).numpy().astype(TORCH_DTYPE_TO_NPY_TYPE[t.dtype])
    attr = ir.DenseElementsAttr.get(array, type=TORCH_DTYPE_TO_MLIR_TYPE[t.dtype](), shape=list(t.shape))
    vtensor_type = ir.Type.parse(f"!torch.vtensor<{list(t.shape)},{TORCH_DTYPE_TO_MLIR_TYPE_ASM[t.dtype]}>")
    return ir.Operation.create("torch.vtensor.literal", results=[vtensor_type], attributes={"value": attr}).result


class ExternalWeights(FxImporterHooks):
    """Importer hooks that keep weights out of the module (see the module docstring)."""

    def __init__(self, prog: torch.export.ExportedProgram, param_name: Callable[[str], str]):
        self.param_name = param_name
        self.order = {s.arg.name: i for i, s in enumerate(prog.graph_signature.input_specs)}
        self.placed: list[tuple[int, ir.Operation]] = []
        self.targets: dict[str, str] = {}  # IR parameter name -> state_dict key

    def resolve_input(self, gni, value: Any, info) -> ir.Value | None:
        spec = info.input_spec
        real = isinstance(value, torch.Tensor) and not value.is_meta
        if spec.kind == InputKind.BUFFER and real:
            return None  # fixed state: torch-mlir calls resolve_literal, which inlines it
        if spec.kind not in (InputKind.PARAMETER, InputKind.BUFFER):
            raise UnsupportedError(f"graph input {spec.arg.name} of kind {spec.kind.name}")
        name = self.param_name(spec.target)
        self.targets[name] = spec.target
        tensor_type = create_mlir_tensor_type(value)
        attr = ir.Attribute.parse(f"dense_resource<{_resource_key(name)}> : {tensor_type}")
        index = self.order[spec.arg.name]
        later = [op for i, op in self.placed if i > index]
        if later:
            ip = ir.InsertionPoint(later[0])
        elif not self.placed:
            ip = ir.InsertionPoint.at_block_begin(ir.InsertionPoint.current.block)
        else:
            ip = None  # at the end for now, moved after the last placed literal below
        op = ir.Operation.create("torch.vtensor.literal", results=[info.ir_type], attributes={"value": attr},
                                 loc=ir.Location.unknown(), ip=ip)
        if ip is None:
            op.move_after(self.placed[-1][1])
        self.placed.append((index, op))
        self.placed.sort(key=lambda p: p[0])
        return op.result

    def resolve_literal(self, gni, literal: Any, info) -> ir.Value | None:
        if not isinstance(literal, torch.Tensor):
            return None
        if literal.is_meta:
            raise UnsupportedError("a constant tensor on the meta device (its value is needed at import time)")
        return _inline_literal(literal)


def _resource_key(name: str) -> str:
    """A resource handle: a bare identifier where possible, else a quoted string."""
    bare = name[:1].isalpha() or name[:1] == "_"
    bare = bare and all(c.isalnum() or c in "_$." for c in name)
    return name if bare else '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class ExportCost:
    export_seconds: float  # torch.export
    import_seconds: float  # torch-mlir's FX importer, to the torch dialect
    import_rss_growth_bytes: int  # resident memory the import added (0 where unknown)


def rss_bytes() -> int:
    """The resident set size now (Linux); 0 where /proc is not there."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def export_to_torch_dialect(module: torch.nn.Module, example_inputs: tuple, func_name: str,
                            strip_prefix: str = "", rename: dict[str, str] | None = None
                            ) -> tuple[ir.Module, dict[str, str], ExportCost]:
    """(torch-dialect module, IR parameter name -> state_dict key, what it cost)."""
    rename = rename or {}

    def param_name(target: str) -> str:
        target = rename.get(target, target)
        return target[len(strip_prefix):] if target.startswith(strip_prefix) else target

    t0 = time.perf_counter()
    try:
        prog = torch.export.export(module.eval(), example_inputs, strict=False)
    except WaferError:
        raise
    except Exception as e:  # torch's own message is long: keep its first line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"torch.export could not trace {func_name}: {first}") from e
    t1, rss1 = time.perf_counter(), rss_bytes()
    user_inputs = [s.arg.name for s in prog.graph_signature.input_specs if s.kind == InputKind.USER_INPUT]
    ctx = new_context()
    hooks = ExternalWeights(prog, param_name)
    with ctx:
        m = export_and_import(prog, fx_importer=_Importer(ctx, hooks, strip_prefix), hooks=hooks,
                              decomposition_table={}, experimental_support_mutation=True, func_name=func_name)
        (func,) = [op for op in m.body.operations if op.operation.name == "func.func"]
        for arg, name in zip(func.regions[0].blocks[0].arguments, user_inputs):
            arg.set_location(ir.Location.name(name))
    t2 = time.perf_counter()
    return m, hooks.targets, ExportCost(t1 - t0, t2 - t1, max(0, rss_bytes() - rss1))
