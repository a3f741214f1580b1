"""sparsify: unstructured weight sparsity. Each chosen ``linear`` op's weight keeps ``density`` of
its elements; the rest become zeros that the mesh never stores, streams or multiplies
(``backends/sparse.py`` has the compressed format and the cost).

- A weight with data is pruned by magnitude: the ``round(density * size)`` largest ``|w|`` stay
  (ties to the earlier element). The pass zeroes the rest in the weights the compile carries, and
  keeps the mask beside the graph, so the cost is that of this very mask.
- A weight with no data (a model traced on the meta device) gets a seeded random mask of the same
  density, drawn when the mesh needs it (``backends/sparse.py``: drawn whole up to
  ``SPARSE_DRAW_LIMIT`` elements, in distribution beyond).

The op records ``density`` (the fraction kept) and ``mask_seed``, which the text form carries, so a
dump reloads sparse; its FLOPs then count the non-zeros' products. Which ops: ``ops`` (kinds;
``linear``, the ops with a weight operand), ``include`` and ``exclude`` (glob patterns on the op's
module path, separated by ``|``): by default every linear op but the tied ``lm_head``, as sparse
GPT training leaves the embeddings dense.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fnmatch import fnmatchcase

import numpy as np

from ..errors import UnsupportedError, UsageError
from ..ir.graph import Graph, WeightStore, make_attrs
from .base import GRAPH, CompileState, Pass, option, register

KINDS = ("linear",)


def magnitude_mask(w: np.ndarray, density: float) -> np.ndarray:
    """The ``round(density * w.size)`` largest magnitudes of ``w`` (at least one), ties to the earlier."""
    keep = max(1, round(density * w.size))
    order = np.argsort(-np.abs(w.astype(np.float32)).ravel(), kind="stable")
    mask = np.zeros(w.size, dtype=bool)
    mask[order[:keep]] = True
    return mask.reshape(w.shape)


def _patterns(text: str) -> list[str]:
    return [p.strip() for p in text.split("|") if p.strip()]


@register
@dataclass(frozen=True)
class Sparsify(Pass):
    name = "sparsify"
    stage = GRAPH
    summary = "prune linear weights to a density (by magnitude; a seeded random mask on the meta device)"
    density: float = option(1.0, "fraction of each chosen weight's elements kept, in (0, 1]")
    ops: str = option("linear", "op kinds whose weights become sparse, separated by '|' (linear)")
    include: str = option("*", "module paths to sparsify: glob patterns separated by '|'")
    exclude: str = option("lm_head", "module paths to leave dense: glob patterns separated by '|'")
    seed: int = option(0, "seed of the random masks of weights that have no data")

    def __post_init__(self):
        if not 0.0 < self.density <= 1.0:
            raise UsageError(f"sparsify density={self.density} must be in (0, 1]: the fraction of weights kept "
                             "(0.25 keeps a quarter)")
        for kind in _patterns(self.ops):
            if kind not in KINDS:
                raise UnsupportedError(f"not supported: sparsify ops={kind} (only the weights of "
                                       f"{', '.join(KINDS)} ops can be sparse)")
        if not _patterns(self.ops):
            raise UsageError("sparsify ops= names no op kind: write ops=linear")

    def chosen(self, g: Graph) -> list[int]:
        """Indices of the ops whose weight becomes sparse."""
        params = {p.name for p in g.params}
        kinds, inc, exc = set(_patterns(self.ops)), _patterns(self.include), _patterns(self.exclude)
        out = []
        for i, op in enumerate(g.ops):
            if op.kind not in kinds or len(op.operands) < 2 or op.operands[1].name not in params:
                continue
            where = g.loc(op.result) or op.result.name
            if any(fnmatchcase(where, p) for p in inc) and not any(fnmatchcase(where, p) for p in exc):
                out.append(i)
        return out

    def run(self, s: CompileState) -> CompileState:
        if self.density >= 1.0:
            return s
        g = s.graph
        idx = self.chosen(g)
        if not idx:
            raise UsageError(f"{self.spec()} chose no op of {g.name}: no {self.ops} op with a weight has a module "
                             f"path that include={self.include!r} takes and exclude={self.exclude!r} leaves")
        weights = WeightStore(s.weights) if s.weights is not None else None
        meta = {k: dict(v) for k, v in g.meta.items()}
        density: dict[str, float] = {}
        for i in idx:
            w = g.ops[i].operands[1].name
            if w in density:
                continue
            if weights is not None and w in weights:
                mask = magnitude_mask(np.asarray(weights[w]), self.density)
                weights[w] = np.where(mask, weights[w], 0).astype(weights[w].dtype, copy=False)
                meta.setdefault(w, {})["mask"] = mask
                density[w] = float(mask.mean())
            else:
                density[w] = self.density
        ops = list(g.ops)
        for i in idx:
            op = ops[i]
            attrs = dict(op.attr, density=density[op.operands[1].name], mask_seed=self.seed)
            ops[i] = replace(op, attrs=make_attrs(attrs))
        s.log(f"sparsify: {len(density)} weights of {len(idx)} ops kept at density {self.density}")
        return replace(s, graph=replace(g, ops=ops, meta=meta), weights=weights)
