"""The A side of the PE-level mesh GEMM and the numbers of both reduces (``pe_sim``).

``Fmacs`` is the row multicast of A (or A resident in SRAM) and the FMACs that multiply it into each
core's partial sums, for the tree's loop (``pe_tree``; the chain's loop in ``pe_sim`` fuses the same
steps with its reduce). One ``step`` is one cycle; its decisions are taken from the state at the
start of the cycle, like the reduce's, and both are applied after. ``ahead`` (tokens FMAC'd but not
yet reduced) is shared with the reduce, which decrements it when a token's sums have left.

``products`` is the other interpreter over the same walk: the numbers. A wavelet's payload never
changes its timing, and the order in which a column's partial sums are added is fixed by the
reduce's plan (routers neither reorder nor change a color's wavelets; each core adds its incoming
streams in the plan's order), so C is computed row of cores by row of cores in that order, without
the cycle loop.
"""

from __future__ import annotations

import numpy as np

from ..backends.column_reduce import CHAIN, ColumnPlan
from .pe_layout import Layout
from .pe_links import DelayLine


def uint(top: int) -> type:
    """The narrowest unsigned dtype holding 0..top: same-dtype NumPy adds are the fastest."""
    return next(t for t in (np.uint8, np.uint16, np.uint32, np.uint64) if top <= np.iinfo(t).max)


def products(lay: Layout, p: ColumnPlan) -> np.ndarray:
    """C (m x n, float32) as the south edge receives it. The FMACs of core (i, j) for token t
    produce ``A[t, K_i] @ W[K_i, N_j]``: for a whole row of cores and all tokens that is one matmul
    of the row's A stream by its tiles side by side. Core (i, j) then adds, in float32, the sums
    each of its senders sent (``p.ins[i]``, in order) to its own; in the chain row 0 adds the zero
    that is its north. The column root's sums are C. Memory: a few rows' (m, n) sums at a time."""

    def own(r: int) -> np.ndarray:
        return np.matmul(lay.a_stream[r], lay.w_panels[r])  # (m, n)

    def value(r: int) -> np.ndarray:
        # follow one-input links down to a row with none or several (the chain: all rows), then add back up;
        # s + x == x + s bit for bit, so a one-input row may add its own sums to its sender's
        line = [r]
        while len(p.ins[line[-1]]) == 1:
            line.append(p.src[line[-1]][p.ins[line[-1]][0]])
        end = line.pop()
        v = own(end)
        if not p.ins[end] and p.reduce == CHAIN:
            v += np.float32(0)  # the north of row 0 (turns -0.0 into +0.0, as the wire would)
        for k in p.ins[end]:  # several inputs (the tree's roots), in the order the core adds them
            v += value(p.src[end][k])
        for row in reversed(line):
            v += own(row)
        return v

    return value(p.top)[:, : lay.n]


