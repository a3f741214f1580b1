"""Elementwise ops, normalizations, softmax and reductions over the last axis: tokens spread over
the rows of the rectangle (token t on row t mod rows), the last axis over its columns. A
normalization, softmax or reduction also combines per-core partial statistics across the
columns of a row (short all-reduces per token).

``ELEMENT_CYCLES`` is the one table of what an op costs per element on a core's datapath; the
fused epilogues of other kernels (``fusion.py``) read it too.

Layernorm, as the PE level (runtime/pe_rowwise.py) runs it cycle by cycle: each core of a row
receives its block of a token's features (``ft`` wavelets, one per cycle, into one of the token
buffers ``sram`` reserves: four tokens, ``token_slots``), runs a statistics task (sum, sum of
squares), sends both east in a chain of add-and-forwards whose last core sends the row's totals
back west to every core (4 cycles a column for the round trip), then runs a normalize task (mean
and 1/sigma from the totals, subtract, scale, shift) and sends its ``ft`` outputs, one per cycle.
A free datapath starts the next token's statistics before an older token's normalize; tasks run
to their end. A row's time (``layernorm_row``) is every core's schedule, token by token, with the
fabric's latencies in closed form: a token is in ``ft`` cycles after a buffer frees, the
all-reduce adds and forwards a hop, a ramp and an add a column east and comes back a hop a column
west, and a token is out ``ft`` cycles after its normalize. Column 0 (the widest core, the last to
hear back) is mostly the one the row waits for, but not always: the cores need not take their
tasks in the same order (one that hears back early normalizes before the next token's
statistics, and the all-reduce then waits for it), and each add-and-forward holds a core's task a
cycle. A row is bound by its datapath (``layernorm_tasks``, both
tasks and the two sends per token), by its streams (``ft`` per token) or, when the row is wide, by
the round trip: four buffers hold at most four tokens between their arrival and their last output.
A chunk of tokens costs the busiest row's schedule spread evenly over the sample's tokens; the fill
is the first token's latency beyond its datapath cycles.

Fix against the PE level (issue 10): the first model charged a token one task start and six
passes, ``max(8 + 6 ceil(ft / lanes), ft)``, spread ``tokens / rows`` over the rows, plus a fill of
the rectangle's crossing and 4 hops a column. It left out the second task (the normalize waits
for the all-reduce, so it is a task of its own), the finish of mean and 1/sigma, the sends of the
statistics, the tokens' delivery and output streams in the first token's latency, the whole
tokens a row takes (``ceil(m / rows)``, not ``m / rows``), and that four buffers cannot hide a
round trip of 4 cycles a column on wide rows, where a row is latency-bound. On the 12 cases of
benchmarks/fidelity_rowwise.py it was 5% to 57% low (32% on average); the model below is within
3.2% there (most cases to the cycle), and within 3.8% (mean 0.05%) on a sweep of 600 shapes (1 to
64 columns, 7 to 4,096 features, 1 to 64 tokens a row, 1, 2, 4 and 8 lanes). That model scheduled
column 0 alone; on WSE-3 cores (a 2-cycle hop) a row whose columns take their tasks in different
orders showed it 6.6% short (issue 27, docs/fidelity.md "Layernorm's column orders"). Every column
scheduled, the model takes the PE level's cycles on every case tested (tests/test_pe_rowwise.py,
benchmarks/fidelity_rowwise.py). Softmax and the reductions keep the first model, unchecked by a
PE level.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from functools import lru_cache
from math import ceil, prod

import numpy as np

from ...errors import UnsupportedError
from ...ir import registry
from ...ir.graph import Op
from ...ir.types import DTYPES
from .. import assumptions as A
from ..blocks import block, slices, split
from ..costs import DEFAULT, Costs, InstructionCount
from ..machine import WSE2, Machine
from .base import ACT, PARAM, Kernel, LowerCtx, Work, f32, lowers

# Datapath cycles per element at the SIMD lane rate (our assumption; no source gives them): 1
# for arithmetic, comparisons, selects and casts; TRANSCENDENTAL_CYCLES for special functions
# (and for pow, div and GELU, which take one); layernorm 6 (sum, sum of squares, subtract,
# scale, shift, multiply by 1/sigma); softmax 3 and an exp.
_T = A.TRANSCENDENTAL_CYCLES
# SiLU, x * sigmoid(x), one more (the product) than the sigmoid it holds; cos and sin take one each;
# RMSNorm 3 (sum of squares, multiply by 1/rms, scale), layernorm's passes less the mean's two.
ELEMENT_CYCLES = {"exp": _T, "log": _T, "tanh": _T, "erf": _T, "sqrt": _T, "rsqrt": _T, "sigmoid": _T,
                  "gelu": _T, "pow": _T, "div": _T, "cos": _T, "sin": _T, "silu": _T + 1, "layernorm": 6,
                  "rmsnorm": 3, "softmax": 3 + _T,
                  # backward (kernels/grads.py): gelu' is an erf or tanh and an exp and four
                  # arithmetic; silu' a sigmoid and five arithmetic; layernorm's is two row sums and six
                  # arithmetic, rmsnorm's two row sums (x^2, dy w x) and four (dy w, 1/rms, two for dx);
                  # softmax's a row sum and three; the loss a softmax over the vocabulary and the label's pick
                  "gelu_grad": 2 * _T + 4, "silu_grad": _T + 5, "layernorm_grad": 8, "rmsnorm_grad": 6,
                  "softmax_grad": 4,
                  "cross_entropy": 4 + _T, "cross_entropy_grad": 4 + _T}


def element_cycles(kind: str) -> float:
    return ELEMENT_CYCLES.get(kind, 1)


REDUCES = frozenset({"layernorm", "rmsnorm", "softmax", "reduce_sum", "reduce_mean", "reduce_max"})
# Vector instructions per token on a core, each paying Costs.vector_issue: an elementwise op or a
# reduction is one pass over the core's block; softmax four (max, subtract and exp, sum, scale).
# Layernorm counts its own (layernorm_tasks).
VECTOR_PASSES = {"softmax": 4, "layernorm_grad": 8, "rmsnorm_grad": 6, "softmax_grad": 3, "gelu_grad": 6,
                 "silu_grad": 6, "cross_entropy": 4, "cross_entropy_grad": 4}


def vector_passes(kind: str) -> int:
    return VECTOR_PASSES.get(kind, 1)

# Layernorm on a row of cores: the algorithm of the module docstring, which the PE level
# (runtime/pe_rowwise.py) runs cycle by cycle.
LN_STAT_PASSES = 2  # vector passes before the row all-reduce: the sum and the sum of squares
LN_FINISH_OPS = ("mul", "mul", "mul", "sub", "add", "rsqrt")  # scalar: mean, E[x^2], mean^2, var, + eps, 1/sigma
LN_STATS = 2  # wavelets per token each way along a row: the sum and the sum of squares


@dataclass(frozen=True)
class NormSteps:
    """A row normalization as the layernorm algorithm runs it: vector passes before the row all-reduce
    (``stat_passes``) and after it (the rest of ``element_cycles(kind)``), the scalar ops that finish
    the statistics, and the statistics each core sends along the row per token."""

    kind: str
    stat_passes: int
    finish: tuple[str, ...]
    stats: int


# RMSNorm is layernorm's algorithm without the mean: one statistic (the sum of squares) and one
# wavelet each way along the row; finished by 1/f, + eps and rsqrt; then 1/rms and the scale.
NORMS = {"layernorm": NormSteps("layernorm", LN_STAT_PASSES, LN_FINISH_OPS, LN_STATS),
         "rmsnorm": NormSteps("rmsnorm", 1, ("mul", "add", "rsqrt"), 1)}


def layernorm_tasks(ft: int, lanes: float, norm: str = "layernorm", costs: Costs = DEFAULT) -> tuple[int, int]:
    """Datapath cycles of the two tasks of one token on a core holding ``ft`` features, with ``lanes``
    FMAC lanes: the statistics (sum, sum of squares) and the normalize (mean and 1/sigma from the row
    totals, then subtract, multiply by 1/sigma, scale, shift). Each vector pass over the block is one
    vector instruction. ``norm="rmsnorm"``: the sum of squares, then 1/rms, multiply, scale."""
    n = NORMS[norm]
    lanes = lanes * A.ELEMENTWISE_LANE_FRACTION
    vec = costs.vector_issue + ceil(ft / lanes)
    finish = sum(ceil(1 / lanes) * element_cycles(op) for op in n.finish)
    return (costs.task_start + n.stat_passes * vec,
            costs.task_start + finish + (element_cycles(norm) - n.stat_passes) * vec)


def layernorm_allreduce_cycles(cols: int, stats: int = LN_STATS, machine: Machine = WSE2) -> int:
    """From the end of column 0's statistics task to the first cycle its normalize may start: it puts
    its two statistics on the fabric, the second one (which gates) crosses every column east (a hop,
    the ramp to the core and its add-and-forward: 3 cycles), comes back west from the last core (a
    hop per column), down the ramp and into column 0's SRAM (one cycle)."""
    if cols == 1:
        return 0
    east = machine.hop_cycles + machine.ramp_cycles + machine.costs.psum_add
    return stats * machine.costs.psum_add + (cols - 1) * (east + machine.hop_cycles) + machine.ramp_cycles + 1


