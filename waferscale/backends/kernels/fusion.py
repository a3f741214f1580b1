"""Fused regions on the mesh: which op of a ``fused`` body anchors the kernel, and what the ops
around it cost on the anchor's rectangle.

A fused body (made by ``passes/fuse.py``) is a prologue, an anchor and an epilogue:

- the anchor is the op that decides the decomposition: a matmul or linear (``matmul.py``) or an
  embedding (``embedding.py``);
- the prologue is a layernorm or an RMSNorm feeding the anchor's activation (with reshapes that
  keep the last axis); a GEMM folds it in (``matmul.py`` says how). A norm that feeds several GEMMs
  is in the body of each (``passes/fuse.py``);
- the epilogue is a chain of elementwise ops on the anchor's result (bias, GELU, residual add,
  scaling), run by the cores that finish each output: the last row of the GEMM's rectangle.

``Epilogue`` sums what the chain asks of those cores per output element: datapath cycles (the
one table of ``rowwise.ELEMENT_CYCLES``), FLOPs, per-feature weight vectors held there, and
activation streams (a residual arrives as large as the output).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import UnsupportedError
from ...ir import registry
from ...ir.graph import Graph, Op
from .base import ACT, CONST, PARAM
from .rowwise import element_cycles

ANCHORS = ("contraction", "gather")
NORMS = ("layernorm", "rmsnorm")  # the prologues a GEMM folds


@dataclass(frozen=True)
class Region:
    prologue: tuple[Op, ...]
    anchor: Op
    epilogue: tuple[Op, ...]

    @property
    def norm(self) -> Op | None:
        """The layernorm or RMSNorm of the prologue, if there is one."""
        return next((op for op in self.prologue if op.kind in NORMS), None)


def region(body: Graph) -> Region:
    for i, op in enumerate(body.ops):
        if registry.category(op.kind) in ANCHORS:
            return Region(tuple(body.ops[:i]), op, tuple(body.ops[i + 1:]))
    raise UnsupportedError(f"lowering a fused region (@{body.name}) with no matmul, linear or embedding to anchor it")


def sources(body: Graph, outer: tuple[str, ...]) -> dict[str, str]:
    """Where each value of the body comes from: its inputs as their operands do; the rest is made
    inside the kernel (ACT)."""
    out = {v.name: s for v, s in zip(body.inputs, outer)}
    out.update({op.result.name: ACT for op in body.ops})
    return out


@dataclass(frozen=True)
class Epilogue:
    kinds: tuple[str, ...]
    cycles_per_element: float  # datapath cycles per output element at the SIMD lane rate
    flops_per_element: float  # registry FLOPs per output element
    params: int  # per-feature weight vectors it reads (held beside the outputs)
    streams: int  # activations it reads, each as large as the output (a residual)

    @staticmethod
    def of(ops: tuple[Op, ...], src: dict[str, str], chain: str) -> Epilogue | None:
        """The epilogue of the ops applied, in order, to the value named ``chain``."""
        work = [op for op in ops if registry.category(op.kind) != "layout"]
        if not work:
            return None
        params = streams = 0
        flops = 0.0
        for op in ops:
            others = [x for x in op.operands if x.name != chain]
            chain = op.result.name
            if registry.category(op.kind) == "layout":
                continue
            flops += registry.flops(op.kind, [x.type for x in op.operands], op.type, op.attr) / max(op.type.numel, 1)
            for x in others:
                kind = src.get(x.name, CONST)
                params += kind == PARAM
                streams += kind == ACT
        return Epilogue(tuple(op.kind for op in work), sum(element_cycles(op.kind) for op in work), flops,
                        params, streams)


def apply_epilogue(ops: tuple[Op, ...], env: dict[str, np.ndarray], y: np.ndarray, chain: str,
                   col_blocks: list[slice]) -> np.ndarray:
    """The epilogue ops applied to y (the anchor's result, named ``chain``) one column block at a
    time, as the cores of the last row apply them to the outputs they finish."""
    if not ops:
        return y
    out_shape = ops[-1].type.shape
    blocks = []
    for c in col_blocks:
        local = {chain: y[..., c]}
        name = chain
        for op in ops:
            width = c.stop - c.start
            if op.kind == "reshape":  # keeps the last axis (the fuse pass checks), so it keeps the block
                val = local[name].reshape(tuple(op.attr["shape"][:-1]) + (width,))
            else:
                args = [local[x.name] if x.name == name else
                        np.broadcast_to(env[x.name], op.type.shape)[..., c] for x in op.operands]
                val = registry.evaluate(op.kind, args, op.attr)
            name = op.result.name
            local[name] = np.asarray(val).astype(op.type.np_dtype, copy=False)
        blocks.append(local[name])
    return np.concatenate(blocks, axis=-1).reshape(out_shape)
