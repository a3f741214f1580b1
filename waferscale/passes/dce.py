"""dce: drop ops whose results nothing reads, and parameters that no op reads."""

from __future__ import annotations

from ..ir import Graph


def dead_code_elimination(g: Graph) -> Graph:
    live = {v.name for v in g.outputs}
    kept = []
    for op in reversed(g.ops):
        if op.result.name in live:
            kept.append(op)
            live.update(x.name for x in op.operands)
    return Graph(g.name, list(g.inputs), [p for p in g.params if p.name in live], kept[::-1],
                 list(g.outputs), {k: v for k, v in g.meta.items() if k in live})