class _Column:
    """One core of a layernorm row as ``layernorm_row`` schedules it: per token, when it is in
    (``ready``), when its statistics end (``stats_end``), when its totals are back (``back``) and
    when its last output leaves (``sent``); and the cycles its add-and-forwards take from its
    datapath (``adds``, in order)."""

    __slots__ = ("ft", "stat_cycles", "norm_cycles", "ready", "stats_end", "back", "sent", "ns", "free", "adds")

    def __init__(self, ft: int, stat_cycles: int, norm_cycles: int):
        self.ft, self.stat_cycles, self.norm_cycles = ft, stat_cycles, norm_cycles
        self.ready: list[int] = []
        self.stats_end: list[int] = []
        self.back: list[int] = []
        self.sent: list[int] = []
        self.ns = self.free = 0  # tokens whose statistics are scheduled; the datapath's next free cycle
        self.adds: list[int] = []

    def start(self, t: int) -> int:
        """The first cycle from ``t`` that no add takes: a task starts there."""
        i = bisect_left(self.adds, t)
        while i < len(self.adds) and self.adds[i] == t:  # the add cycles, in order
            t, i = t + 1, i + 1
        return t

    def end(self, t: int, d: int) -> int:
        """The first cycle after a task of ``d`` datapath cycles started at ``t``, the add cycles that
        fall within it (each holds the task a cycle) included."""
        e, n = t + d, 0
        while (m := bisect_left(self.adds, e) - bisect_left(self.adds, t)) != n:
            e, n = e + m - n, m
        return e

    def add(self, t: int, cycles: int) -> None:
        """An add-and-forward from cycle ``t``, taking the datapath ``cycles`` cycles."""
        self.adds.extend(range(t, t + cycles))


