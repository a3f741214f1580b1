"""The A side of the PE-level mesh GEMM, shared by both reduces (``pe_sim``): the row multicast of
A (or A resident in SRAM) and the FMACs that multiply it into each core's partial sums.

One ``step`` is one cycle; its decisions are taken from the state at the start of the cycle, like
the reduce's, and both are applied after. ``ahead`` (tokens FMAC'd but not yet reduced) is shared
with the reduce, which decrements it when a token's sums have left.
"""

from __future__ import annotations

import numpy as np

from .pe_layout import Layout


def uint(top: int) -> type:
    """The narrowest unsigned dtype holding 0..top: same-dtype NumPy adds are the fastest."""
    return next(t for t in (np.uint8, np.uint16, np.uint32, np.uint64) if top <= np.iinfo(t).max)


def partial_sums(lay: Layout) -> tuple[np.ndarray, np.ndarray, int]:
    """The FMAC results of every core for every token, up front: the partial sums of core (i, j)
    for token t are A[t, K_i] times its tile, so for all cores and tokens that is one matmul of each
    row's A stream by the row's tiles. Core f's sums of token t start at ``pbase[f] + t * width`` of
    the flat (rows, m, width) array; the reduce's timing decides when a core has them."""
    width = lay.n + lay.ntmax
    partials = np.matmul(lay.a_stream, lay.w_panels).ravel()
    pbase = np.repeat(np.arange(lay.rows) * lay.m * width, lay.cols) + np.tile(lay.n_offsets, lay.rows)
    return partials, pbase, width


class Fmacs:
    """Row multicast and FMACs of every core. ``resident``: A is in each core's SRAM from cycle 0,
    so nothing is injected and a core's next element is always at hand."""

    def __init__(self, lay: Layout, f, depth: int, nbuf: int, resident: bool):
        R, C, m = lay.rows, lay.cols, lay.m
        self.f, self.D, self.nbuf, self.m, self.resident = f, depth, nbuf, m, resident
        kdt, wdt = uint(lay.ktmax), uint(int(lay.first_cycles.max()))
        self.kt, self.kk = lay.kt.astype(kdt), np.zeros((R, C), kdt)  # A elements per token; consumed of this one
        self.pe, self.first = lay.fmac_cycles.astype(wdt), lay.first_cycles.astype(wdt)
        self.need, self.work = self.first.copy(), np.zeros((R, C), wdt)  # cycles of the head element; done
        self.ahead = np.zeros((R, C), np.uint8)  # tokens FMAC'd but not yet reduced: 0..nbuf
        self.tokf = np.zeros((R, C), uint(m))  # tokens whose FMACs are done
        self.tot_a = m * lay.kt[:, 0]
        self.left = m * R * C  # (core, token) pairs whose FMACs are still to do
        b = lambda: np.zeros((R, C), bool)
        self.fa, self.act, self.pop, self.t1, self.t2 = b(), b(), b(), b(), b()
        self.fa8, self.act8, self.pop8, self.t28 = (x.view(np.uint8) for x in (self.fa, self.act, self.pop, self.t2))

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
            np.less(qa, D, out=t1)
            fa[:, :-1] &= t1[:, 1:]
            fi = (inj < self.tot_a) & (qa[:, 0] < D)  # edge injectors
            np.greater(ia, 0, out=act)  # FMAC: an element at the queue head, a free buffer ...
        np.less(self.ahead, self.nbuf, out=t1)
        act &= t1
        np.greater(act, busy, out=act)  # ... and the datapath not taken by the reduce
        if not self.resident:  # -- apply: row color --
            fa8, tk = self.fa8, f.ticks
            qa -= fa8
            qa[:, 1:] += fa8[:, :-1]
            qa[:, 0] += fi
            ia += fa8
            inj += fi
            tk["row_in"][:, 1:] += fa8[:, :-1]
            tk["row_in"][:, 0] += fi
            tk["row_out"] += fa8
        # -- apply: FMACs; the element leaves the queue when its cycles are done --
        pop, t2 = self.pop, self.t2
        self.work += self.act8
        np.greater_equal(self.work, self.need, out=pop)
        self.kk += self.pop8
        np.copyto(self.work, 0, where=pop)  # work == need
        np.copyto(self.need, self.pe, where=pop)
        if not self.resident:
            ia -= self.pop8
        np.equal(self.kk, self.kt, out=t2)
        if t2.any():  # last element of a token: its partial sums are done
            self.tokf += self.t28
            self.ahead += self.t28
            np.copyto(self.kk, 0, where=t2)
            np.copyto(self.need, self.first, where=t2)
            self.left -= int(np.count_nonzero(t2))

    def consumed(self) -> np.ndarray:
        """A elements each core has FMAC'd."""
        return self.tokf.astype(np.int64) * self.kt + self.kk
