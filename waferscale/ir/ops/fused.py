"""``fused``: a region of ops that runs as one kernel, written out in full.

The op's ``body`` attribute is a graph of its own: one input per operand (of the operand's type),
no parameters, one output. The fused op means exactly what its body computes; the ``fuse`` pass
makes them, and the lowering turns each into one mesh kernel, so its intermediate values never
leave the cores that make them. In the text form the body is printed inline:

    %23 = fused %20, %w, %b, %3 {body=graph @linear.add(%20: f16[1,16,64], %w: f16[64,64], ...) {
        %21 = linear %20, %w, %b : f16[1,16,64] loc("transformer.h.0.attn.c_proj")
        %23 = add %21, %3 : f16[1,16,64] loc("transformer.h.0")
        return %23
      }} : f16[1,16,64] loc("transformer.h.0.attn.c_proj")

FLOPs are those of the body's ops. Bytes: each body op's reads, in the share of its operands that
come from outside the body, and the result written; what a fused kernel keeps on its cores
between its ops is not traffic.

A norm that feeds several GEMMs is folded into each (``passes/fuse.py``), so it is in several
bodies. The first of them counts its FLOPs; the others carry ``norm_copy=true`` and leave them out
(``counted_ops``), so that fusion does not change a model's FLOPs. Their reads of the norm's input
are counted in each: each kernel receives it.
"""

from __future__ import annotations

import numpy as np

from .. import registry
from ..registry import Attr, define
from ..types import TensorType


def _infer(ins: list[TensorType], a: dict) -> TensorType:
    body = a["body"]
    if body.params:
        raise ValueError(f"fused body @{body.name} declares parameters; its weights must be operands")
    if len(body.inputs) != len(ins):
        raise ValueError(f"fused body @{body.name} takes {len(body.inputs)} inputs, the op has {len(ins)} operands")
    for v, t in zip(body.inputs, ins):
        if v.type != t:
            raise ValueError(f"fused body @{body.name} input {v} is {v.type} but its operand is {t}")
    if len(body.outputs) != 1:
        raise ValueError(f"fused body @{body.name} must return one value, returns {len(body.outputs)}")
    return body.outputs[0].type


def evaluate_body(body, args: list[np.ndarray]) -> np.ndarray:
    """The body's output for the given inputs, one op at a time through the registry."""
    env = {v.name: np.asarray(x) for v, x in zip(body.inputs, args)}
    for op in body.ops:
        y = registry.evaluate(op.kind, [env[x.name] for x in op.operands], op.attr)
        env[op.result.name] = np.asarray(y).astype(op.type.np_dtype, copy=False)
    return env[body.outputs[0].name]


NORMS = ("layernorm", "rmsnorm")  # the prologues the fuse pass shares between GEMMs


def counted_ops(a: dict) -> list:
    """The body's ops whose FLOPs the fused op counts: all, less a norm another fused op counts."""
    ops = a["body"].ops
    return [op for op in ops if not (a.get("norm_copy", False) and op.kind in NORMS)]


def _flops(ins, out, a) -> int:
    return sum(registry.flops(op.kind, [x.type for x in op.operands], op.type, op.attr) for op in counted_ops(a))


def _bytes(ins, out, a) -> tuple[int, int]:
    body = a["body"]
    outside = {v.name for v in body.inputs}
    read = 0.0
    for op in body.ops:
        r, _ = registry.bytes_moved(op.kind, [x.type for x in op.operands], op.type, op.attr)
        total = sum(x.type.nbytes for x in op.operands)
        read += r * sum(x.type.nbytes for x in op.operands if x.name in outside) / total if total else 0
    return round(read), out.nbytes


define("fused", "fused", _infer, lambda args, a: evaluate_body(a["body"], args), flops=_flops,
       bytes_moved=_bytes, arity=(1, None), attrs={"body": Attr("graph"), "norm_copy": Attr("bool", False)},
       doc="the ops of its body graph run as one kernel; means exactly what the body computes")