# Rows of more column-tokens than this are scheduled by column 0 alone (the first model, which misses
# where the columns order their tasks differently: docs/fidelity.md, "Layernorm's column orders"): every
# column costs some 5 us a column-token, about 0.5 s here; the placer's rectangles stay far below it.
LN_SCHEDULE_LIMIT = 100_000


@lru_cache(maxsize=512)
def layernorm_row(f: int, cols: int, lanes: float, slots: int, tokens: int, inputs: int = 1,
                  norm: str = "layernorm", machine: Machine = WSE2) -> tuple[int, ...]:
    """Cycles by which a row of ``cols`` cores has output its first 1, 2, ..., ``tokens`` tokens: every
    core's schedule, token by token (the PE level's rules, runtime/pe_rowwise.py). A token is
    received into one of ``slots`` buffers at one wavelet per cycle once a buffer is free; when its
    datapath is free a core starts the next token's statistics if that token is in, else the oldest
    normalize whose totals are back; a task runs to its end, held a cycle by each add-and-forward of
    the all-reduce that falls within it (and none starts in such a cycle); the outputs leave one
    wavelet per cycle. The all-reduce: column 0 sends its statistics the cycles after they end,
    column j adds and forwards each once its own are done and the west one is in (a hop, the ramp
    and the add after column j - 1's), and the last column's totals come back west a hop a column.

    Each core's order is its own: where the totals come back to column 0 just after the next token
    is in, column 0 computes that token's statistics first while the last columns, which hear back
    earlier, normalize first, and the row's next all-reduce waits for them (docs/fidelity.md,
    "Layernorm's column orders"). So every column is scheduled, in rounds: each core up to its
    statistics of token k (which needs only the totals of earlier tokens), then token k's
    all-reduce along the row, which gives every core its totals and its add cycles. Past
    ``LN_SCHEDULE_LIMIT`` column-tokens, column 0 alone, its totals back
    ``layernorm_allreduce_cycles`` after its statistics end.

    It takes the PE level's cycles where the links run at one wavelet a cycle, that is where a
    queue covers the credit round trip (``pe_queue_depth >= 2 hop_cycles``, as on a WSE-2 and a
    WSE-3): it does not model the all-reduce's wavelets waiting for room, as shallower queues make
    them (neither did the first model)."""
    costs, stats = machine.costs, NORMS[norm].stats
    hop, ramp = machine.hop_cycles, machine.ramp_cycles
    add = costs.psum_add
    east = hop + ramp + add  # the start of column j - 1's add to the start of column j's
    first = hop + ramp  # the first wavelet in: source -> router -> core
    whole = cols * tokens <= LN_SCHEDULE_LIMIT
    columns = [_Column(ft, *layernorm_tasks(ft, lanes, norm, costs)) for ft in split(f, cols)[:cols if whole else 1]]

    def schedule(c: _Column, upto: int) -> None:
        """c's tasks until it has scheduled ``upto`` tokens' statistics (then the next decision may
        need the totals of the latest), or until every normalize whose totals are known is done."""
        while True:
            while len(c.ready) < min(tokens, len(c.sent) + slots):  # a buffer is free: receive the next token
                k = len(c.ready)
                begin = max(first if k < slots else c.sent[k - slots] + 1, c.ready[-1] if c.ready else first)
                c.ready.append(begin + c.ft * inputs)
            nn = len(c.sent)
            stat_at = max(c.free, c.ready[c.ns]) if c.ns < min(upto, len(c.ready)) else None
            norm_at = max(c.free, c.back[nn]) if nn < min(c.ns, len(c.back)) else None
            if stat_at is None and norm_at is None:
                return
            t = c.start(min(x for x in (stat_at, norm_at) if x is not None))
            if stat_at is not None and c.ready[c.ns] <= t:
                c.free = c.end(t, c.stat_cycles)
                c.stats_end.append(c.free)
                c.ns += 1
                if c.ns == upto:
                    return
            else:
                c.free = c.end(t, c.norm_cycles)
                c.sent.append(max(c.free, c.sent[-1] + 1 if c.sent else 0) + c.ft - 1)

    for k in range(tokens):
        for c in columns:
            schedule(c, k + 1)
        if cols == 1:
            columns[0].back.append(columns[0].stats_end[k])
            continue
        west: list[int] = []  # the cycles column j - 1's adds of token k start
        for c in columns:
            at = []
            for s in range(stats):
                t = max(c.stats_end[k], c.adds[-1] + 1 if c.adds else 0, west[s] + east if west else 0)
                c.add(t, add)
                at.append(t)
            west = at
        if not whole:
            columns[0].back.append(columns[0].stats_end[k] + layernorm_allreduce_cycles(cols, stats, machine))
            continue
        for j, c in enumerate(columns):  # the last column made the totals; the others hear them a hop a column later
            c.back.append(west[-1] + add + (0 if j == cols - 1 else (cols - 1 - j) * hop + ramp + 1))
    for c in columns:
        schedule(c, tokens)
    # a token is out the cycle after its last wavelet, from whichever column, reaches the sink
    return tuple(max(c.sent[k] for c in columns) + 1 + hop for k in range(tokens))


