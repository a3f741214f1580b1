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

A queue is a count of the wavelets it holds (at most the queue depth) and a wavelet moves at most
one queue per cycle. Payloads are kept where they were made (see ``pe_sim``), which is the same
as copying them hop by hop because routers neither reorder nor change the wavelets of a color.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COUNTERS = ("row_in", "row_out", "col_ramp_in", "col_south_out", "col_north_in", "col_ramp_out")


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

    @classmethod
    def empty(cls, rows: int, cols: int) -> Fabric:
        q = lambda: np.zeros((rows, cols), np.uint8)
        c = lambda: np.zeros((rows, cols), np.int64)
        return cls(q(), q(), q(), q(), q(), np.zeros(rows, np.int64), np.zeros(cols, np.int64),
                   c(), c(), c(), c(), c(), c(), {name: q() for name in COUNTERS})

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

    def violations(self, a_consumed: np.ndarray, sums_consumed: np.ndarray) -> list[str]:
        """Conservation, router by router and link by link: every wavelet a router accepted it has
        sent on (or still holds), every wavelet sent over a link arrived at the other end, and every
        wavelet delivered to a core was consumed by it (or is still queued). ``a_consumed`` and
        ``sums_consumed`` come from the cores' own progress, not from these counters."""
        self.flush()
        bad = []

        def same(what: str, x: np.ndarray, y: np.ndarray) -> None:
            if x.shape != y.shape or not np.array_equal(x, y):
                diff = int(np.sum(x != y)) if x.shape == y.shape else -1
                bad.append(f"{what}: {diff} routers differ")

        a_consumed, sums_consumed = np.asarray(a_consumed, np.int64), np.asarray(sums_consumed, np.int64)
        same("row color: in = out + queued", self.row_in, self.row_out + self.row_q)
        same("row color: east link sent = received", self.row_out[:, :-1], self.row_in[:, 1:])
        same("row color: edge injector sent = received", self.injected, self.row_in[:, 0])
        same("row color: ramp delivered = consumed + queued", self.row_out, a_consumed + self.row_core_q)
        same("column colors: ramp in = south out + queued", self.col_ramp_in, self.col_south_out + self.col_ramp_q)
        same("column colors: south link sent = received", self.col_south_out[:-1], self.col_north_in[1:])
        same("column colors: north in = ramp out + queued", self.col_north_in, self.col_ramp_out + self.col_north_q)
        same("column colors: ramp delivered = consumed + queued", self.col_ramp_out[1:],
             sums_consumed[1:] + self.col_core_q[1:])
        same("column colors: south edge sent = received", self.col_south_out[-1], self.sunk)
        if self.col_north_in[0].any() or self.col_ramp_out[0].any():
            bad.append("column colors: row 0 received from the north")
        return bad
