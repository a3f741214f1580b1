"""``quantize{kv=int8}``: the KV caches of a generation step held as int8 codes with one f16 scale per
row (per token and head), the state and ops of ``ir/ops/cache.py``'s int8 cache."""

from __future__ import annotations

from dataclasses import replace

from ..errors import UnsupportedError
from ..ir.graph import Graph, Op, Value, fresh_name, make_attrs
from ..ir.ops.cache import cache_inputs


def int8_caches(g: Graph) -> Graph:
    """The graph with each KV cache ``c`` (``f16[b, h, C, d]``) held as codes ``c : i8[b, h, C, d]`` and
    scales ``c.scale : f16[b, h, C, 1]``, two state inputs carried as outputs: each ``cache_update``
    becomes two (``rows="int8"`` writes the codes, ``rows="int8_scale"`` the scales), and each
    ``cached_attention`` reads the codes and takes the two scale caches as its operands 5 and 6."""
    caches = {v.name for v in cache_inputs(g)}
    if not caches:
        raise UnsupportedError(f"quantize kv=int8 on {g.name}: it has no KV cache (a generation "
                               "step after kv-cache has)")
    names = {v.name for v in g.values()}
    new: dict[str, Value] = {}
    scale_in: dict[str, Value] = {}  # cache input -> its scale cache input
    inputs: list[Value] = []
    for v in g.inputs:
        if v.name not in caches:
            inputs.append(v)
            continue
        new[v.name] = Value(v.name, v.type.with_dtype("i8"))
        scale_in[v.name] = Value(fresh_name(f"{v.name}.scale", names), type(v.type)(v.type.shape[:3] + (1,), "f16"))
        inputs += [new[v.name], scale_in[v.name]]
    scale_of: dict[str, Value] = {}  # updated cache (codes) -> its updated scales
    ops: list[Op] = []
    meta = {k: dict(v) for k, v in g.meta.items()}
    for op in g.ops:
        operands = [new.get(x.name, x) for x in op.operands]
        if op.kind == "cache_update" and op.operands[0].name in scale_in:
            sc = scale_in[op.operands[0].name]
            codes = new[op.result.name] = Value(op.result.name, op.result.type.with_dtype("i8"))
            scales = scale_of[codes.name] = Value(fresh_name(f"{op.result.name}.scale", names), sc.type)
            ops.append(Op("cache_update", tuple(operands), make_attrs({"rows": "int8"}), codes))
            ops.append(Op("cache_update", (sc, operands[1], operands[2]), make_attrs({"rows": "int8_scale"}), scales))
            loc = g.loc(op.result)
            if loc:
                meta.setdefault(scales.name, {})["loc"] = loc
            continue
        if op.kind == "cached_attention" and operands[1].name in scale_of and operands[2].name in scale_of:
            operands += [scale_of[operands[1].name], scale_of[operands[2].name]]
        elif op.kind == "cached_sink_attention":
            raise UnsupportedError(f"quantize kv=int8 on {g.name}: an int8 KV cache under gpt-oss's attention with "
                                   "sinks (cached_sink_attention reads no row scales; kv=fp8 does)")
        elif op.kind == "cached_attention" or any(x.name in scale_of for x in operands):
            raise UnsupportedError(f"quantize kv=int8 on {g.name}: a KV cache read by "
                                   f"{op.kind} %{op.result.name} other than as a cached_attention's k and v")
        ops.append(replace(op, operands=tuple(operands)))
    outputs: list[Value] = []
    for v in g.outputs:
        outputs.append(new.get(v.name, v))
        if v.name in scale_of:
            outputs.append(scale_of[v.name])
    return replace(g, inputs=inputs, ops=ops, outputs=outputs, meta=meta)
