"""PE-level simulator of the mesh GEMM and GEMV: every core, every router, every cycle.

It is the ground truth that the tile-level model (``backends/gemm.py``) is held to, and it runs the
same algorithm: **weight-stationary, row-broadcast, column-reduce**. ``C[m, n] = A[m, k] @ W[k, n]``
on a grid of ``rows x cols`` cores (cut to ``min(rows, k) x min(cols, n)``); K is split over rows
and N over columns, so core (i, j) keeps the tile ``W[K_i, N_j]`` (``kt x nt``) in its SRAM
(``pe_layout``). A GEMV is the case m = 1.

One token (one row of A) at a time, the algorithm is:

1. **Row broadcast.** The edge injector west of row i sends ``A[t, K_i]``, one element per 32-bit
   wavelet, on color 0. Each router of the row passes each wavelet to its core and east to the next
   router (a multicast), so every core of row i sees the same stream.
2. **FMAC.** The core's task fires when a wavelet is at the head of its input queue. The first
   element of a token also pays the task start (``TASK_OVERHEAD_CYCLES``); each element then takes
   ``gemm.element_cycles(nt)`` cycles of the core's datapath (one AXPY at the slower of its lanes
   and its SRAM ports, plus the vector instruction's overhead) to multiply into the ``nt`` partial sums of
   the token, after which the wavelet leaves the queue. Partial sums are double buffered
   (``PE_ACC_BUFFERS``): the core may start token t + 2 only after the partial sums of token t have
   left.
3. **Column reduce.** When the FMACs of a token are done, the core streams its ``nt`` partial sums
   south, one wavelet per cycle: row 0 sends its own; row i > 0 takes each partial sum arriving
   from the north, adds its own and sends the sum on. This add-and-forward occupies the datapath
   for one cycle per element and goes before the FMACs of the next token (which wait that cycle).
   Row ``rows - 1`` sends ``C[t, N_j]`` out of the south edge. The chain alternates colors 1 and 2
   by row parity. This is ``reduce="chain"``, the default.

``resident_a=True``: each core's elements of A are in its SRAM at cycle 0, as in WaferLLM's GEMV
benchmark (x placed before the kernel starts): step 1 is skipped and a core's next element is
always at hand. Cycles then count from the kernel's start.

``reduce="tree"``: step 3 is the two-level centre-rooted tree of WaferLLM's MeshGEMV (He et al.,
OSDI 2025), along each column (``backends/column_reduce.py`` has the plan, ``pe_tree`` the loop).
The rows are cut into ``round(sqrt(rows))`` groups of consecutive rows (``blocks.split``), rooted at
their centre row. Phase 1: in each group the rows above the root send south to it in a chain and
the rows below north; the root adds the stream from below, then the one from above. Phase 2: the
group roots do the same towards the root of the centre group, each root-to-root stream passing
through the routers between them (one cycle per hop, no ramp); the column root adds the streams
from below and from above and sends the column's ``nt`` sums south, through the routers below it,
out of the south edge. Each add of an incoming stream is a pass of ``nt`` cycles of the receiving
core's datapath (``PARTIAL_SUM_CYCLES`` per wavelet), the last pass fused with the core's send, so
the column root takes four passes per token where a chain row takes one. The tree uses six colors
besides A's (phase 1 two, both directions with opposite row parities; phase 2 two per direction),
checked by ``ColumnPlan.color_conflicts``. Its phase-2 streams share link directions with the phase-1 chains
they cross: a link direction carries one wavelet per cycle whatever its color, and the phase-1
wavelet goes first (``pe_tree``).

How the simulator models it (``pe_fabric`` has the queues): each router has, per color, an input
queue of ``PE_QUEUE_DEPTH`` wavelets, and each core an input queue of the same depth per color. In
one cycle a wavelet moves at most one stage: router to next router (one hop, ``HOP_CYCLES``),
router to its core or core to its router (the ramp, ``RAMP_CYCLES``). A wavelet moves only if
the receiving queue had room at the start of the cycle (credit flow control: back-pressure), and
a multicast only if all its receivers had. In the chain each link direction carries one color, so
one wavelet per link per cycle holds by construction; the tree arbitrates shared links. The ramp
from a router to its core carries each color on its own queue (A and partial sums at once, as
before). All decisions of a cycle are taken from the state at its start and then applied together,
so the order in which cores are visited is moot.

Payloads. Timing and numbers are kept apart, as a wavelet's payload never changes its timing.
A queue is a count: the A wavelets of row i are ``A[t, K_i]`` in a fixed order, so nothing is
lost by not copying them hop by hop (routers neither reorder nor change a color's wavelets). The
FMACs of core (i, j) for token t produce ``A[t, K_i] @ W[K_i, N_j]``, its tile times the stream
it consumed; the simulator evaluates those for all cores and tokens up front, one matmul per row
of cores, and the timing above decides when each core has them. The column reduce is done in
the order the wavelets move: when a core sends the first partial sum of a token it adds its own
partial sums to those that arrived from the north (the north core's ring) and writes the ``nt``
sums into its own ring of ``ring_tokens`` slots (more than the three queues between two cores
can hold, so no slot is overwritten before it is read); the south edge reads the last row's ring
as each wavelet arrives and assembles C from them. So every element of C is the float32 sum,
top row to bottom, of the partial sums that travelled down its column; the f16 of a real run
would change only the lanes, which ``lanes`` carries. The tree does the same per pass: the first
wavelet of a pass adds its sender's sums of that token, and the last pass writes the core's ring
(``pe_tree``); each element of C is then the float32 sum in the tree's order.

Every step is a NumPy operation over the whole grid (``(rows, cols)`` arrays, neighbours by
slicing, cores that act in a cycle by ``flatnonzero``); there is no Python loop over cores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..backends import assumptions as A
from ..backends.column_reduce import CHAIN, REDUCES, plan
from ..backends.datapath import Datapath
from ..errors import UsageError
from .pe_fabric import Fabric, TreeFabric
from .pe_fmac import Fmacs, partial_sums, uint
from .pe_layout import Layout, layout
from .pe_tree import run_tree

if (A.HOP_CYCLES, A.RAMP_CYCLES, A.PARTIAL_SUM_CYCLES) != (1, 1, 1):  # one stage per cycle; more needs delay lines
    raise NotImplementedError("the PE-level simulator models HOP_CYCLES = RAMP_CYCLES = PARTIAL_SUM_CYCLES = 1 only")


MAX_PARTIALS_BYTES = 6 * 2**30  # the simulator's own memory for the FMAC results of all tokens


class PeRate:
    """The simulator's own speed, for a result with ``cycles``, ``rows``, ``cols`` and ``wall_s``."""

    @property
    def pe_cycles(self) -> int:
        return self.cycles * self.rows * self.cols

    @property
    def pe_cycles_per_s(self) -> float:
        return self.pe_cycles / self.wall_s if self.wall_s > 0 else float("inf")


