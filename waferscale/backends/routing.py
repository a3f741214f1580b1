"""The routing distribution: which share of a MoE layer's routed tokens each expert receives on
the mesh (``--expert-routing``). The numbers an op computes come from its data (the router's
top-k); the time on the mesh needs a distribution, which the user sets:

- ``uniform`` (the default): every expert the same share, 1/E;
- ``zipf:S``: expert i (from 0) a share proportional to 1 / (i + 1)^S, S > 0 (expert 0 the busiest);
- a file of measured counts: one non-negative number per expert (a JSON list, or numbers separated
  by white space or commas), as many as the model has experts.

``with_routing`` writes the shares into every ``moe_experts`` op's ``load`` attribute, where the
mesh kernel (``kernels/moe.py``) reads them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import UsageError
from ..ir.graph import Graph, Op, make_attrs

HELP = "uniform, zipf:S (S > 0), or a file of measured token counts, one per expert"


def expert_shares(spec: str, experts: int) -> tuple[float, ...]:
    """Each expert's share of the routed tokens (they sum to 1)."""
    if spec == "uniform":
        counts = [1.0] * experts
    elif spec.startswith("zipf:"):
        try:
            s = float(spec[5:])
        except ValueError:
            s = -1.0
        if not 0 < s < 100:
            raise UsageError(f"--expert-routing {spec}: the Zipf exponent must be a number in (0, 100), e.g. zipf:1.2")
        counts = [1.0 / (i + 1) ** s for i in range(experts)]
    else:
        path = Path(spec)
        if not path.is_file():
            raise UsageError(f"--expert-routing {spec} is neither uniform, zipf:S nor a file ({HELP})")
        counts = _read_counts(path)
        if len(counts) != experts:
            raise UsageError(f"--expert-routing {spec} gives {len(counts)} counts; the model has {experts} experts "
                             "per layer (one count per expert)")
    total = sum(counts)
    return tuple(c / total for c in counts)


def check_spec(spec: str) -> None:
    """A distribution's spelling, checked before any work (the count of a file against the experts later)."""
    if spec == "uniform" or spec.startswith("zipf:"):
        expert_shares(spec, 1)
    elif not Path(spec).is_file():
        raise UsageError(f"--expert-routing {spec} is neither uniform, zipf:S nor a file ({HELP})")
    else:
        _read_counts(Path(spec))


def _read_counts(path: Path) -> list[float]:
    text = path.read_text(errors="replace").strip()
    try:
        data = json.loads(text)
        items = data if isinstance(data, list) else None
    except ValueError:
        items = [t for t in re.split(r"[\s,]+", text) if t]
    try:
        counts = [float(x) for x in items] if items else []
    except (TypeError, ValueError):
        counts = []
    if not counts or any(not c >= 0 or c == float("inf") for c in counts) or sum(counts) <= 0:
        raise UsageError(f"--expert-routing {path}: expected non-negative token counts, one per expert, not all zero "
                         "(a JSON list or numbers separated by spaces, commas or lines)")
    return counts


def experts_of(g: Graph) -> int | None:
    """Experts per layer of a MoE graph (None: no MoE op)."""
    return next((op.operands[2].type.shape[0] for op in g.ops if op.kind == "moe_experts"), None)


def with_routing(g: Graph, spec: str) -> Graph:
    """The graph with every ``moe_experts`` op's ``load`` set from the distribution ``spec``."""
    experts = experts_of(g)
    if experts is None:
        raise UsageError("--expert-routing is for mixture-of-experts models; this model has no experts")
    shares = tuple(round(s, 9) for s in expert_shares(spec, experts))
    ops = [Op(op.kind, op.operands, make_attrs(op.attr | {"load": shares}), op.result) if op.kind == "moe_experts"
           else op for op in g.ops]
    return Graph(g.name, list(g.inputs), list(g.params), ops, list(g.outputs), dict(g.meta))
