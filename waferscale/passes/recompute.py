"""recompute: activation recomputation (checkpointing) per transformer block, after ``autodiff``.

A block's backward reads what its forward made inside it (the layernorms' outputs, q, k, v, the
MLP's hidden activations): kept, that is about 16 x d_model values per token per layer, more than
a wafer holds for a 13B model even at one sample of 2048 tokens. With this pass the backward of
block ``h.N`` first runs the block's forward again from the block's input, and reads those
copies; only the blocks' inputs (the residual stream, d_model values per token per layer) are
kept from the forward. The copies carry the backward's loc (``backward:...h.N...``, so they run
in the block's backward group) and ``meta["recompute"]``: model FLOPs leave them out
(docs/flops.md), the simulated time counts them. Weight-streaming training runs it; the numbers
do not change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ..ir.graph import Graph, Op, Value
from .autodiff import BACKWARD
from .base import GRAPH, CompileState, Pass, register

_BLOCK = re.compile(r"^(.*?\bh\.\d+)(?:[./]|$)")


def _block(loc: str | None) -> str | None:
    m = _BLOCK.match((loc or "").removeprefix(BACKWARD))
    return m.group(1) if m else None


def recompute(g: Graph) -> Graph:
    is_back = {op.result.name: (g.loc(op.result) or "").startswith(BACKWARD) for op in g.ops}
    forward: dict[str, list[Op]] = {}
    for op in g.ops:
        b = _block(g.loc(op.result))
        if b and not is_back[op.result.name]:
            forward.setdefault(b, []).append(op)
    inside = {b: {op.result.name for op in ops} for b, ops in forward.items()}
    names = {v.name for v in g.values()}
    meta = {k: dict(v) for k, v in g.meta.items()}
    copies: dict[str, dict[str, Value]] = {}
    out: list[Op] = []
    n = 0
    for op in g.ops:
        b = _block(g.loc(op.result))
        if b in forward and is_back[op.result.name]:
            if b not in copies:  # the block's forward again, from its input, before its first backward op
                clone: dict[str, Value] = {}
                for f in forward[b]:
                    while f"r{n}" in names:
                        n += 1
                    v = Value(f"r{n}", f.result.type)
                    names.add(v.name)
                    out.append(Op(f.kind, tuple(clone.get(x.name, x) for x in f.operands), f.attrs, v))
                    meta[v.name] = {"loc": BACKWARD + (g.loc(f.result) or f.result.name), "recompute": True}
                    clone[f.result.name] = v
                copies[b] = clone
            op = Op(op.kind, tuple(copies[b][x.name] if x.name in inside[b] else x for x in op.operands),
                    op.attrs, op.result)
        out.append(op)
    return Graph(g.name, list(g.inputs), list(g.params), out, list(g.outputs), meta)


@register
@dataclass(frozen=True)
class Recompute(Pass):
    name = "recompute"
    stage = GRAPH
    summary = "after autodiff: each block's backward recomputes its forward from the block's input"

    def run(self, s: CompileState) -> CompileState:
        return replace(s, graph=recompute(s.graph))