@dataclass(frozen=True)
class PeResult(PeRate):
    c: np.ndarray  # (m, n) float32: the product as the south edge received it
    cycles: int  # from the first injected wavelet to the last one received at the south edge
    rows: int  # grid simulated (the mesh cut to min(rows, k) x min(cols, n))
    cols: int
    wall_s: float
    sram_bytes_per_core: int
    fabric: Fabric | TreeFabric  # final queue state and the per-router counters
    violations: tuple[str, ...]  # conservation failures (empty when no wavelet was lost or duplicated)


def simulate_gemm(a: np.ndarray, w: np.ndarray, rows: int, cols: int, lanes: Datapath | float, *,
                  depth: int = A.PE_QUEUE_DEPTH, check: bool = False, sram_bytes: int | None = None,
                  max_cycles: int | None = None, reduce: str = CHAIN, resident_a: bool = False) -> PeResult:
    """Run ``a @ w`` on a ``rows x cols`` grid of cores with datapath ``lanes`` (``Machine.datapath``;
    a bare number is a lane rate with f16 operands and accumulators).

    ``reduce``: ``"chain"`` or ``"tree"`` (``backends/column_reduce.py``). ``resident_a``: each
    core's elements of A are in its SRAM at cycle 0 (no injection, no row multicast). ``check``
    verifies every queue's occupancy every cycle (slower). ``sram_bytes``, if given, is the SRAM a
    core may use; a tile that does not fit is a ``UsageError``.
    """
    if depth < 1:
        raise ValueError("queue depth must be at least 1")
    if reduce not in REDUCES:
        raise ValueError(f"unknown reduce {reduce!r}: use one of {', '.join(REDUCES)}")
    t0 = time.perf_counter()
    (m, k), n = np.shape(a), np.shape(w)[1]
    need = core_sram_bytes(k, n, rows, cols, depth, m=m, reduce=reduce, resident_a=resident_a)
    if sram_bytes is not None and need > sram_bytes:
        raise UsageError(f"a {-(-k // min(rows, k))}x{-(-n // min(cols, n))} tile of W per core needs {need} bytes "
                         f"of SRAM and a core has {sram_bytes}: use a larger mesh or a smaller matrix")
    held = 4 * min(rows, k) * m * (n + -(-n // min(cols, n)))
    if held > MAX_PARTIALS_BYTES:
        raise UsageError(f"the PE simulator would hold {held / 2**30:.1f} GiB of partial sums (rows x m x n); "
                         f"simulate fewer tokens (m) at a time")
    lay = layout(a, w, rows, cols, lanes)
    nbuf = A.PE_ACC_BUFFERS
    if reduce == CHAIN:
        fabric = Fabric.empty(lay.rows, lay.cols)
        sink, cycles, (a_done, sums_done) = _run(lay, fabric, depth, nbuf, check, max_cycles, resident_a)
        bad = fabric.violations(a_done, sums_done, resident_a)
    else:
        fabric = TreeFabric.empty(lay.rows, lay.cols)
        p = plan(lay.rows, reduce)
        sink, cycles, progress = run_tree(lay, fabric, p, depth, nbuf, check, max_cycles or _max_cycles(lay, 4),
                                          resident_a, _rings(p, depth, int(lay.nt.min())))
        bad = fabric.violations(*progress, resident=resident_a)
    return PeResult(c=lay.assemble(sink), cycles=cycles, rows=lay.rows, cols=lay.cols,
                    wall_s=time.perf_counter() - t0, sram_bytes_per_core=need, fabric=fabric, violations=tuple(bad))


def core_sram_bytes(k: int, n: int, rows: int, cols: int, depth: int = A.PE_QUEUE_DEPTH, *, m: int = 1,
                    reduce: str = CHAIN, resident_a: bool = False) -> int:
    """SRAM (f32 words) the busiest core keeps: its W tile, its partial-sum buffers and the ring
    of the sums it has sent (the payloads of its wavelets in flight); with ``resident_a``, also its
    elements of A for all ``m`` tokens."""
    rows, cols = min(rows, k), min(cols, n)
    kt, nt = -(-k // rows), -(-n // cols)
    ring = max(_rings(plan(rows, reduce), depth, n // cols)) if reduce != CHAIN else ring_tokens(depth, n // cols)
    return 4 * nt * (kt + A.PE_ACC_BUFFERS + ring) + (4 * m * kt if resident_a else 0)


def _rings(p, depth: int, nt_min: int) -> tuple[int, int]:
    """Slots of the tree's rings: phase 1 (neighbours), phase 2 (its longest stream)."""
    return ring_tokens(depth, nt_min), ring_tokens(depth, nt_min, p.max_hops)


def simulate_gemv(x: np.ndarray, w: np.ndarray, rows: int, cols: int, lanes: Datapath | float, **kw) -> PeResult:
    """``x @ w`` for a vector ``x`` of length k: the GEMM with m = 1."""
    return simulate_gemm(np.asarray(x).reshape(1, -1), w, rows, cols, lanes, **kw)


def ring_tokens(depth: int, nt_min: int, hops: int = 1) -> int:
    """Slots of the ring of sent partial sums: more tokens than can be between a core and its
    receiver ``hops`` links away (or the edge), whose ``hops + 2`` queues hold at most
    ``(hops + 2) * depth`` wavelets (for the chain, three queues)."""
    return -(-((hops + 2) * depth + 1) // nt_min) + 1


def _run(lay: Layout, f: Fabric, depth: int, nbuf: int, check: bool, max_cycles: int | None, resident: bool):
    R, C, m, D = lay.rows, lay.cols, lay.m, depth
    N, ntmax = R * C, lay.ntmax
    if max_cycles is None:
        max_cycles = _max_cycles(lay, 1)
    fm = Fmacs(lay, f, D, nbuf, resident)
    ahead = fm.ahead
    orq, rn, ir = f.col_ramp_q, f.col_north_q, f.col_core_q
    sunk, tk = f.sunk, f.ticks
    c_rin, c_sout, c_nin, c_rout = tk["col_ramp_in"], tk["col_south_out"], tk["col_north_in"], tk["col_ramp_out"]
    ndt = uint(ntmax)
    nt, nr = lay.nt.astype(ndt), np.zeros((R, C), ndt)  # partial sums per token; sent of this one
    tokr = np.zeros(N, np.int64)  # tokens whose reduce has started
    b = lambda: np.zeros((R, C), bool)
    go, mv, dl, t1, t2 = b(), b(), b(), b(), b()
    go8, mv8, dl8, t28 = (x.view(np.uint8) for x in (go, mv, dl, t2))
    partials, pbase, width = partial_sums(lay)  # the FMAC results of all cores and tokens (pe_fmac)
    lane = np.arange(ntmax)
    # The sums a core sends for token t are written (all nt of them) into its ring slot t % T
    # when it sends the first: core f's ring is sums[f + C]; sums[0:C] stay zero, the "north" of row 0.
    T = ring_tokens(D, int(lay.nt.min()))
    sums = np.zeros(((N + C) * T, ntmax), np.float32)  # core f's slot s at (f + C) * T + s
    sink = np.zeros((C, m * ntmax), np.float32)
    last_nt, last_ring = lay.nt[-1], N + np.arange(C)
    out_left = m * lay.n
    moving = False  # any wavelet on the column colors yet (before the first reduce: nothing to move)
    cycle = 0
    while out_left:
        if cycle >= max_cycles:
            raise RuntimeError(f"PE simulation made no progress for {max_cycles} cycles (deadlock)")
        if cycle % 255 == 254:
            f.flush()
        # -- decisions, all from the state at the start of the cycle --
        np.greater(ahead, 0, out=go)  # column reduce: a token's FMACs are done ...
        np.less(orq, D, out=t1)
        go &= t1  # ... the router's ramp queue has room ...
        np.greater(ir, 0, out=t1)
        go[1:] &= t1[1:]  # ... and (below row 0) the partial sum from the north has arrived
        if moving:
            np.greater(orq, 0, out=mv)  # ramp queue -> south neighbour's north queue (last row: the edge)
            np.less(rn, D, out=t1)
            mv[:-1] &= t1[1:]
            np.greater(rn, 0, out=dl)  # north queue -> core queue
            np.less(ir, D, out=t1)
            dl &= t1
        if fm.left:  # the row multicast and the FMACs (pe_fmac), the datapath not taken by the reduce
            fm.step(go)
        # -- apply: column reduce; the first wavelet of a token computes all its sums --
        if go.any():
            np.equal(nr, 0, out=t2)
            t2 &= go
            if t2.any():
                idx = np.flatnonzero(t2)
                t = tokr[idx]
                tokr[idx] = t + 1
                s = t % T
                sums[(idx + C) * T + s] = partials[(pbase[idx] + t * width)[:, None] + lane] + sums[idx * T + s]
            nr += go8
            np.equal(nr, nt, out=t2)
            ahead -= t28
            np.copyto(nr, 0, where=t2)
            orq += go8
            ir[1:] -= go8[1:]
            c_rin += go8
            moving = True
        # -- apply: column colors --
        if moving:
            orq -= mv8
            rn[1:] += mv8[:-1]
            rn -= dl8
            ir += dl8
            c_sout += mv8
            c_nin[1:] += mv8[:-1]
            c_rout += dl8
            if mv[-1].any():
                js = np.flatnonzero(mv[-1])
                s, w = sunk[js], last_nt[js]
                sink[js, s] = sums[last_ring[js] * T + (s // w) % T, s % w]
                sunk[js] += 1
                out_left -= js.size
        cycle += 1
        if check:
            f.check_bounds(D)
    f.flush()
    tr = tokr.reshape(R, C)  # reduces started
    return sink, cycle, (fm.consumed(), (tr - (nr > 0)) * lay.nt + nr)


def _max_cycles(lay: Layout, passes: int) -> int:
    """A generous bound: reaching it means the simulator deadlocked."""
    R, C, m = lay.rows, lay.cols, lay.m
    return 10 * (m * (lay.ktmax * int(lay.first_cycles.max()) + passes * lay.ntmax) + 4 * (R + C)) + 1000
