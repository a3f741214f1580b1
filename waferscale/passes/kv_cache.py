"""kv-cache: a full-sequence graph becomes one step of generation, with its KV caches as state.

Every self-attention (``attention`` of queries and keys of one length, causal, or of one token)
becomes

    %k2 = cache_update %<attn>.k_cache, %k, %position_ids     (the step's keys written at their rows)
    %v2 = cache_update %<attn>.v_cache, %v, %position_ids
    %o  = cached_attention %q, %k2, %v2, %position_ids         (each query sees the rows up to its own)

(gpt-oss's ``sink_attention`` becomes ``cached_sink_attention %q, %k2, %v2, %position_ids, %sinks``
with its window: ``ir/ops/sinks.py``), with the two caches ``[batch, heads, capacity, d_head]`` new
graph inputs and ``%k2``, ``%v2`` new graph outputs after the model's own, in layer order: what one
run writes, the next run reads.
The positions are the graph input named ``position_ids`` (``i64[batch, tokens]``; the frontend
traces a step that way), or, when the graph has none, ``0 .. tokens-1`` (a prefill from the
start). The same pass makes the prefill graph (``tokens`` = the prompt) and the decode graph
(``tokens`` = 1) from the same model, so both share their weights and their caches.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import UsageError
from ..ir.graph import Graph, Op, Value, make_attrs
from ..ir.ops.cache import POSITIONS
from ..ir.registry import infer_type
from .base import GRAPH, CompileState, Pass, option, register


def _self_attention(op: Op) -> bool:
    if op.kind == "sink_attention":  # gpt-oss's (ir/ops/sinks.py): always causal self-attention
        return True
    if op.kind != "attention" or len(op.operands) != 3:
        return False
    q, k = op.operands[0].type, op.operands[1].type
    length = q.shape[-2] if q.rank >= 2 else -1
    return q.rank == 4 and k.rank == 4 and k.shape[-2] == length and (op.attr.get("causal") or length == 1)


def add_kv_cache(g: Graph, capacity: int) -> Graph:
    """The step graph of g with KV caches of ``capacity`` rows (module docstring)."""
    attns = [op for op in g.ops if _self_attention(op)]
    if not attns:
        raise UsageError(f"kv-cache: {g.name} has no causal self-attention to keep a KV cache for")
    q0 = attns[0].operands[0].type
    batch, tokens = q0.shape[0], q0.shape[2]
    if capacity < tokens:
        raise UsageError(f"kv-cache{{capacity={capacity}}}: the graph runs {tokens} tokens at once, more than the "
                         "cache holds")
    names = {v.name for v in g.values()}
    counter = [max((int(n) for n in names if n.isdigit()), default=-1) + 1]
    meta = dict(g.meta)
    inputs, outputs = list(g.inputs), list(g.outputs)

    def fresh(kind: str, operands: tuple[Value, ...], loc: str | None, **attrs) -> Op:
        frozen = make_attrs(attrs)
        result = Value(str(counter[0]), infer_type(kind, [x.type for x in operands], dict(frozen)))
        counter[0] += 1
        if loc:
            meta[result.name] = {"loc": loc}
        return Op(kind, operands, frozen, result)

    ops: list[Op] = []
    pos = next((v for v in g.inputs if v.name == POSITIONS), None)
    if pos is None:
        ops.append(fresh("iota", (), None, shape=[batch, tokens], axis=1, dtype="i64"))
        pos = ops[-1].result
    elif pos.type.shape != (batch, tokens):
        raise UsageError(f"kv-cache: input %{POSITIONS} is {pos.type}; the attention runs {batch} x {tokens} tokens")
    subst: dict[str, Value] = {}
    new_outputs = []
    for op in g.ops:
        op = Op(op.kind, tuple(subst.get(x.name, x) for x in op.operands), op.attrs, op.result)
        if not _self_attention(op):
            ops.append(op)
            continue
        q, k, v = op.operands[:3]
        if q.type.shape[0] != batch or q.type.shape[2] != tokens:
            raise UsageError(f"kv-cache: attention %{op.result.name} runs {q.type}, another {q0}")
        loc = g.loc(op.result)
        base = loc or f"attention.{op.result.name}"
        caches = []
        for x, what in ((k, "k_cache"), (v, "v_cache")):
            name = f"{base}.{what}"
            if name in names:
                raise UsageError(f"kv-cache: the graph already has a value %{name}; was the pass run twice?")
            cache = Value(name, x.type.with_shape(x.type.shape[:2] + (capacity,) + x.type.shape[3:]))
            names.add(name)
            inputs.append(cache)
            ops.append(fresh("cache_update", (cache, x, pos), loc))
            caches.append(ops[-1].result)
            new_outputs.append(ops[-1].result)
        scale = op.attr.get("scale")
        if op.kind == "sink_attention":  # its sinks and window kept
            attn = fresh("cached_sink_attention", (q, *caches, pos, op.operands[3]), loc, scale=scale,
                         window=op.attr.get("window", 0))
        else:
            attn = fresh("cached_attention", (q, *caches, pos), loc, scale=scale)
        ops.append(attn)
        subst[op.result.name] = attn.result
    outputs = [subst.get(v.name, v) for v in outputs] + new_outputs
    return Graph(g.name, inputs, list(g.params), ops, outputs, meta)


@register
@dataclass(frozen=True)
class KvCache(Pass):
    name = "kv-cache"
    stage = GRAPH
    summary = ("self-attention reads and appends a KV cache carried between runs as graph state (inputs and "
               "outputs): a prefill or a decode step")
    capacity: int = option(0, "rows of each cache (prompt plus new tokens); 0: the graph's own tokens")

    def run(self, s: CompileState) -> CompileState:
        if self.capacity < 0:
            raise UsageError(f"kv-cache{{capacity={self.capacity}}}: a capacity is at least 0")
        attn = next((op for op in s.graph.ops if _self_attention(op)), None)
        cap = self.capacity or (attn.operands[0].type.shape[2] if attn is not None else 1)
        return replace(s, graph=add_kv_cache(s.graph, cap))