@dataclass(frozen=True)
class Rowwise(Kernel):
    op: str
    features: int
    inputs: int  # activation operands arriving per token, each with up to `features` elements
    params: int  # per-feature parameter vectors held on each core (scale, shift, bias)
    flops_per_token: float  # the registry's FLOPs of the op, per token
    groups: int = 1  # rows of the last axis per token (heads, for an op after the head split)
    decomposition = "tokens (and their heads) over rows, last axis over columns"
    # Each of a token's ``groups`` rows (a per-head RMSNorm's heads: Qwen3's q_norm and k_norm) is a row
    # of its own, independent of the others, so they spread over the rectangle's rows as tokens do: at a
    # decode step's one token, 64 heads on 64 rows at once, not one after another on one row. (Until
    # issue 30 they ran one after another: 5,036 cycles of Qwen3-235B's q_norm on a 1 x 16 rectangle.)
    spread_groups = True

    def units(self) -> int:
        """Rows of work per sample: a token's, or each of its groups' where they spread over rows."""
        return self.tokens * (self.groups if self.spread_groups else 1)

    def max_rows(self) -> int:
        return self.units()

    def max_cols(self) -> int:
        return self.features

    def sram(self, rows, cols):
        ft = block(self.features, min(cols, self.features))
        return {"weights": self.params * ft * self.elem, "activations_in": 2 * self.inputs * ft * self.elem,
                "activations_out": 2 * ft * self.elem, "fabric_queues": self.queues()}

    def work(self, p0, p1):
        c, f = p1 - p0, self.features * self.groups
        # reads its inputs and parameters, writes its output (at least once each)
        return Work(flops=c * self.flops_per_token, sram_read=c * f * (self.inputs + self.params) * self.elem,
                    sram_write=c * f * self.elem,
                    delivered=c * f * self.inputs, edge=c * f * (self.inputs + 1))

    def model_cycles(self, rows, cols, p0, p1, machine):
        if self.op in NORMS:  # the busiest row's schedule, spread evenly over the sample's tokens
            done, fill = self._layernorm(rows, cols, machine)
            curve = (0, *(d - fill for d in done))  # by the end of row 0's first 0, 1, 2, ... tokens
            return _along(curve, p1 / self.tokens) - _along(curve, p0 / self.tokens)
        ft = block(self.features, min(cols, self.features))
        dp = machine.datapath(self.dtype)
        per_token = max(self.token_instructions(ft, dp).cycles(dp), ft * self.inputs, ft)
        return (p1 - p0) * self.groups * per_token / min(rows, self.units())

    def token_instructions(self, ft: int, dp) -> InstructionCount:
        """What a core issues per token: the task start and ``vector_passes`` vector instructions over its
        ``ft`` features, whose elements take ``ceil(ft / lanes) * element_cycles(op)`` lane cycles in all
        (``lanes``: the datapath's rate, f32's included, times ``ELEMENTWISE_LANE_FRACTION``)."""
        lanes = dp.rate * A.ELEMENTWISE_LANE_FRACTION
        return (InstructionCount().add("task").call("elementwise", 0, vector_passes(self.op))
                .add("lane", ceil(ft / lanes) * element_cycles(self.op)))

    def fill(self, rows, cols, machine):
        if self.op in NORMS:
            return self._layernorm(rows, cols, machine)[1]
        extra = 4 * (cols - 1) * machine.hop_cycles if self.op in REDUCES else 0
        return super().fill(rows, cols, machine) + extra

    def emit(self, rows, cols):
        """An element-wise op (no norm, no reduction) sends its block's results east as it makes them,
        one wavelet per cycle; a norm or a reduction has its token's results at the end."""
        if self.op in REDUCES or self.op in NORMS or self.groups > 1:
            return 0
        return block(self.features, min(cols, self.features))

    def stream_tail(self, rows, cols, machine):
        """An element-wise op works on each element as it arrives (one vector instruction over its block
        with the fabric as operand): after the last arrives, that element's cycles are left
        (``runtime/pe_chain.scale_stage`` is the PE-level check); a norm or a reduction needs the whole token."""
        if self.emit(rows, cols) == 0:
            return None
        return ceil(element_cycles(self.op))

    def token_slots(self, cols: int) -> int:
        """Tokens a core can hold at once: its input and output buffers (``sram``) as one pool."""
        s, ft = self.sram(1, cols), block(self.features, min(cols, self.features))
        return (s["activations_in"] + s["activations_out"]) // (ft * self.elem)

    def _layernorm(self, rows, cols, machine) -> tuple[tuple[int, ...], int]:
        """(the cycles by which row 0, the busiest, has output each of its tokens; fill): the fill is
        the first token's latency beyond its datapath cycles, which the chunks' cycles hold."""
        rows, cols = min(rows, self.units()), min(cols, self.features)
        lanes, costs = machine.datapath(self.dtype).rate, machine.costs
        done = layernorm_row(self.features, cols, lanes, self.token_slots(cols), ceil(self.tokens * self.groups / rows),
                             self.inputs, self.op, machine)
        stat, norm = layernorm_tasks(block(self.features, cols), lanes, self.op, costs)
        busy = stat + norm + (NORMS[self.op].stats * costs.psum_add if cols > 1 else 0)
        return done, done[0] - busy

    def run(self, op, args, rows, cols):
        return rowwise(op.kind, args, registry.with_defaults(op.kind, op.attr), op.type.shape, rows, cols)


