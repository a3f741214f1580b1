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
   element of a token also pays the task start (``Costs.task_start``); each element then takes
   ``gemm.element_cycles(nt)`` datapath cycles (an AXPY into the ``nt`` partial sums, then it leaves).
   Partial sums are double buffered (``PE_ACC_BUFFERS``): token t + 2 starts once t's sums have left.
3. **Column reduce.** When the FMACs of a token are done, the core streams its ``nt`` partial sums
   south, one wavelet per cycle: row 0 sends its own; row i > 0 takes each partial sum arriving
   from the north, adds its own and sends the sum on. This add-and-forward occupies the datapath
   for one cycle per element and goes before the FMACs of the next token (which wait that cycle).
   Row ``rows - 1`` sends ``C[t, N_j]`` out of the south edge. The chain alternates colors 1 and 2
   by row parity. This is ``reduce="chain"``, the default.

``mask=`` (or ``sparse=True``): W is a sparse weight (``backends/sparse.py``). Step 2 then costs
element ``e`` of a token on core (i, j) ``sparse.row_cycles`` of the non-zeros in row ``e`` of that
core's tile (an indexed AXPY over them, the dense AXPY where the row is too full to gain, or the
skip of an empty row), looked up per core and element (``pe_layout.tile_costs``); everything else
is the dense walk, so a core with more work holds its row's multicast and its column's chain, and
the slowest core paces the grid by itself. C is ``a @ (w * mask)``.

``resident_a=True``: each core's elements of A are in its SRAM at cycle 0, as in WaferLLM's GEMV
benchmark (x placed before the kernel starts): step 1 is skipped and a core's next element is
always at hand. Cycles then count from the kernel's start.

``reduce="tree"``: step 3 is the two-level centre-rooted tree of WaferLLM's MeshGEMV (He et al.,
OSDI 2025), along each column (``backends/column_reduce.py`` has the plan, ``pe_tree`` the loop).
The rows are cut into ``round(sqrt(rows))`` groups of consecutive rows (``blocks.split``), rooted at
their centre row. Phase 1: in each group the rows above the root send south to it in a chain and
the rows below north; the root adds the stream from below, then the one from above. Phase 2: the
group roots do the same towards the root of the centre group, each root-to-root stream passing
through the routers between them (``hop_cycles`` per hop, no ramp); the column root adds the streams
from below and from above and sends the column's ``nt`` sums south, through the routers below it,
out of the south edge. Each add of an incoming stream is a pass of ``nt`` cycles of the receiving
core's datapath (``Costs.psum_add`` per wavelet), the last pass fused with the core's send, so
the column root takes four passes per token where a chain row takes one. The tree uses six colors
besides A's (phase 1 two, both directions with opposite row parities; phase 2 two per direction),
checked by ``ColumnPlan.color_conflicts``. Its phase-2 streams share link directions with the phase-1 chains
they cross: a link direction carries one wavelet per cycle whatever its color, and the phase-1
wavelet goes first (``pe_tree``).

