"""Execute a graph with NumPy, one op at a time through the registry's reference rules."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import UsageError
from ..ir import registry
from ..ir.graph import Graph


def run(g: Graph, inputs: Mapping[str, np.ndarray], weights: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Outputs of the graph for the given inputs (by input name) and weights (by parameter name)."""
    env: dict[str, np.ndarray] = {}
    for v, source, what in [*((v, inputs, "input") for v in g.inputs),
                            *((v, weights, "parameter") for v in g.params)]:
        if v.name not in source:
            raise UsageError(f"no data for {what} {v}: pass it by name"
                             + (" (a model traced on the meta device has no weights)" if what == "parameter" else ""))
        x = np.asarray(source[v.name])
        if x.shape != v.type.shape:
            raise UsageError(f"{what} {v} has shape {list(x.shape)}, the graph wants {v.type}")
        env[v.name] = x.astype(v.type.np_dtype, copy=False)
    last_use = {x.name: i for i, op in enumerate(g.ops) for x in op.operands}
    keep = {v.name for v in g.outputs}
    for i, op in enumerate(g.ops):
        out = np.asarray(registry.evaluate(op.kind, [env[x.name] for x in op.operands], op.attr))
        if out.shape != op.type.shape:
            raise AssertionError(f"{op.kind} reference gave shape {out.shape}, the IR says {op.type}")
        env[op.result.name] = out.astype(op.type.np_dtype, copy=False)
        for x in op.operands:  # free activations as soon as their last reader has run
            if last_use.get(x.name) == i and x.name not in keep and x.name not in weights:
                env.pop(x.name, None)
    return [env[v.name] for v in g.outputs]