class Fmacs:
    """Row multicast and FMACs of every core. ``resident``: A is in each core's SRAM from cycle 0,
    so nothing is injected and a core's next element is always at hand. ``hop``: cycles a wavelet of A
    takes from the injector to the row's first router and from router to router (``pe_links``).
    ``avail`` (``pe_events.row_arrivals``): the cycle from which row i's injector may send each element
    (a GEMV fed by the kernel before it, ``pe_chain``)."""

    def __init__(self, lay: Layout, f, depth: int, nbuf: int, resident: bool, hop: int = 1,
                 avail: np.ndarray | None = None):
        R, C, m = lay.rows, lay.cols, lay.m
        self.line, self.sent = DelayLine(hop, (R, C)), np.zeros((R, C), np.uint8)  # the links east, and into them
        self.avail, self.row_ids, self.ktmax, self.cycle = avail, np.arange(R), lay.ktmax, 0
        self.f, self.D, self.nbuf, self.m, self.resident = f, depth, nbuf, m, resident
        kdt, wdt = uint(lay.ktmax), uint(lay.peak_cycles)
        self.kt, self.kk = lay.kt.astype(kdt), np.zeros((R, C), kdt)  # A elements per token; consumed of this one
        self.pe = lay.fmac_cycles.astype(wdt) * (not lay.sparse)  # a sparse core's next element: looked up
        self.base = None
        if lay.sparse:  # element e of core (i, j): elem[base[i, j] + e]
            self.elem = lay.element_cycles.astype(wdt).ravel()
            self.base = (np.arange(R * C, dtype=np.intp) * lay.ktmax).reshape(R, C)
            self.idx = np.zeros((R, C), np.intp)
        self.rem = lay.first_cycles.astype(wdt)  # datapath cycles left of the head element
        self.ovh = wdt(lay.lanes.costs.task_start)  # a token's first element also pays the task start
        self.ahead = np.zeros((R, C), np.uint8)  # tokens FMAC'd but not yet reduced: 0..nbuf
        self.tokf = np.zeros((R, C), uint(m))  # tokens whose FMACs are done
        self.tot_a = m * lay.kt[:, 0]
        self.left = m * R * C  # (core, token) pairs whose FMACs are still to do
        b = lambda: np.zeros((R, C), bool)
        self.fa, self.act, self.pop, self.t1, self.t2 = b(), b(), b(), b(), b()
        self.fa8, self.act8, self.pop8, self.t28 = (x.view(np.uint8) for x in (self.fa, self.act, self.pop, self.t2))
        self.tw, self.tk = np.zeros((R, C), wdt), np.zeros((R, C), kdt)

    def step(self, busy: np.ndarray) -> None:
        """One cycle; ``busy``: the cores whose datapath the reduce takes this cycle (it goes first)."""
        f, D, t1, fa, act = self.f, self.D, self.t1, self.fa, self.act
        qa, ia, inj = f.row_q, f.row_core_q, f.injected
        if self.resident:
            np.less(self.tokf, self.m, out=act)  # FMAC: an element left, a free buffer ...
        else:
            np.greater(qa, 0, out=fa)  # row multicast: to the core queue and (but the last column) east
            np.less(ia, D, out=t1)
            fa &= t1
            t1[...] = self.line.room(qa, D)  # the queue east as the sender sees it
            fa[:, :-1] &= t1[:, 1:]
            fi = (inj < self.tot_a) & t1[:, 0]  # edge injectors ...
            if self.avail is not None:  # ... once the producer has made the element
                fi &= self.avail[self.row_ids, np.minimum(inj, self.ktmax)] <= self.cycle
            np.greater(ia, 0, out=act)  # FMAC: an element at the queue head, a free buffer ...
        np.less(self.ahead, self.nbuf, out=t1)
        act &= t1
        np.greater(act, busy, out=act)  # ... and the datapath not taken by the reduce
        if not self.resident:  # -- apply: row color --
            fa8, tk = self.fa8, f.ticks
            qa -= fa8
            ia += fa8
            inj += fi
            tk["row_out"] += fa8
            sent = self.sent  # onto the links east (column 0: from the injector); in the queues what reaches them
            sent[:, 1:] = fa8[:, :-1]
            sent[:, 0] = fi
            got = self.line.push(sent, fa8)  # (a multicast frees its place in the row queue)
            qa += got
            tk["row_in"] += got
        # -- apply: FMACs; the element leaves the queue when its cycles are done (arithmetic, no masks) --
        pop, t2, tw = self.pop, self.t2, self.tw
        self.rem -= self.act8
        np.equal(self.rem, 0, out=pop)
        self.kk += self.pop8
        np.multiply(self.pop8, self.pe, out=tw)  # the next element's cycles
        self.rem += tw
        if not self.resident:
            ia -= self.pop8
        np.equal(self.kk, self.kt, out=t2)
        if t2.any():  # last element of a token: its partial sums are done
            self.tokf += self.t28
            self.ahead += self.t28
            np.multiply(self.t28, self.kt, out=self.tk)
            self.kk -= self.tk
            np.multiply(self.t28, self.ovh, out=tw)
            self.rem += tw
            self.left -= int(np.count_nonzero(t2))
        if self.base is not None:  # sparse: the next element (index: the token's elements done) costs its row's
            np.add(self.base, self.kk, out=self.idx)
            np.take(self.elem, self.idx, out=tw, mode="clip")
            np.multiply(tw, self.pop8, out=tw)
            self.rem += tw
        self.cycle += 1

    def consumed(self) -> np.ndarray:
        """A elements each core has FMAC'd."""
        return self.tokf.astype(np.int64) * self.kt + self.kk