How the simulator models it (``pe_fabric`` has the queues): each router has, per color, an input
queue of ``pe_queue_depth`` wavelets (the machine file's), and each core an input queue of the same depth per color. In
one cycle a wavelet moves at most one stage: router to next router (one hop, ``hop_cycles``; a hop
of several cycles, a WSE-3's 2, is a delay line, ``pe_links``), router to its core or core to its
router (the ramp, ``ramp_cycles``). A wavelet moves only if
the receiving queue had room at the start of the cycle (credit flow control: back-pressure), and
a multicast only if all its receivers had. In the chain each link direction carries one color, so
one wavelet per link per cycle holds by construction; the tree arbitrates shared links. The ramp
from a router to its core carries each color on its own queue (A and partial sums at once, as
before). All decisions of a cycle are taken from the state at its start and then applied together,
so the order in which cores are visited is moot.

Payloads. Timing and numbers are kept apart, as a wavelet's payload never changes its timing: they
are two interpreters over one walk. A queue is a count: the A wavelets of row i are ``A[t, K_i]`` in
a fixed order, so nothing is lost by not copying them hop by hop (routers neither reorder nor change
a color's wavelets), and the order in which the partial sums of a column are added is the plan's,
whatever the cycles: core (i, j) adds the sums its senders sent, in the order of
``ColumnPlan.ins``, to its own FMAC results ``A[t, K_i] @ W[K_i, N_j]``. ``pe_fmac.products``
computes C that way, row of cores by row of cores (one matmul per row, a few rows' sums held at a
time), so every element of C is the float32 sum, in the reduce's order, of the partial sums that
travelled to the south edge; the f16 of a real run would change only the lanes, which ``lanes``
carries. The cycle loop moves counts only; its counters prove that every wavelet sent arrived and
was consumed (``Fabric.violations``).

Every step is a NumPy operation over the whole grid (``(rows, cols)`` arrays, neighbours by
slicing); there is no Python loop over cores. The chain's cycle loop (``_run``) keeps the queues,
the events of a cycle and the cores' countdowns in stacked arrays, one operation serving several.
By default the chain is solved by event times (``pe_events``; the tree likewise where it fits,
``pe_tree_events``): every move's cycle, element by element and sum by sum, at a fraction of the
calls; elsewhere the tree's loop fused (``pe_tree_fused``: the same cycles); ``engine="cycles"``
(and ``check``) keep the loops.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..backends import assumptions as A
from ..backends.column_reduce import CHAIN, REDUCES, plan
from ..backends.datapath import Datapath
from ..backends.machine import WSE2, Machine
from ..errors import UsageError
from .pe_events import row_arrivals, run_events
from .pe_fabric import Fabric, TreeFabric
from .pe_fmac import products, uint
from .pe_layout import Layout, layout
from .pe_machine import check_machine
from .pe_tree_events import solve_tree


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
    exits: np.ndarray | None = None  # (n,) chain GEMV: the cycle each output element left the south edge


def simulate_gemm(a: np.ndarray, w: np.ndarray, rows: int, cols: int, lanes: Datapath | float, *,
                  depth: int | None = None, check: bool = False, sram_bytes: int | None = None,
                  max_cycles: int | None = None, reduce: str = CHAIN, resident_a: bool = False,
                  sparse: bool = False, mask: np.ndarray | None = None, arrivals: np.ndarray | None = None,
                  engine: str = "events", machine: Machine = WSE2, progress=None) -> PeResult:
    """Run ``a @ w`` on a ``rows x cols`` grid of cores with datapath ``lanes`` (``Machine.datapath``;
    a bare number is a lane rate with f16 operands and accumulators).

    ``reduce``: ``"chain"`` or ``"tree"`` (``backends/column_reduce.py``). ``resident_a``: each
    core's elements of A are in its SRAM at cycle 0 (no injection, no row multicast). ``check``
    verifies every queue's occupancy every cycle (slower). ``sram_bytes``, if given, is the SRAM a
    core may use; a tile that does not fit is a ``UsageError``.

    ``sparse``: W is a sparse weight, its non-zeros those of ``w`` (or, given ``mask``, a bool array
    of W's shape, those where ``mask`` is set: C is then ``a @ (w * mask)``), held and multiplied as
    ``backends/sparse.py`` models it: per tile row, one indexed AXPY over its non-zeros
    (``sparse.row_cycles``), an empty row skipped. Each core's cycles per element are its own
    (``pe_layout.tile_costs``); the rest of the walk is the dense one's.

    ``arrivals`` (a chain GEMV with A streamed, ``pe_chain.py``): the cycle from which each element of
    the vector is at the west edge (a producer made it); row i's injector sends its next element only
    from then. The result then also has ``exits``, the cycle each output element left the south edge.

    ``engine``: ``"events"``: the chain by event times (``pe_events``: the same cycles, far faster), the
    tree by its loop compiled (``pe_tree_jit``, with numba, up to 256 x 256 cores), else by event times
    where ``pe_tree_events.fits`` and its solver shows its cycles to be the loop's, else by its loop
    fused (``pe_tree_fused``); ``"cycles"`` (and ``check``, and a chain with a sparse W at ``depth=1``)
    run the cycle loop. ``machine``: ramp and partial-sum add of one cycle, else not supported; a hop of
    several cycles (a WSE-3's 2) runs the chain by event times too (``pe_events`` takes the hop), the
    tree by its compiled loop up to ``pe_tree_events.JIT_HOP_MAX_CORES`` cores, else by its fused
    loop from ``pe_tree_events.FUSED_HOP_MIN_CORES`` cores (both by ``pe_links``' rule; the tree's
    event solver has one-cycle links only) and by the loop itself below them, and any cycle loop, or a tree fed by
    ``arrivals``, on the tree's loop with delay lines (the chain as a plan on it,
    ``pe_tree.run_tree``, which takes the chain loop's cycles).

    ``progress``, if given, is called with the cycles simulated so far, every 1,024 cycles, by the
    runs that can take minutes: the tree's cycle loops (fused, and the loop itself); the chain by
    event times and the tree's compiled loop and event solver (seconds) do not call it.
    """
    check_machine(machine, lanes)
    hop = machine.hop_cycles
    depth = machine.pe_queue_depth if depth is None else depth
    if depth < 1:
        raise ValueError("queue depth must be at least 1")
    if engine not in ("events", "cycles"):
        raise ValueError(f"unknown engine {engine!r}: use events or cycles")
    if reduce not in REDUCES:
        raise ValueError(f"unknown reduce {reduce!r}: use one of {', '.join(REDUCES)}")
    t0 = time.perf_counter()
    (m, k), n = np.shape(a), np.shape(w)[1]
    if sparse and mask is None:
        mask = np.asarray(w) != 0
    lay = layout(a, w, rows, cols, lanes, mask)
    need = core_sram_bytes(k, n, rows, cols, depth, m=m, reduce=reduce, resident_a=resident_a,
                           tile_bytes=None if mask is None else int(lay.tile_bytes.max()))
    if sram_bytes is not None and need > sram_bytes:
        what = "W" if mask is None else f"sparse W ({int(lay.nnz.max())} non-zeros)"
        raise UsageError(f"a {-(-k // min(rows, k))}x{-(-n // min(cols, n))} tile of {what} per core needs {need} "
                         f"bytes of SRAM and a core has {sram_bytes}: use a larger mesh or a smaller matrix")
    nbuf = A.PE_ACC_BUFFERS
    p = plan(lay.rows, reduce)
    if arrivals is not None and reduce != CHAIN:
        raise ValueError("arrivals are modelled with the chain reduce only")
    avail = None if arrivals is None else row_arrivals(lay, np.asarray(arrivals, np.int64))
    exits = None if arrivals is None else np.zeros(m * n, np.int64)
    late = 0 if arrivals is None else int(np.max(arrivals))  # the deadlock bound waits for the last element
    loop = check or engine == "cycles" or nbuf > 2 or (depth == 1 and lay.sparse)
    if reduce == CHAIN and (hop == 1 or not loop):
        fabric = Fabric.empty(lay.rows, lay.cols)
        top = _max_cycles(lay, 1) * hop + late if max_cycles is None else max_cycles
        if loop:
            cycles, (a_done, sums_done) = _run(lay, fabric, depth, nbuf, check, top, resident_a, avail, exits)
        else:
            cycles, (a_done, sums_done) = run_events(lay, fabric, depth, nbuf, check, top, resident_a, avail, exits,
                                                     hop)
        bad = fabric.violations(a_done, sums_done, resident_a)
    else:  # the tree, or the loop at a hop of several cycles: the tree's loop (with the chain as a plan)
        top = _max_cycles(lay, 4) * hop + late if max_cycles is None else max_cycles
        fabric, cycles, done = solve_tree(lay, p, depth, nbuf, check, engine, top, resident_a, hop, avail, exits,
                                          progress)
        bad = fabric.violations(*done, resident=resident_a)
    return PeResult(c=products(lay, p), cycles=cycles, rows=lay.rows, cols=lay.cols,
                    wall_s=time.perf_counter() - t0, sram_bytes_per_core=need, fabric=fabric, violations=tuple(bad),
                    exits=exits)


def core_sram_bytes(k: int, n: int, rows: int, cols: int, depth: int = WSE2.pe_queue_depth, *, m: int = 1,
                    reduce: str = CHAIN, resident_a: bool = False, tile_bytes: int | None = None) -> int:
    """SRAM (f32 words) the busiest core keeps: its W tile, its partial-sum buffers and the ring
    of the sums it has sent (the payloads of its wavelets in flight); with ``resident_a``, also its
    elements of A for all ``m`` tokens. A sparse tile takes ``tile_bytes`` (the fullest tile's
    compressed rows, ``sparse.row_bytes``) in place of its dense words."""
    rows, cols = min(rows, k), min(cols, n)
    kt, nt = -(-k // rows), -(-n // cols)
    ring = max(_rings(plan(rows, reduce), depth, n // cols)) if reduce != CHAIN else ring_tokens(depth, n // cols)
    tile = 4 * nt * kt if tile_bytes is None else tile_bytes
    return tile + 4 * nt * (A.PE_ACC_BUFFERS + ring) + (4 * m * kt if resident_a else 0)


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


def _run(lay: Layout, f: Fabric, depth: int, nbuf: int, check: bool, max_cycles: int, resident: bool,
         avail: np.ndarray | None = None, exits: np.ndarray | None = None):
    """The chain's cycle loop: the row multicast, the FMACs and the column reduce of every core,
    fused. The queues and each core's filled buffers are slabs of one array (``Fabric.stack``), a
    cycle's events and a core's two countdowns (partial sums left of the token, datapath cycles left
    of the head A element) likewise, so that a cycle is a few NumPy operations over all of them: a
    wavelet leaves queue k and enters queue k + 1 (or the neighbour's), both countdowns tick alike.
    Rows that cannot act are left out of the operations, checked every ``SPAN`` cycles: at the top,
    rows whose work is over (all tokens reduced, nothing queued, as for every row above them: the
    top falls idle first as the chain drains); at the bottom, rows that wait for the reduce's first
    wave (buffers full, no partial sum anywhere in the row, the row multicast blocked, as for every
    row below them), but for ``SPAN`` rows above those: a wavelet moves one row per cycle at most,
    so none can reach a row left out before the next check."""
    R, C, m, D = lay.rows, lay.cols, lay.m, depth
    Q = f.stack  # 0 row_q, 1 row_core_q (resident: 1 while the core has tokens to FMAC), 2 ahead, 3 col_ramp_q,
    bound = np.array([D, D, nbuf, D, D, D], np.uint8)[:, None, None]  # 4 col_north_q, 5 col_core_q
    POS, ROOM = np.zeros((2, 6, R, C), bool)  # queue > 0 (ahead: a token FMAC'd); queue < its bound
    # events: 0 fa (row multicast), 1 pop (an A element FMAC'd), 2 a token's reduce done, 3 mv (south),
    # 4 dl (north queue -> core): each leaves queue k; 5 go (a partial sum onto the ramp), 6 act (an FMAC cycle)
    EV = np.zeros((7, R, C), bool)
    cdt = uint(max(lay.peak_cycles, lay.ntmax))
    nt = lay.nt.astype(cdt)
    CNT = np.stack([nt, lay.first_cycles.astype(cdt)])  # partial sums left to send; cycles left of the element
    # the next element's cycles: a dense core's are its own constant; a sparse core's are looked up below
    RELOAD, TMP = np.stack([nt, lay.fmac_cycles.astype(cdt) * (not lay.sparse)]), np.zeros((2, R, C), cdt)
    if lay.sparse:  # element e of core (i, j): ELEM[BASE[i, j] + e]
        ELEM = lay.element_cycles.astype(cdt).ravel()
        BASE = (np.arange(R * C, dtype=np.intp) * lay.ktmax).reshape(R, C)
        IDX, NEXT = np.zeros((R, C), np.intp), np.zeros((R, C), cdt)
    kdt = uint(lay.ktmax)
    KT, KLEFT, TK = lay.kt.astype(kdt), lay.kt.astype(kdt), np.zeros((R, C), kdt)  # A elements left of the token
    T2 = np.zeros((R, C), bool)
    TOKF = np.zeros((R, C), uint(m))  # tokens FMAC'd
    ovh = cdt(lay.lanes.costs.task_start)
    TOT_A = m * lay.kt[:, 0]
    sunk = f.sunk
    if resident:
        Q[1] = 1

    def rows(lo: int, hi: int) -> tuple:
        r = slice(lo, hi)
        q, ev, tick = Q[:, r], EV[:, r], f.tick_stack[:, r]
        ev8 = ev.view(np.uint8)
        return (q, *q, POS[:, r], ROOM[:, r], ev, ev8, *(ev[i] for i in (0, 1, 3, 5, 6)),
                *(ev8[i] for i in (0, 1, 3, 5)), ev8[5:7], ev[2:0:-1], CNT[:, r], CNT[1, r], TMP[:, r],
                RELOAD[:, r], KT[r], KLEFT[r], TK[r], T2[r], T2[r].view(np.uint8), TOKF[r], tick[0],
                tick[3:6], tick[6], tick[7], f.injected[r], TOT_A[r])

    def waiting_from() -> int:
        """The first row of the bottom block of rows that cannot act until a partial sum reaches them."""
        quiet = (Q[2] == nbuf).all(axis=1) & ~Q[3:].any(axis=(0, 2))
        if not resident:
            fa_can = (Q[0] > 0) & (Q[1] < D)
            fa_can[:, :-1] &= Q[0, :, 1:] < D
            quiet &= ~fa_can.any(axis=1) & ~((f.injected < TOT_A) & (Q[0, :, 0] < D))
        quiet[0] = False
        return int(np.flatnonzero(~quiet)[-1]) + 1

    def sparse_rows(lo: int, hi: int) -> tuple:
        return (BASE[lo:hi], IDX[lo:hi], NEXT[lo:hi]) if lay.sparse else (None,) * 3

    lo, hi = 0, R
    base, idx, nxt = sparse_rows(lo, hi)
    (q, qa, ia, ahead, orq, rn, ir, pos, room, ev, ev8, fa, pop, mv, go, act, fa8, pop8, mv8, go8, ticked, ran_out, cnt,
     rem, tmp, reload, kt, kleft, tk, t2, t28, tokf, row_out, ticks, row_in, north_in, inj, tot_a) = rows(lo, hi)
    out_left = m * lay.n
    cycle = 0
    while out_left:
        if cycle >= max_cycles:
            raise RuntimeError(f"PE simulation made no progress for {max_cycles} cycles (deadlock)")
        if cycle % 255 == 254:
            f.flush()
        if cycle % SPAN == SPAN - 1:
            was, wait = (lo, hi), waiting_from()
            if wait > hi:
                raise RuntimeError(f"cycle {cycle}: a row left out as waiting could act (simulator bug)")
            while lo < R - 1 and TOKF[lo].min() == m and not Q[2:, lo].any():
                lo += 1
            hi = max(lo + 1, min(R, wait + SPAN))
            if (lo, hi) != was:
                (q, qa, ia, ahead, orq, rn, ir, pos, room, ev, ev8, fa, pop, mv, go, act, fa8, pop8, mv8, go8, ticked,
                 ran_out, cnt, rem, tmp, reload, kt, kleft, tk, t2, t28, tokf, row_out, ticks, row_in, north_in, inj,
                 tot_a) = rows(lo, hi)
                base, idx, nxt = sparse_rows(lo, hi)
        # -- decisions, all from the state at the start of the cycle --
        np.greater(q, 0, out=pos)
        np.less(q, bound, out=room)
        # queue k has a wavelet and queue k + 1 room: 0 the row multicast (core side), 1 an FMAC (an element
        # at hand, a free buffer), 2 a reduce (a token FMAC'd, ramp room), 4 north queue -> core
        np.logical_and(pos[:5], room[1:], out=ev[:5])
        fa[:, :-1] &= room[0, :, 1:]  # ... and the multicast east
        if lo:  # the partial sum from the north is there
            np.logical_and(ev[2], pos[5], out=go)
        else:  # (row 0 has no north)
            np.copyto(go[0], ev[2, 0])
            np.logical_and(ev[2, 1:], pos[5, 1:], out=go[1:])
        np.greater(ev[1], go, out=act)  # the datapath not taken by the reduce (it goes first)
        np.logical_and(pos[3, :-1], room[4, 1:], out=mv[:-1])  # ramp queue -> south neighbour (last row: the edge)
        np.copyto(mv[-1], pos[3, -1])
        if not resident:
            fi = (inj < tot_a) & room[0, :, 0]  # edge injectors
            if avail is not None:  # ... once the producer has made the element
                fi &= avail[np.arange(lo, hi), np.minimum(inj, lay.ktmax)] <= cycle
        # -- apply: the countdowns; an A element leaves its queue when its cycles are done, and a
        # token's reduce is done when its last partial sum is on the ramp --
        cnt -= ticked
        np.equal(cnt, 0, out=ran_out)
        np.multiply(ran_out.view(np.uint8), reload, out=tmp)  # the next token's sums; the next element's cycles
        cnt += tmp
        kleft -= pop8
        np.equal(kleft, 0, out=t2)
        if t2.any():  # last element of a token: its partial sums are done
            tokf += t28
            ahead += t28
            np.multiply(t28, kt, out=tk)
            kleft += tk
            np.multiply(t28, ovh, out=tmp[1])  # the next token's first element pays the task start
            rem += tmp[1]
            if resident:
                np.less(tokf, m, out=ia.view(bool))
        if base is not None:  # sparse: the next element (index: the token's elements done) costs its own row's
            np.subtract(kt, kleft, out=tk)
            np.add(base, tk, out=idx)
            np.take(ELEM, idx, out=nxt, mode="clip")
            np.multiply(nxt, pop8, out=nxt)
            rem += nxt
        if resident:
            ev8[1] = 0  # A is in SRAM: no element leaves a queue
        # -- apply: every queue a wavelet left, every queue it entered, the counters --
        q[:5] -= ev8[:5]  # qa -= fa, ia -= pop, ahead -= reduce done, orq -= mv, rn -= dl
        if lo:
            ir -= go8
        else:
            ir[1:] -= go8[1:]
        q[1::4] += ev8[0::4]  # ia += fa, ir += dl
        orq += go8
        rn[1:] += mv8[:-1]
        row_out += fa8
        ticks += ev8[3:6]  # col_south_out, col_ramp_out, col_ramp_in
        north_in[1:] += mv8[:-1]
        if not resident:
            qa[:, 1:] += fa8[:, :-1]
            qa[:, 0] += fi
            inj += fi
            row_in[:, 1:] += fa8[:, :-1]
            row_in[:, 0] += fi
        if mv[-1].any():  # the south edge
            if hi < R:
                raise RuntimeError(f"cycle {cycle}: row {hi - 1} sent south to a row left out (simulator bug)")
            if exits is not None:
                js = np.flatnonzero(mv[-1])
                exits[lay.n_offsets[js] + sunk[js]] = cycle + 1
            sunk += mv8[-1]
            out_left -= int(np.count_nonzero(mv[-1]))
        cycle += 1
        if check:
            f.check_bounds(D)
    f.flush()
    if resident:
        Q[1] = 0
    tokf = TOKF.astype(np.int64)
    return cycle, (tokf * KT + (KT - KLEFT), (tokf - Q[2]) * lay.nt + (lay.nt - CNT[0]))


SPAN = 32  # cycles between the chain loop's checks for rows that cannot act (and the rows of margin)


def _max_cycles(lay: Layout, passes: int) -> int:
    """A generous bound: reaching it means the simulator deadlocked."""
    R, C, m = lay.rows, lay.cols, lay.m
    return 10 * (m * (lay.ktmax * lay.peak_cycles + passes * lay.ntmax) + 4 * (R + C)) + 1000