def _along(curve: tuple[int, ...], u: float) -> float:
    """``curve`` (values at 0, 1, ..., n) at ``u * n``, linearly between its points."""
    x = min(max(u, 0.0), 1.0) * (len(curve) - 1)
    k = min(int(x), len(curve) - 2)
    return curve[k] + (x - k) * (curve[k + 1] - curve[k])


@lowers("category:elementwise", "category:normalization", "category:reduction")
def lower_rowwise(op: Op, ctx: LowerCtx) -> Rowwise:
    src, a = op.operands[0].type, op.attr
    if op.kind.startswith("reduce") and tuple(a.get("axes", ())) not in ((src.rank - 1,), (-1,)):
        raise UnsupportedError(f"lowering {ctx.where}: reductions other than over the last axis")
    if op.kind == "softmax" and a.get("axis", -1) not in (-1, src.rank - 1):
        raise UnsupportedError(f"lowering {ctx.where}: softmax over an axis other than the last")
    if op.kind == "layernorm" and a.get("axes", 1) != 1:
        raise UnsupportedError(f"lowering {ctx.where}: layernorm over more than the last axis")
    shape = src.shape if registry.category(op.kind) != "elementwise" else op.type.shape
    t = op.type
    features = shape[-1] if shape else 1
    if ctx.per_step:  # a weight-shaped tensor (a gradient): its elements spread over the step's tokens
        features = max(1, ceil(op.type.numel / ctx.total))
    per_token = prod(shape) / ctx.total
    return Rowwise(tokens=ctx.tokens, dtype=t.dtype, elem=DTYPES[t.dtype][1], op=op.kind,
                   features=features, inputs=max(ctx.sources.count(ACT), 1),
                   params=ctx.sources.count(PARAM), flops_per_token=ctx.flops_per_token(op),
                   groups=max(1, round(per_token / features)))


