"""Mixture-of-experts on the mesh: expert parallelism.

``moe_experts`` is one kernel whose rectangle is cut, along its columns, into ``groups`` equal column
slices (``slicing``); expert e lives, weights resident, on slice ``e * groups // E`` (so a slice holds
``ceil(E / groups)`` experts at most). A forward pass or a prefill routes many more rows than there are
experts: ``min(E, cols)`` slices, one expert each. A decode step routes ``k`` rows per sequence: a few
wide slices (between 1 and k), so a routed row runs on a large share of the rectangle, not ``1/E`` of
it. Inside a slice an expert runs as the weight-stationary GEMM of ``gemm.py`` twice, gate and up
(K = d over the rows, N = 2f over the slice's columns), then down (K = f, N = d), on the same cores;
experts sharing a slice take turns.

Which tokens go where is data: on the mesh it is the routing distribution (``backends/routing.py``:
uniform by default, Zipf, or measured counts), carried by the op's ``load`` attribute as each
expert's share of the ``tokens x k`` routed rows. Expert e receives ``tokens * k * share[e]`` rows
(an expectation: fractional rows are costed as such), a slice is busy for its experts' rows times
their per-row step, and the kernel is as slow as its busiest slice: the most loaded expert's
region bounds the layer. Rows are whole on the mesh, so a chunk of c tokens is never faster than
``ceil(c k / slices)`` rows of one expert (a decode step's one token waits for a whole expert).
``experts_report`` says so per expert. When experts share a slice (a decode step), one token's k experts
may land on the same slice: the floor is then the expected busiest slice's rows of one token
(``collisions``), not one row.

The router's ``topk``, the ``moe_dispatch`` (each token sent to its k experts: k copies of its d
features leave the kernel that made it, and the flow to the experts kernel carries them) and the
``moe_combine`` (k weighted rows summed per token) are rowwise kernels (``rowwise.py``), their
numbers from the registry's references.

Assumptions (ours; docs/moe.md): an expert's slice is costed as an ordinary GEMM of the rows that
reach it, the activation and the gate product are left out of its step (a lower bound), and the
all-to-all of the dispatch is a flow of ``k d`` elements per token to the experts' rectangle,
not per slice.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import ceil

import numpy as np

from ...ir import registry
from ...ir.graph import Op
from ...ir.ops.moe import experts_flops_per_row
from ...ir.types import DTYPES
from ..blocks import block
from ..datapath import Datapath, accumulator_bytes
from ..gemm import element_cycles, fastest
from ..machine import Machine
from .base import Kernel, LowerCtx, Work, lowers
from .rowwise import Rowwise


@dataclass(frozen=True)
class Routing(Rowwise):
    """topk, moe_dispatch, moe_combine: rowwise costs, the registry's numbers. A token's k rows stay on its
    row (``moe_combine`` sums them there; no reduce across rows is modelled)."""

    spread_groups = False

    def run(self, op, args, rows, cols):
        return np.asarray(registry.evaluate(op.kind, args, op.attr))


@lowers("topk", "moe_dispatch", "moe_combine")
def lower_routing(op: Op, ctx: LowerCtx) -> Routing:
    src = op.operands[0].type
    t = op.type
    k = op.operands[1].type.shape[-1] if op.kind != "topk" else 1
    features = src.shape[-1] if op.kind != "moe_dispatch" else t.shape[-1]
    return Routing(tokens=ctx.tokens, dtype=src.dtype, elem=DTYPES[src.dtype][1], op=op.kind, features=features,
                   inputs=1, params=0, flops_per_token=ctx.flops_per_token(op), groups=k)


@lru_cache(maxsize=64)
def collisions(experts: int, k: int, slices: int) -> float:
    """The expected rows on the busiest slice when one token picks ``k`` distinct experts uniformly at random
    and expert e lives on slice ``e * slices // experts``: 1 with a slice per expert, more when experts
    share slices (8 of 128 experts over 8 slices: about 2.4). Estimated over 4,096 draws of a fixed seed."""
    if slices >= experts or k <= 1:
        return 1.0
    draws = np.argsort(np.random.default_rng(0).random((4096, experts)), axis=1)[:, :k]
    slot = draws * slices // experts
    counts = np.zeros((draws.shape[0], slices), dtype=np.int64)
    np.add.at(counts, (np.arange(draws.shape[0])[:, None], slot), 1)
    return float(counts.max(axis=1).mean())


# The datapath a slicing is chosen for where the lowering does not know the machine (``LowerCtx.machine``
# None: a program lowered without a target): f16 at 4 lanes, the default Costs (a WSE-2's or WSE-3's f16
# AXPY rate, datapath.py).
DEFAULT_DATAPATH = Datapath(lanes=4.0)


@lru_cache(maxsize=4096)
def slicing(experts: int, k: int, tokens: int, d: int, f: int, cols: int, dp: Datapath = DEFAULT_DATAPATH) -> int:
    """How many column slices the experts of a ``cols``-wide rectangle share: the power of two (or the
    most, ``min(E, cols, tokens x k)``) whose busiest slice finishes a sample's routed rows soonest by a
    proxy of the GEMM step: per routed row on a slice of w columns, one arriving element's AXPYs (and
    their issue, ``gemm.element_cycles`` on the machine's datapath ``dp``: its lanes, ports and Costs
    table) over the ceil(2f / w) gate/up and ceil(d / w) down columns a core holds. Each slice holds
    E / slices experts; their weights take the same bytes per core whatever the slicing. With many rows
    the busiest slice's share falls with more slices: one expert per slice. With a decode step's k rows,
    the rows' collisions (``collisions``) and the wider slices' faster steps meet between 1 and k slices."""
    top = max(1, min(experts, cols, tokens * k))
    cands = sorted({top} | {2**i for i in range(top.bit_length()) if 2**i <= top})

    def cost(g: int) -> float:
        w = max(1, cols // g)
        rows = max(ceil(tokens * k / g), collisions(experts, k, g))
        return rows * (element_cycles(ceil(2 * f / w), dp) + element_cycles(ceil(d / w), dp))

    return min(cands, key=lambda g: (cost(g), -g))


def uniform(experts: int) -> tuple[float, ...]:
    return tuple(1.0 / experts for _ in range(experts))


@dataclass(frozen=True)
class MoeExperts(Kernel):
    experts: int
    d: int
    f: int
    top_k: int
    shares: tuple[float, ...]  # each expert's share of the routed rows (sums to 1)
    flops_per_row: int
    dp: Datapath = DEFAULT_DATAPATH  # the machine's datapath for dtype, which the slicing is chosen for
    decomposition = "experts over column slices; in a slice, K over rows, N over columns"

    def max_rows(self) -> int:
        return self.d

    def max_cols(self) -> int:
        return self.experts * max(2 * self.f, self.d)

    def groups(self, cols: int) -> int:
        """Column slices (``slicing``): one per expert where a sample routes many more rows than there are
        experts (a forward pass, a prefill); at a decode step's few routed rows, fewer and wider slices."""
        return slicing(self.experts, self.top_k, self.tokens, self.d, self.f, cols, self.dp)

    def members(self, cols: int) -> list[list[int]]:
        """The experts of each column slice."""
        g = self.groups(cols)
        out: list[list[int]] = [[] for _ in range(g)]
        for e in range(self.experts):
            out[e * g // self.experts].append(e)
        return out

    def slice_cols(self, cols: int) -> int:
        return max(1, cols // self.groups(cols))

    def sram(self, rows, cols):
        w = self.slice_cols(cols)
        per = max(len(m) for m in self.members(cols))
        kt, ft = block(self.d, min(rows, self.d)), block(self.f, min(rows, self.f))
        nt_up, nt_down = block(2 * self.f, min(w, 2 * self.f)), block(self.d, min(w, self.d))
        return {
            "weights": per * (kt * nt_up + ft * nt_down) * self.elem,
            "activations_in": 2 * (kt + ft) * self.elem,
            "activations_out": 2 * max(nt_up, nt_down) * self.elem,
            "partial_sums": 2 * max(nt_up, nt_down) * accumulator_bytes(self.dtype),
            "fabric_queues": self.queues(),
        }

    def rows_of(self, tokens: float) -> list[float]:
        """Routed rows each expert receives for ``tokens`` tokens."""
        return [tokens * self.top_k * s for s in self.shares]

    def step(self, rows: int, cols: int, machine: Machine, m: int) -> int:
        """Cycles per routed row of one expert on its slice: gate and up, then down."""
        w, dp = self.slice_cols(cols), machine.datapath(self.dtype)
        m = max(1, m)
        return (fastest(m, self.d, 2 * self.f, rows, w, dp, machine=machine)[1].step
                + fastest(m, self.f, self.d, rows, w, dp, machine=machine)[1].step)

    def expert_cycles(self, rows: int, cols: int, p0: int, p1: int, machine: Machine) -> list[float]:
        """Busy cycles of each expert for tokens [p0, p1)."""
        per_sample = self.rows_of(self.tokens)
        return [r * self.step(rows, cols, machine, round(n)) for r, n in zip(self.rows_of(p1 - p0), per_sample)]

    def model_cycles(self, rows, cols, p0, p1, machine):
        """The busiest slice's expected rows; and never less than whole rows: c tokens send c k rows to
        distinct experts per token, so some slice takes at least ceil(c k / slices) of them (one token
        of a decode step waits for one whole expert however the load is spread)."""
        busy = self.expert_cycles(rows, cols, p0, p1, machine)
        members = self.members(cols)
        g = len(members)
        rows_floor = max(ceil((p1 - p0) * self.top_k / g), collisions(self.experts, self.top_k, g))
        return max(rows_floor * self.step(rows, cols, machine, 1), max(sum(busy[e] for e in m) for m in members))

    def work(self, p0, p1):
        routed = (p1 - p0) * self.top_k
        macs = routed * 3 * self.d * self.f
        acc = accumulator_bytes(self.dtype)
        return Work(flops=routed * self.flops_per_row, sram_read=macs * (self.elem + acc), sram_write=macs * acc,
                    delivered=routed * (self.d + self.f) * 1.0, edge=routed * 2.0 * self.d)

    def run(self, op, args, rows, cols):
        return np.asarray(registry.evaluate(op.kind, args, op.attr))


@lowers("moe_experts")
def lower_experts(op: Op, ctx: LowerCtx) -> MoeExperts:
    e, f2, d = op.operands[2].type.shape
    k = op.operands[1].type.shape[-1]
    a = registry.with_defaults(op.kind, op.attr)
    load = a["load"] or uniform(e)
    total = sum(load)
    x = op.operands[0].type
    dp = ctx.machine.datapath(x.dtype) if ctx.machine is not None else DEFAULT_DATAPATH
    return MoeExperts(tokens=ctx.tokens, dtype=x.dtype, elem=DTYPES[x.dtype][1], experts=e, d=d, f=f2 // 2, top_k=k,
                      shares=tuple(s / total for s in load), flops_per_row=experts_flops_per_row(d, f2 // 2, a["act"]),
                      dp=dp)


def experts_report(state) -> dict | None:
    """``report.json``'s ``moe``: per experts kernel, each expert's routed tokens (per sample), busy
    cycles (per sample), and region (its column slice of the kernel's rectangle); the busiest."""
    prog, placement, machine = state.program, state.placement, state.machine
    layers = []
    for k in prog.kernels:
        m = k.model
        if not isinstance(m, MoeExperts):
            continue
        r = placement.rects[k.id]
        w = m.slice_cols(r.cols)
        busy = m.expert_cycles(r.rows, r.cols, 0, prog.tokens, machine)
        slot = {e: g for g, members in enumerate(m.members(r.cols)) for e in members}
        experts = [{"expert": e, "tokens": round(n, 3), "cycles": ceil(c), "share": round(m.shares[e], 6),
                    "region": {"row": r.row, "col": r.col + slot[e] * w, "rows": r.rows, "cols": w}}
                   for e, (n, c) in enumerate(zip(m.rows_of(prog.tokens), busy))]
        top = max(range(m.experts), key=lambda e: busy[e])
        layers.append({"kernel": k.name, "experts": experts, "busiest": top, "busiest_cycles": ceil(busy[top]),
                       "mean_cycles": ceil(sum(busy) / m.experts), "kernel_cycles": placement.stage_cycles[k.id]})
    if not layers:
        return None
    # the first layer's table at the top (every layer has the same distribution); the rest per layer
    return {"experts": layers[0]["experts"], "busiest": layers[0]["busiest"], "layers": layers,
            "assumption": "expected routed tokens per expert from the routing distribution (docs/moe.md)"}
