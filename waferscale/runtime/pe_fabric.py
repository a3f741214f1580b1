"""The fabric state of the PE-level simulator: the per-color queues of every router and core, the
edge injectors and sinks, and the counters that prove no wavelet is lost or duplicated.

Colors and ports of the mesh GEMM (one input port per color at every router, as the SDK requires):

- color 0, the row multicast of A: router (i, j) takes it from the west (column 0: from the edge
  injector of row i) into ``row_q`` and sends each wavelet to its own core (``row_core_q``) and, except
  in the last column, east into ``row_q`` of (i, j + 1). A multicast leaves only when every
  destination has room.
- colors 1 and 2, the column chain of partial sums, alternating by row parity so that no router
  takes one color from two ports: core (i, j) sends into its router's ramp queue ``col_ramp_q``,
  which forwards south into ``col_north_q`` of (i + 1, j) (last row: the south edge sink), which
  delivers to the core's queue ``col_core_q``.

The tree reduce (``TreeFabric``, ``backends/column_reduce.py``) keeps, per stream kind (phase 1 or
2, southward or northward): each router's input queue from its neighbour (``in_q``) and each core's
queue from its router (``core_q``); a core sends one stream, through its ramp queue (``ramp_q``). A
router either gives a stream's wavelets to its core or passes them on to the next router (phase 2
between group roots, and the column root's sums on their way to the south edge).

A queue is a count of the wavelets it holds (at most the queue depth) and a wavelet moves at most
one queue per cycle. Payloads are kept where they were made (see ``pe_sim``), which is the same
as copying them hop by hop because routers neither reorder nor change the wavelets of a color.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backends.column_reduce import KIND_NAMES, S1, S2

COUNTERS = ("row_in", "row_out", "col_ramp_in", "col_south_out", "col_north_in", "col_ramp_out")
TREE_COUNTERS = ("ramp_in", "link_out", "link_in", "ramp_out")


@dataclass
class Fabric:
    """Mutable state of one simulation. Queues are (rows, cols) uint8 counts; counters int64."""

    row_q: np.ndarray
    row_core_q: np.ndarray
    col_ramp_q: np.ndarray
    col_north_q: np.ndarray
    col_core_q: np.ndarray
    injected: np.ndarray  # (rows,) wavelets each row's edge injector has sent
    sunk: np.ndarray  # (cols,) wavelets the south edge has received per column
    # counters: wavelets accepted into (in) and sent out of (out) each router, per color group
    row_in: np.ndarray
    row_out: np.ndarray  # pops; each pop sends one copy to the ramp and one east (but the last column)
    col_ramp_in: np.ndarray
    col_south_out: np.ndarray
    col_north_in: np.ndarray
    col_ramp_out: np.ndarray
    # The simulator adds each cycle's events into uint8 ``ticks`` (one cheap add per counter) and
    # folds them into the counters at least every 255 cycles (``flush``), so none can wrap.
    ticks: dict
    peak: int = 0  # largest queue occupancy seen (tracked only when checking every cycle)

    # The queues are slabs of one (6, rows, cols) array, ``stack``: row_q, row_core_q, a slab the chain
    # loop keeps its cores' filled accumulator buffers in, col_ramp_q, col_north_q, col_core_q; so
    # one NumPy operation tests (or updates) them all. ``ticks`` likewise: row_out, two unused slabs,
    # col_south_out, col_ramp_out, col_ramp_in (one add in the chain's loop), row_in, col_north_in.
    stack: np.ndarray | None = None
    tick_stack: np.ndarray | None = None

    @classmethod
    def empty(cls, rows: int, cols: int) -> Fabric:
        qs = np.zeros((6, rows, cols), np.uint8)
        ts = np.zeros((8, rows, cols), np.uint8)
        c = lambda: np.zeros((rows, cols), np.int64)
        ticks = dict(zip(("row_out", "col_south_out", "col_ramp_out", "col_ramp_in", "row_in", "col_north_in"),
                         (ts[0], *ts[3:8])))
        return cls(qs[0], qs[1], qs[3], qs[4], qs[5], np.zeros(rows, np.int64), np.zeros(cols, np.int64),
                   c(), c(), c(), c(), c(), c(), ticks, stack=qs, tick_stack=ts)

    def flush(self) -> None:
        for name, tick in self.ticks.items():
            getattr(self, name)[...] += tick
            tick[...] = 0

    def queues(self) -> tuple[np.ndarray, ...]:
        return self.row_q, self.row_core_q, self.col_ramp_q, self.col_north_q, self.col_core_q

    def check_bounds(self, depth: int) -> None:
        """Every queue within [0, depth]: called every cycle in checking mode."""
        for q in self.queues():
            lo, hi = int(q.min()), int(q.max())
            if lo < 0 or hi > depth:
                raise AssertionError(f"queue occupancy {lo}..{hi} outside 0..{depth}")
            self.peak = max(self.peak, hi)

    def violations(self, a_consumed: np.ndarray, sums_consumed: np.ndarray, resident: bool = False) -> list[str]:
        """Conservation, router by router and link by link: every wavelet a router accepted it has
        sent on (or still holds), every wavelet sent over a link arrived at the other end, and every
        wavelet delivered to a core was consumed by it (or is still queued). ``a_consumed`` and
        ``sums_consumed`` come from the cores' own progress, not from these counters. ``resident``:
        A was in SRAM, so no wavelet may have moved on the row color."""
        self.flush()
        bad = _row_violations(self, a_consumed, resident)
        same = _checker(bad)
        sums_consumed = np.asarray(sums_consumed, np.int64)
        same("column colors: ramp in = south out + queued", self.col_ramp_in, self.col_south_out + self.col_ramp_q)
        same("column colors: south link sent = received", self.col_south_out[:-1], self.col_north_in[1:])
        same("column colors: north in = ramp out + queued", self.col_north_in, self.col_ramp_out + self.col_north_q)
        same("column colors: ramp delivered = consumed + queued", self.col_ramp_out[1:],
             sums_consumed[1:] + self.col_core_q[1:])
        same("column colors: south edge sent = received", self.col_south_out[-1], self.sunk)
        if self.col_north_in[0].any() or self.col_ramp_out[0].any():
            bad.append("column colors: row 0 received from the north")
        return bad


def _checker(bad: list[str]):
    def same(what: str, x: np.ndarray, y: np.ndarray) -> None:
        if x.shape != y.shape or not np.array_equal(x, y):
            diff = int(np.sum(x != y)) if x.shape == y.shape else -1
            bad.append(f"{what}: {diff} routers differ")
    return same


def _row_violations(f, a_consumed: np.ndarray, resident: bool) -> list[str]:
    """The row color (the multicast of A) of either fabric."""
    bad = []
    same = _checker(bad)
    if resident:
        if f.row_in.any() or f.row_out.any() or f.injected.any() or f.row_q.any() or f.row_core_q.any():
            bad.append("row color: a wavelet moved although A was resident")
        return bad
    a_consumed = np.asarray(a_consumed, np.int64)
    same("row color: in = out + queued", f.row_in, f.row_out + f.row_q)
    same("row color: east link sent = received", f.row_out[:, :-1], f.row_in[:, 1:])
    same("row color: edge injector sent = received", f.injected, f.row_in[:, 0])
    same("row color: ramp delivered = consumed + queued", f.row_out, a_consumed + f.row_core_q)
    return bad


@dataclass
class TreeFabric:
    """Mutable state of one simulation with the tree reduce. Per-kind arrays are (4, rows, cols),
    indexed by the stream kinds of ``column_reduce`` (S1, N1, S2, N2)."""

    row_q: np.ndarray
    row_core_q: np.ndarray
    ramp_q: np.ndarray  # (rows, cols) core -> its router, the core's one stream
    in_q: np.ndarray  # (4, rows, cols) router's input queue from its neighbour, per kind
    core_q: np.ndarray  # (4, rows, cols) router -> core, per kind
    injected: np.ndarray
    sunk: np.ndarray  # (cols,) wavelets the south edge has received per column
    row_in: np.ndarray
    row_out: np.ndarray
    ramp_in: np.ndarray  # (4, rows, cols) wavelets each router took from its core
    link_out: np.ndarray  # sent on the link towards the next router (or the south edge)
    link_in: np.ndarray  # taken from the neighbour into in_q
    ramp_out: np.ndarray  # given to the core
    ticks: dict
    contended: int = 0  # link-cycles in which a phase-2 wavelet waited for a phase-1 one
    peak: int = 0

    @classmethod
    def empty(cls, rows: int, cols: int) -> TreeFabric:
        q = lambda *s: np.zeros((*s, rows, cols), np.uint8)
        c = lambda *s: np.zeros((*s, rows, cols), np.int64)
        return cls(row_q=q(), row_core_q=q(), ramp_q=q(), in_q=q(4), core_q=q(4), injected=np.zeros(rows, np.int64),
                   sunk=np.zeros(cols, np.int64), row_in=c(), row_out=c(), ramp_in=c(4), link_out=c(4), link_in=c(4),
                   ramp_out=c(4), ticks={"row_in": q(), "row_out": q(), **{n: q(4) for n in TREE_COUNTERS}})

    flush = Fabric.flush
    check_bounds = Fabric.check_bounds

    def queues(self) -> tuple[np.ndarray, ...]:
        return self.row_q, self.row_core_q, self.ramp_q, self.in_q, self.core_q

    def violations(self, a_consumed: np.ndarray, sent: np.ndarray, consumed: np.ndarray, sends: np.ndarray,
                   resident: bool = False) -> list[str]:
        """As ``Fabric.violations``, per stream kind. ``sent`` (rows, cols) and ``consumed`` (4, rows,
        cols) come from the cores' progress; ``sends`` (4, rows, cols) marks the kind each core sends."""
        self.flush()
        bad = _row_violations(self, a_consumed, resident)
        same = _checker(bad)
        queued_ramp = sends * self.ramp_q.astype(np.int64)
        same("reduce: core sent = taken onto the ramp", sends * np.asarray(sent, np.int64), self.ramp_in)
        same("reduce: router in = out + queued", self.ramp_in + self.link_in,
             self.link_out + self.ramp_out + queued_ramp + self.in_q)
        for k, name in enumerate(KIND_NAMES):
            south = k in (S1, S2)  # router i sends to router i + 1; N1, N2: to router i - 1
            sent_on, got = (self.link_out[k, :-1], self.link_in[k, 1:]) if south else (self.link_out[k, 1:],
                                                                                        self.link_in[k, :-1])
            same(f"reduce {name}: link sent = received", sent_on, got)
            if self.link_in[k, 0 if south else -1].any():
                bad.append(f"reduce {name}: a wavelet came in from outside the grid")
            if not south and self.link_out[k, 0].any() or k == S1 and self.link_out[k, -1].any():
                bad.append(f"reduce {name}: a wavelet left the grid")
        same("reduce: south edge sent = received", self.link_out[S2, -1], self.sunk)
        same("reduce: ramp delivered = consumed + queued", self.ramp_out,
             np.asarray(consumed, np.int64) + self.core_q)
        return bad