def _row_allreduce(tiles, fn=np.sum):
    """Combine per-core partials across the columns of a row."""
    return fn(np.stack(tiles), axis=0)


def rowwise(kind: str, args: list[np.ndarray], attrs: dict, out_shape: tuple, rows: int, cols: int) -> np.ndarray:
    """A rowwise op computed per core: the last axis in column blocks, statistics all-reduced
    across a row's cores; elementwise ops token by token on the row that holds the token."""
    f = out_shape[-1] if out_shape else 1
    if kind in REDUCES:
        x = f32(args[0])
        f = x.shape[-1]
    col_blocks = slices(f, min(cols, f))
    if kind == "layernorm":
        mean = _row_allreduce([x[..., c].sum(-1, keepdims=True) for c in col_blocks]) / f
        var = _row_allreduce([((x[..., c] - mean) ** 2).sum(-1, keepdims=True) for c in col_blocks]) / f
        y = np.empty_like(x)
        for c in col_blocks:
            t = (x[..., c] - mean) / np.sqrt(var + attrs["eps"])
            if len(args) > 1:
                t = t * args[1][c]
            if len(args) > 2:
                t = t + args[2][c]
            y[..., c] = t
        return y
    if kind == "rmsnorm":
        ms = _row_allreduce([(x[..., c] ** 2).sum(-1, keepdims=True) for c in col_blocks]) / f
        y = x / np.sqrt(ms + np.asarray(attrs["eps"], dtype=x.dtype))
        return y * args[1] if len(args) > 1 else y
    if kind == "softmax":
        m = _row_allreduce([x[..., c].max(-1, keepdims=True) for c in col_blocks], np.max)
        s = _row_allreduce([np.exp(x[..., c] - m).sum(-1, keepdims=True) for c in col_blocks])
        return np.concatenate([np.exp(x[..., c] - m) / s for c in col_blocks], axis=-1)
    if kind in REDUCES:  # reduce_sum, reduce_mean, reduce_max over the last axis
        part = np.max if kind == "reduce_max" else np.sum
        r = _row_allreduce([part(x[..., c], axis=-1, keepdims=True) for c in col_blocks], part)
        r = r / f if kind == "reduce_mean" else r
        return r if attrs.get("keepdim") else r[..., 0]
    # elementwise: tokens cyclic over rows, the last axis over columns
    full = [np.broadcast_to(a, out_shape) for a in args]
    t = int(np.prod(out_shape[:-1])) if len(out_shape) > 1 else 1
    flat = [a.reshape(t, f) for a in full]
    out = None
    for r in range(min(rows, t)):
        for c in col_blocks:
            y = np.asarray(registry.evaluate(kind, [a[r::rows, c] for a in flat], attrs))
            if out is None:
                out = np.empty((t, f), dtype=y.dtype)
            out[r::rows, c] = y
    return out.reshape(out_shape)
