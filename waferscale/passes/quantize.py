"""quantize: weights stored as int8, int4 or fp8 codes with f16 scales (``ir/ops/quant.py``).

Each chosen weight W (the weight operand of a ``linear`` op, a parameter that only linear ops read:
a head tied to the embedding stays as it is) becomes two parameters, its codes ``W`` (dtype ``i8``,
``i4`` or ``f8``, the same shape) and its scales ``W.scale`` (f16, one per output channel and group
of ``group`` elements along the contraction axis K; ``group=0``: one per output channel), and a
``dequantize`` op makes the weight the linear reads: ``w = q * scale``. The rounding is symmetric:

- int8 / int4: ``scale = max|w| / 127`` (``/ 7``) over the group, ``q = round(w / scale)``;
- fp8 (e4m3, 3 mantissa bits, largest 448): ``scale = max|w| / 448``, ``q`` = ``w / scale`` rounded
  to the nearest e4m3 value.

So an int8 weight is off by at most ``scale / 2 = max|w| / 254`` of its group, an int4 one by
``max|w| / 14``, an fp8 one by ``2^-4`` of its own magnitude (a relative half-step of 3 mantissa
bits), plus the f16 rounding of the scale (``2^-11`` relative). A weight with data is rounded here
(the weights the compile carries hold the codes and the scales); a meta-device weight only changes
type. The bytes follow the types: codes at 1 byte (int8, fp8) or half a byte (int4) each.

``kv=fp8`` (a generation step after ``kv-cache``): the KV caches are held as fp8 e4m3 with no scale,
each appended row cast to it (``fp8_caches``). ``kv=int8``: each KV cache becomes its int8 codes and a
cache of one f16 scale per row (per token and head, ``max|row| / 127``), both written as rows are appended
and read by the attention as ``code * scale`` (``int8_caches``; ``ir/ops/cache.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..errors import UnsupportedError, UsageError
from ..ir.graph import Graph, Op, Value, WeightStore, fresh_name, make_attrs
from ..ir.ops.cache import cache_inputs
from ..ir.ops.quant import expand_scale, groups, round_e4m3
from ..ir.types import TensorType
from .base import GRAPH, CompileState, Pass, option, register
from .kv_int8 import int8_caches

# --weights name -> IR dtype of the codes, and the largest code
WEIGHT_DTYPES = {"int8": ("i8", 127.0), "int4": ("i4", 7.0), "fp8": ("f8", 448.0)}
def quantize_array(w: np.ndarray, weights: str, axis: int, group: int) -> tuple[np.ndarray, np.ndarray]:
    """(codes, f16 scales) of w: one scale per group of ``group`` elements along ``axis`` (0: the whole axis)."""
    _, qmax = WEIGHT_DTYPES[weights]
    w = np.asarray(w, dtype=np.float32)
    k = w.shape[axis]
    g = groups(k, group)
    size = k if group <= 0 else group
    moved = np.moveaxis(w, axis, -1)
    padded = np.zeros(moved.shape[:-1] + (g * size,), dtype=np.float32)
    padded[..., :k] = moved
    amax = np.abs(padded.reshape(moved.shape[:-1] + (g, size))).max(axis=-1)
    scale = (amax / qmax).astype(np.float16)
    scale[scale == 0] = 1.0  # an all-zero group: any scale; its codes are 0
    scale = np.moveaxis(scale, -1, axis)
    x = w / expand_scale(scale.astype(np.float32), axis, k, group)
    if weights == "fp8":
        q = round_e4m3(x).astype(np.float32)
    else:
        q = np.clip(np.rint(x), -qmax, qmax).astype(np.int8)
    return q, scale


@register
@dataclass(frozen=True)
class Quantize(Pass):
    name = "quantize"
    stage = GRAPH
    summary = "store linear weights as int8, int4 or fp8 codes with f16 scales, dequantised where they are read"
    weights: str = option("f16", "the weights' storage: f16 (unchanged), int8, int4 or fp8",
                          ("f16", "int8", "int4", "fp8"))
    group: int = option(0, "elements along K that share a scale (0: one scale per output channel)")
    kv: str = option("f16", "the KV caches' dtype: f16 (the model's), fp8 (e4m3, no scale) or int8 (a scale per row)",
                     ("f16", "fp8", "int8"))

    def __post_init__(self):
        if self.weights not in ("f16", *WEIGHT_DTYPES):
            raise UsageError(f"quantize weights={self.weights}: use f16, int8, int4 or fp8")
        if self.group < 0:
            raise UsageError(f"quantize group={self.group} must be >= 0 (0: one scale per output channel)")
        if self.kv not in ("f16", "fp8", "int8"):
            raise UsageError(f"quantize kv={self.kv}: use f16, fp8 or int8")

    def chosen(self, g: Graph) -> dict[str, Op]:
        """Weight parameter -> the first linear op reading it, for weights that only linear ops read
        (as their weight operand) and that are still floats."""
        params = {p.name: p for p in g.params}
        first: dict[str, Op] = {}
        other: set[str] = set()
        for op in g.ops:
            for i, x in enumerate(op.operands):
                if x.name not in params:
                    continue
                if op.kind == "linear" and i == 1 and params[x.name].type.dtype in ("f16", "bf16", "f32"):
                    first.setdefault(x.name, op)
                else:
                    other.add(x.name)
        return {w: op for w, op in first.items() if w not in other}

    def run(self, s: CompileState) -> CompileState:
        if self.kv == "fp8":
            s = replace(s, graph=fp8_caches(s.graph))
            s.log("quantize: KV caches held as fp8 (e4m3)")
        if self.kv == "int8":
            s = replace(s, graph=int8_caches(s.graph))
            s.log("quantize: KV caches held as int8 with an f16 scale per row")
        if self.weights == "f16":
            return s
        g = s.graph
        chosen = self.chosen(g)
        if not chosen:
            raise UnsupportedError(f"{self.spec()} on {g.name}: no linear op reads a float weight "
                                   "parameter of its own to quantise")
        dtype, _ = WEIGHT_DTYPES[self.weights]
        names = {v.name for v in g.values()}
        store = WeightStore(s.weights) if s.weights is not None else None
        meta = {k: dict(v) for k, v in g.meta.items()}
        params: list[Value] = []
        dq: dict[str, Op] = {}  # weight -> its dequantize op
        for p in g.params:
            if p.name not in chosen:
                params.append(p)
                continue
            lin = chosen[p.name]
            axis = 1 if lin.attr.get("transpose_w", False) else 0
            shape = list(p.type.shape)
            shape[axis] = groups(shape[axis], self.group)
            q = Value(p.name, TensorType(p.type.shape, dtype))
            scale = Value(fresh_name(f"{p.name}.scale", names), TensorType(tuple(shape), "f16"))
            w = Value(fresh_name(f"{p.name}.dq", names), p.type)
            params += [q, scale]
            dq[p.name] = Op("dequantize", (q, scale),
                            make_attrs({"axis": axis, "group": self.group, "dtype": p.type.dtype}), w)
            loc = g.loc(lin.result)
            if loc:
                meta.setdefault(w.name, {})["loc"] = loc.rsplit(".", 1)[0] if "." in loc else loc
            if store is not None and p.name in store:
                store[p.name], store[scale.name] = quantize_array(store[p.name], self.weights, axis, self.group)
        ops: list[Op] = []
        emitted: set[str] = set()
        for op in g.ops:
            operands = list(op.operands)
            for i, x in enumerate(operands):
                if x.name in dq:
                    if x.name not in emitted:
                        emitted.add(x.name)
                        ops.append(dq[x.name])
                    operands[i] = dq[x.name].result
            ops.append(replace(op, operands=tuple(operands)))
        s.log(f"quantize: {len(dq)} linear weights stored as {self.weights} "
              f"({'per-channel' if self.group == 0 else f'groups of {self.group}'} f16 scales)")
        return replace(s, graph=replace(g, params=params, ops=ops, meta=meta), weights=store)


def fp8_caches(g: Graph) -> Graph:
    """The graph with its KV caches (``ir/ops/cache.py``) held as fp8 e4m3: each cache input is ``f8``,
    and the rows each ``cache_update`` appends are cast to it first (rounded to e4m3, no scale: the
    keys and values of a model are well inside e4m3's +-448). The attention reads the fp8 cache."""
    caches = {v.name for v in cache_inputs(g)}
    if not caches:
        raise UnsupportedError(f"quantize kv=fp8 on {g.name}: it has no KV cache (a generation "
                               "step after kv-cache has)")
    names = {v.name for v in g.values()}
    new: dict[str, Value] = {v.name: Value(v.name, v.type.with_dtype("f8")) for v in g.inputs if v.name in caches}
    ops: list[Op] = []
    meta = {k: dict(v) for k, v in g.meta.items()}
    for op in g.ops:
        operands = [new.get(x.name, x) for x in op.operands]
        result = op.result
        if op.kind == "cache_update" and operands[0].type.dtype == "f8":
            rows = Value(fresh_name(f"{operands[1].name}.f8", names), operands[1].type.with_dtype("f8"))
            ops.append(Op("cast", (operands[1],), make_attrs({"dtype": "f8"}), rows))
            loc = g.loc(op.result)
            if loc:
                meta.setdefault(rows.name, {})["loc"] = loc
            operands[1] = rows
            result = new[op.result.name] = Value(op.result.name, op.result.type.with_dtype("f8"))
        ops.append(replace(op, operands=tuple(operands), result=result))
    return replace(g, inputs=[new.get(v.name, v) for v in g.inputs], ops=ops,
                   outputs=[new.get(v.name, v) for v in g.outputs], meta=meta)
