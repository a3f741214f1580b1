"""The numbers of a placed program: every kernel computed the way its rectangle of cores would.

Each kernel computes its op tile by tile on its own rectangle (``Kernel.run`` in
``backends/kernels``): a GEMM's cores multiply their ``W[K_i, N_j]`` tiles and the partial sums
are added north to south down each column; an embedding's rows look up only the vocabulary rows
they hold; a normalization or softmax combines per-core partial statistics across the columns of
a row (all-reduces); attention keeps a partial softmax per core over its cyclic share of the keys
and combines the partials down each column (flash-decoding); a fused kernel does its prologue
and epilogue where its anchor does them. Layout ops run as in the interpreter. The result must
equal the interpreter's up to float rounding (tested).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..backends.program import Placement, Program
from ..ir import registry


def run_placed(prog: Program, placement: Placement, inputs: Mapping[str, np.ndarray],
               weights: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    g = prog.graph
    env: dict[str, np.ndarray] = {v.name: np.asarray(inputs[v.name]) for v in g.inputs}
    env.update({v.name: np.asarray(weights[v.name]).astype(v.type.np_dtype, copy=False) for v in g.params})
    kernel_of = {k.op.result.name: k for k in prog.kernels}
    for op in g.ops:
        args = [env[x.name] for x in op.operands]
        k = kernel_of.get(op.result.name)
        if k is None:  # a layout op
            y = registry.evaluate(op.kind, args, op.attr)
        else:
            r = placement.rects[k.id]
            y = k.model.run(op, args, r.rows, r.cols)
        y = np.asarray(y)
        if y.shape != op.type.shape:
            raise AssertionError(f"placed {op.kind} gave shape {y.shape}, the IR says {op.type}")
        env[op.result.name] = y.astype(op.type.np_dtype, copy=False)
    return [env[v.name] for v in g.outputs]
