"""Lowering a graph to mesh kernels and the flows between them.

Every op that computes becomes a kernel, built by the rule that ``kernels/`` registers for its
kind or category. Layout ops (reshape, transpose, slice, expand, concat) and constants do no
work of their own: a reshape or transpose is the order in which a producer sends its wavelets, a
slice is the part of them a consumer asks for. They vanish into the flows, so a flow from the QKV
projection to attention carries only its slice of the QKV output.

A KV cache is state (``ir/ops/cache.py``): it lives in the SRAM of the attention kernel that reads
it, so a cache input has no flow from the system I/O, an updated cache output none to it, and a
``cache_update`` vanishes like a layout op: the flow into the attention carries the step's new
rows, which the kernel appends in place. A step's positions (the input ``position_ids``) are a
counter the kernels keep, not data: no flow either, and what is computed from them alone is a
table as below (rotary's cos and sin).

An op that computes from constants and positions alone (every operand made of constants and iotas:
the cos and sin tables of rotary embeddings) is no kernel either: it is a table of the positions
that the kernel reading it computes for its own tokens, and that kernel's cost says so (the rotary
kernel charges its cos and sin, ``kernels/rotary.py``). A kernel of another kind reading such a
table is refused, so no table's work goes uncounted.
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import UnsupportedError
from ..ir import registry
from ..ir.graph import Graph, Op
from ..ir.ops.cache import POSITIONS, cache_inputs, cache_outputs
from ..ir.ops.grad import MASK
from ..ir.types import DTYPES
from . import assumptions as A
from .kernels import LowerCtx, label, rule_for
from .kernels.base import ACT, CONST, PARAM
from .kernels.fusion import region
from .kernels.grads import Accumulate
from .kernels.matmul import Gemm
from .machine import Machine
from .program import IO, Flow, KernelNode, Program
from .sparse import SparseWeight, draw_mask


def _where(g: Graph, op: Op) -> str:
    loc = g.loc(op.result)
    return f"%{op.result.name} = {op.kind}" + (f" at {loc}" if loc else "")


def _source(origin: set) -> str:
    if not origin:
        return CONST
    return PARAM if all(kind == "param" for kind, _ in origin) else ACT


# Ops whose results are step-shaped (one per step, as a weight's gradient), not per token.
STEP_SHAPED = frozenset({"linear_grad_w", "embedding_grad"})


def _step_shaped(op: Op, operands_step: list[bool], sources: list[str]) -> bool:
    if op.kind in STEP_SHAPED:
        return True
    if op.kind == "reduce_sum":  # over every axis but the last: a bias's gradient
        src = op.operands[0].type
        if src.rank >= 2 and sorted(a % src.rank for a in op.attr["axes"]) == list(range(src.rank - 1)):
            return True
    acts = [st for st, so in zip(operands_step, sources) if so == ACT]
    return bool(acts) and all(acts)


# Kernels that compute the position tables they read (sin and cos) on their own cores.
TABLE_READERS = frozenset({"rotary", "rotary_grad"})


def lower(g: Graph, samples: int, tokens: int, position: int = 0, machine: Machine | None = None) -> Program:
    """Kernels and flows of a graph that processes ``samples`` samples of ``tokens`` tokens, the
    first at ``position`` of its sequence (a decode step reads a KV cache of that many rows), for
    ``machine`` where it is known (``LowerCtx.machine``; its kernels size their fabric queues by its
    ``queue_bytes_per_color``, else WSE-2's).

    A step graph (one with ``position_ids``) may be lowered for another shape than it was traced
    for (serving: a decode step of fewer sequences, a shorter prompt chunk): its per-token figures
    (a flow's bytes, a row-wise kernel's rows, FLOPs) divide its types by the tokens they hold, the
    positions' count, not by the run's; the run's shape sets the tokens that flow."""
    state = {v.name for v in cache_inputs(g)} | {POSITIONS}
    traced = next((v.type.numel for v in g.inputs if v.name == POSITIONS), samples * tokens)
    origins: dict[str, set] = {v.name: set() if v.name in state else {("in", v.name)} for v in g.inputs}
    rows: dict = {}  # value -> the type a flow of it carries where that is not its own: a cache update's new rows
    origins.update({v.name: {("param", v.name)} for v in g.params})
    params = {v.name: v for v in g.params}
    total = traced  # what per-token figures divide the graph's types by
    kernels: list[KernelNode] = []
    flows: list[Flow] = []
    names: dict[str, int] = {}
    step: set[str] = set()  # step-shaped values (STEP_SHAPED)
    tables: set[str] = set()  # values computed from constants and positions alone (and layouts of them)
    quantised: dict[str, Op] = {}  # weights made by a dequantize of parameters -> that op (passes/quantize.py)
    for op in g.ops:
        ins = [origins[x.name] for x in op.operands]
        sources = [_source(o) for o in ins]
        if _step_shaped(op, [x.name in step for x in op.operands], sources):
            step.add(op.result.name)
        if registry.category(op.kind) == "layout" or (ins and not any(ins)):
            origins[op.result.name] = set().union(*ins) if ins else set()
            if ins and not any(ins) and (registry.category(op.kind) != "layout"
                                         or any(x.name in tables for x in op.operands)):
                tables.add(op.result.name)
            continue
        if op.kind == "dequantize" and all(kind == "param" for o in ins for kind, _ in o):
            # a quantised weight: held as its codes and scales by the GEMM that reads it (kernels/matmul.py)
            origins[op.result.name] = set().union(*ins)
            quantised[op.result.name] = op
            continue
        if registry.category(op.kind) == "state":  # appended where the cache lives: its reader's SRAM
            # the positions reach the reader as its own operand; an int8 cache's row scales are computed
            # there from the rows its codes' update brings (ir/ops/cache.py), so they bring no flow of their own
            scales = op.attr.get("rows") == "int8_scale"
            origins[op.result.name] = set() if scales else set(ins[1])
            rows[op.result.name] = rows.get(op.operands[1].name, op.operands[1].type)
            continue
        rule = rule_for(op.kind)
        if rule is None:
            raise UnsupportedError(f"lowering {_where(g, op)} to the mesh (no mesh kernel for op kind {op.kind!r})")
        for x in op.operands:
            if x.name in tables and op.kind not in TABLE_READERS:
                raise UnsupportedError(f"lowering {_where(g, op)}: it reads a table computed from the positions "
                                       f"(%{x.name}), which only {', '.join(sorted(TABLE_READERS))} compute(s) "
                                       "where they read it")
        kid = len(kernels)
        per_step = any(x.name in step for x in op.operands) and op.result.name in step
        model = rule(op, LowerCtx(tokens, samples, tuple(sources), _where(g, op), per_step, position, machine,
                                   traced if traced != samples * tokens else 0))
        base = f"{g.loc(op.result) or op.result.name}/{label(op)}"
        names[base] = names.get(base, 0) + 1
        name = base if names[base] == 1 else f"{base}#{names[base]}"
        weights = sorted({n for o in ins for kind, n in o if kind == "param"})
        flops = registry.flops(op.kind, [x.type for x in op.operands], op.type, op.attr)
        nbytes = {w: params[w].type.nbytes for w in weights}
        sparse = sparse_weight(g, op, ins) if isinstance(model, (Gemm, Accumulate)) else None
        if sparse is not None:
            model = replace(model, sparse=sparse)
            elem = DTYPES[params[sparse.name].type.dtype][1]
            if isinstance(model, Accumulate):  # a sparse weight's gradient: the weight's indices, not its mask
                nbytes[MASK + sparse.name] = sparse.index_bytes(elem)
            else:
                nbytes[sparse.name] = sparse.stored_bytes(elem)
        if isinstance(model, Gemm) and sparse is None:
            model = quantised_gemm(model, op, quantised)
        if machine is not None and model.queue_bytes_per_color != machine.queue_bytes_per_color:
            model = replace(model, queue_bytes_per_color=machine.queue_bytes_per_color)
        kernels.append(KernelNode(kid, name, op, model, tuple(weights), sum(nbytes.values()), flops))
        for x, o in zip(op.operands, ins):
            t = rows.get(x.name, x.type)
            for src in sorted({n if kind == "k" else IO for kind, n in o if kind in ("k", "in")}):
                flows.append(Flow(src, kid, x.name, t.nbytes / total, t.numel / total))
        origins[op.result.name] = {("k", kid)}
    outputs = []
    kept = {v.name for v in cache_outputs(g)}  # stays in SRAM for the next run
    for v in (v for v in g.outputs if v.name not in kept):
        ks = sorted(n for kind, n in origins[v.name] if kind == "k")
        if not ks:
            raise UnsupportedError(f"graph output %{v.name} is computed by no kernel (a constant or an input)")
        outputs.extend(ks)
    return Program(g, tuple(kernels), tuple(flows), samples, tokens, tuple(dict.fromkeys(outputs)))


def quantised_gemm(model: Gemm, op: Op, quantised: dict[str, Op]) -> Gemm:
    """The GEMM with its weight's code bytes and scale group, if the weight it reads (the anchor's,
    of a fused region) is a dequantize of parameters."""
    w = op.operands[1].name
    if op.kind == "fused":
        body = op.attr["body"]
        inner = region(body).anchor.operands[1].name
        names = [v.name for v in body.inputs]
        w = op.operands[names.index(inner)].name if inner in names else ""
    dq = quantised.get(w)
    if dq is None:
        return model
    return replace(model, quant=DTYPES[dq.operands[0].type.dtype][1], group=dq.attr.get("group", 0))


def sparse_weight(g: Graph, op: Op, ins: list[set]) -> SparseWeight | None:
    """The sparse weight of a product (or of a fused region's anchor) that ``sparsify`` made sparse,
    in the kernel's orientation (K x N), with its mask: the pruned one the pass kept, or a seeded
    random one (``backends/sparse.py``). Of a weight gradient (``linear_grad_w``) with a mask
    operand (``mask.P``, ``passes/autodiff.py``): the weight P's."""
    anchor, operand = op, 1
    if op.kind == "fused":
        body = op.attr["body"]
        anchor = region(body).anchor
        operand = [v.name for v in body.inputs].index(anchor.operands[1].name)
    elif op.kind == "linear_grad_w":
        operand = 2
    a = registry.with_defaults(anchor.kind, anchor.attr)
    if a.get("density", 1.0) >= 1.0 or operand >= len(ins):
        return None
    names = [n for kind, n in ins[operand] if kind == "param"]
    if len(names) != 1:
        return None
    name = names[0].removeprefix(MASK) if op.kind == "linear_grad_w" else names[0]
    w = next(p for p in g.params if p.name == name).type
    k, n = w.shape[::-1] if a.get("transpose_w") else w.shape
    mask = g.meta.get(name, {}).get("mask")
    if mask is None and k * n <= A.SPARSE_DRAW_LIMIT:
        mask = draw_mask(*w.shape, a["density"], a["mask_seed"], name)
    if mask is not None:
        mask = mask.T if a.get("transpose_w") else mask
        return SparseWeight(name, k, n, float(mask.mean()), mask)
    return SparseWeight(name, k, n, a["density"])
