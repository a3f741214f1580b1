"""The chain's cycle loop (``pe_sim._run``) solved by event times: the same cycles, per element
and per wavelet instead of per cycle.

In the chain every move is greedy and no two moves compete for a link or a queue: a wavelet moves
in the first cycle in which the rules of ``pe_sim`` let it (it is at the head of its queue, the
receiving queues had room at the start of the cycle, one wavelet per queue per cycle). Each rule is
"event X happened before this cycle", so the cycle of each move is the max of the cycles of the
moves it waits for, plus one; the only rule that is not is the datapath, which the reduce takes
before the FMACs (``act``), and that one is a count of the reduce's cycles in the element's window.
With ``a`` an element of row i's stream of A, ``w`` a partial sum of core (i, j), D the queue
depth, and every time the cycle in which the move happened:

- inject(a) = max(inject(a - 1) + 1, fa(a - D, 0) + 1, arrival(a)): row_q of column 0 had room;
- fa(a, j) = max(fa(a, j - 1) + 1 (or inject(a) + 1), fa(a - 1, j) + 1, pop(a - D, j) + 1,
  fa(a - D, j + 1) + 1): the row multicast, its core queue and the east row_q with room; one
  running max along the row (``np.maximum.accumulate``);
- the FMAC of ``a`` starts at max(pop(a - 1) + 1, fa(a) + 1, and for a token's first element the
  reduce of the token ``nbuf`` back done + 1) and pops at the cycle of its ``c``-th cycle that is
  not one of the core's reduce (``go``) cycles (those of the tokens still in its buffers);
- go(w) = max(go(w - 1) + 1, its token's last pop + 1, mv(w - D) + 1, dl(w) + 1 (rows > 0)),
  mv(w) = max(go(w) + 1, mv(w - 1) + 1, dl(w - D, south) + 1 (not the last row)), dl(w) =
  max(mv(w, north) + 1, dl(w - 1) + 1, go(w - D) + 1): the reduce, one running max down the column.

A token's elements then its reduce, token by token: the reduce of token t takes the datapath only
from the FMACs of the tokens after it that its buffers let start, and those start after its last
pop. NumPy runs over all cores for each element and each partial sum (about ``m (kt + nt)`` steps
where the loop takes ``m kt`` elements' cycles each). Where it may wait on itself it cannot (a
wavelet never waits for a later one), so nothing deadlocks; the counters of ``Fabric`` are filled
with the totals every router passes, not counted (``check=True`` runs the cycle loop, which counts
them). ``tests/test_pe_events.py`` holds the two to the same cycles.

A hop of several cycles (``hop``, a WSE-3's 2: ``pe_links``) takes ``hop`` in place of the one cycle
of each move over a link (injector to the first router, router to router, the last router to the
south edge) and of each credit back over one (the terms ``fa(a - D, j + 1)``, ``fa(a - D, 0)`` and
``dl(w - D, south)``); a chain stage is then ``hop + 2`` cycles. ``tests/test_pe_links.py`` holds
this to the tree's loop with the chain as its plan (``pe_tree.run_tree``), which has delay lines.
"""

from __future__ import annotations

import numpy as np

from .pe_fabric import Fabric
from .pe_layout import Layout, blocks


def run_events(lay: Layout, f: Fabric, depth: int, nbuf: int, check: bool, max_cycles: int, resident: bool,
               avail: np.ndarray | None = None, exits: np.ndarray | None = None, hop: int = 1):
    """As ``pe_sim._run`` (same arguments and result; ``check`` is the cycle loop's), by event times.
    ``nbuf`` <= 2: a token's FMACs overlap the reduce of the token before at most. ``hop``: cycles a
    link takes (``Machine.hop_cycles``)."""
    if nbuf > 2:
        raise NotImplementedError("event times with more than two accumulator buffers: use the cycle loop")
    R, C, m, D = lay.rows, lay.cols, lay.m, depth
    ns = lay.nt[0]
    ntmax, ntmin = int(ns[0]), int(ns[-1])
    c1 = int(np.count_nonzero(ns == ntmax))  # larger blocks first
    a = ElementEvents(lay, depth, nbuf, max_cycles, resident, avail, hop)
    dt, neg, big = a.dt, a.neg, a.big
    # the reduce's, in blocks of columns (nb, R, cw), each block contiguous (the columns are independent)
    cw = _block_width(C, max(1, BLOCK // R))
    nb = C // cw
    GO, MV, DL = np.empty((3, D + ntmax, nb, R, cw), dt)
    GO[:D] = MV[:D] = DL[:D] = neg
    DL[:, :, 0] = neg  # row 0 has no north
    wide = (np.arange(C) < c1).reshape(nb, 1, cw)  # the columns with ntmax partial sums
    GO[D + ntmax - 1] = np.where(wide, neg, big)  # a column with fewer: nothing in the last slot
    tok_b = np.empty((nb, R, cw), dt)
    DONE, tokdone = a.DONE, a.tokdone

    def reduce(t: int, b: int) -> None:
        """The partial sums of token t in the columns of block b."""
        lim = min(cw, max(0, c1 - b * cw))  # its columns with ntmax partial sums
        for s in range(ntmax):
            cs = slice(0, cw if s < ntmin else lim)
            if cs.stop == 0:
                continue
            go_p, go_b, mv_p, mv_b, dl_p, dl_b = (h[i, b, :, cs] for h in (GO, MV, DL) for i in (D + s - 1, s))
            go = np.maximum(go_p, mv_b, out=GO[D + s, b, :, cs])
            go += 1
            np.maximum(go, tok_b[b, :, cs], out=go)
            q = np.maximum(dl_p, go_b)
            q += 1
            mm = mv_p + 1
            np.maximum(mm[:-1], dl_b[1:] + hop, out=mm[:-1])  # (the south queue's credit comes back over the link)
            np.maximum(go[1:], q[1:] + 1, out=go[1:])
            np.maximum(go[1:], mm[:-1] + hop + 1, out=go[1:])
            _scan(go, hop + 2, axis=0)  # and three moves per row: the chain down the column
            mv = np.maximum(go + 1, mm, out=MV[D + s, b, :, cs])
            np.maximum(mv[:-1] + hop, q[1:], out=DL[D + s, b, 1:, cs])
            if exits is not None:
                j = slice(b * cw, b * cw + cs.stop)
                exits[lay.n_offsets[j] + t * ns[j] + s] = mv[-1] + hop
        for x, y, nt in ((0, lim, ntmax), (lim, cw, ntmin)):  # on to the next token
            if y > x:
                for h in (GO, MV, DL):
                    h[:D, b, :, x:y] = h[nt:nt + D, b, :, x:y]

    first = np.empty((R, C), dt)
    for t in range(m):
        a.token(t)
        np.copyto(tok_b, tokdone.reshape(R, nb, cw).transpose(1, 0, 2))
        for b in range(nb):
            reduce(t, b)
        DONE[1:] = DONE[:-1].copy()  # the last partial sum of each core's token, the first
        _unblock(DONE[0], np.where(wide, GO[D + ntmax - 1], GO[D + ntmin - 1]) if ntmin < ntmax else GO[D + ntmax - 1])
        if nbuf == 2:  # the go cycles of the token whose reduce may overlap the next one's FMACs (sorted)
            # (the next token's reduce overwrites them after its FMACs)
            a.steal = (GO, D, ntmax, _unblock(first, GO[D]))
    cycles = int(MV[D - 1, :, -1].max()) + hop  # the last partial sum of every column, out of the south edge
    if cycles > max_cycles:
        raise RuntimeError(f"PE simulation made no progress for {max_cycles} cycles (deadlock)")
    _fill_counters(lay, f, resident)
    kt64, nt64 = lay.kt.astype(np.int64), lay.nt.astype(np.int64)
    return cycles, (m * kt64, m * nt64)


class ElementEvents:
    """The A side by event times (the row multicast and the FMACs of every core), token by token:
    ``token(t)`` sets ``tokdone`` (the cycle from which each core's token t is FMAC'd) and each
    core's element times. The reduce that shares the datapath gives, before ``token(t)``, the cycles
    each core's reduce of the previous token took (``steal``: its go history, offset, length and
    first go, blocked as (n, nb, R, cw)) and the cycle each of the last ``nbuf`` tokens' reduce was
    done (``DONE``, newest first)."""

    def __init__(self, lay: Layout, depth: int, nbuf: int, max_cycles: int, resident: bool,
                 avail: np.ndarray | None = None, hop: int = 1):
        R, C, D = lay.rows, lay.cols, depth
        self.lay, self.D, self.nbuf, self.resident, self.avail, self.hop = lay, D, nbuf, resident, avail, hop
        ks = lay.kt[:, 0]
        self.ks, self.ktmax, self.ktmin = ks, int(ks[0]), int(ks[-1])
        self.r1 = int(np.count_nonzero(ks == self.ktmax))  # larger blocks first
        top = max_cycles + int(lay.peak_cycles) * (lay.ktmax + 2) + 8 * (R + C + D + lay.ntmax)
        self.dt = dt = np.int32 if top < 1 << 29 else np.int64  # cycles: narrow is fast
        self.neg, self.big = (dt(-(1 << 30)), dt(1 << 30)) if dt is np.int32 else (dt(-(1 << 60)), dt(1 << 60))
        ovh = lay.lanes.costs.task_start
        if lay.sparse:  # cycles of element e of each core less one, the task start on the first
            cost = np.ascontiguousarray(lay.element_cycles.transpose(2, 0, 1), dtype=dt) - 1
            cost[0] += ovh
        else:
            cost = np.stack([lay.fmac_cycles + ovh, lay.fmac_cycles]).astype(dt) - 1
        self.cost = cost
        # histories, one token's worth after the D moves before it: [D + e] is element e of this
        # token, [D + e - 1] the one before it, [e] the one D before it (of an earlier token for e < D)
        # (a slot past D is written in its token before it is read: only the first D need a value)
        self.FA, self.POP = np.empty((2, D + self.ktmax, R, C), dt)
        self.FA[:D] = self.POP[:D] = self.neg
        self.inj_prev = np.full(R, self.neg, dt)
        self.DONE = np.full((max(nbuf, 1), R, C), self.neg, dt)  # the cycle the last nbuf tokens' reduce was done
        self.tokdone = np.empty((R, C), dt)
        self.rows = np.arange(R)
        self.steal = None

    def snapshot(self) -> tuple:
        """The state before a token (``restore`` returns to it)."""
        D = self.D
        return self.FA[:D].copy(), self.POP[:D].copy(), self.inj_prev.copy(), self.DONE.copy(), self.steal

    def restore(self, sn: tuple) -> None:
        D = self.D
        self.FA[:D], self.POP[:D], self.inj_prev[...], self.DONE[...] = sn[:4]
        self.steal = sn[4]

    def token(self, t: int) -> None:
        rb = max(1, BLOCK // self.lay.cols)  # blocks of rows that stay in the cache
        for r0 in range(0, self.lay.rows, rb):
            self.fmacs(t, r0, r0 + rb)

    def fmacs(self, t: int, ra: int, rb: int) -> None:
        """The elements of token t in rows ra..rb: the rows of the A side are independent."""
        lay, D, R, FA, POP, ks, r1 = self.lay, self.D, self.lay.rows, self.FA, self.POP, self.ks, self.r1
        ktmax, ktmin, resident, avail, h = self.ktmax, self.ktmin, self.resident, self.avail, self.hop
        cost, DONE = self.cost, self.DONE
        for e in range(ktmax):
            r = slice(ra, min(rb, R if e < ktmin else r1))
            if r.stop <= ra:
                continue
            start = POP[D + e - 1, r] + 1
            if not resident:
                inj = np.maximum(self.inj_prev[r] + 1, FA[e, r, 0] + h)  # (column 0's credit, over the link)
                np.maximum(inj, 0, out=inj)
                if avail is not None:
                    np.maximum(inj, avail[self.rows[r], np.minimum(t * ks[r] + e, avail.shape[1] - 1)], out=inj)
                self.inj_prev[r] = inj
                fa = np.maximum(FA[D + e - 1, r], POP[e, r], out=FA[D + e, r])
                fa += 1
                np.maximum(fa[:, :-1], FA[e, r, 1:] + h, out=fa[:, :-1])  # the east queue's credit
                np.maximum(fa[:, 0], inj + h, out=fa[:, 0])
                _scan(fa, h)  # and one hop per column: the multicast along the row
                np.maximum(start, fa + 1, out=start)
            if e == 0:
                np.maximum(start, DONE[self.nbuf - 1, r] + 1, out=start)
            if resident:
                np.maximum(start, 0, out=start)
            c = cost[e if lay.sparse else min(e, 1), r]
            pop = np.add(start, c, out=POP[D + e, r])
            if self.steal is not None:
                _steal(pop, start, c, self.steal, r, DONE[0, r])
        for x, y, kt in ((ra, min(rb, r1), ktmax), (max(ra, r1), rb, ktmin)):  # on to the next token
            if y > x:
                self.tokdone[x:y] = POP[D + kt - 1, x:y] + 1
                FA[:D, x:y], POP[:D, x:y] = FA[kt:kt + D, x:y], POP[kt:kt + D, x:y]


BLOCK = 1 << 17  # cores per block of rows (or of columns) worked on at a time

def row_arrivals(lay: Layout, arrivals: np.ndarray) -> np.ndarray:
    """(rows, ktmax + 1): the cycle from which row i's injector may send each element of its K block
    (a vector: m = 1); the last column holds a sentinel for a row that has sent all."""
    if lay.m != 1 or arrivals.shape != (lay.k,):
        raise ValueError(f"arrivals: one cycle per element of a vector of {lay.k} (a GEMV)")
    kt, off = blocks(lay.k, lay.rows)
    out = np.full((lay.rows, lay.ktmax + 1), np.iinfo(np.int64).max // 2, np.int64)
    for i in range(lay.rows):
        out[i, :kt[i]] = arrivals[off[i]:off[i] + kt[i]]
    return out


def _scan(x: np.ndarray, step: int, axis: int = 1) -> None:
    """In place, x[j] = max over j' <= j of x[j'] + step * (j - j') along ``axis``. A large array by
    doubling (log2 of the axis' length whole-array steps), as ``np.maximum.accumulate`` runs an
    element at a time; a small one by it, fewer calls."""
    n = x.shape[axis]
    if x.size <= 1 << 14:
        ramp = step * np.arange(n, dtype=x.dtype)
        ramp = ramp if axis else ramp[:, None]
        x -= ramp
        np.maximum.accumulate(x, axis=axis, out=x)
        x += ramp
        return
    s = 1
    while s < n:
        hi, lo = (np.s_[:, s:], np.s_[:, :-s]) if axis else (np.s_[s:], np.s_[:-s])
        np.maximum(x[hi], x[lo] + step * s, out=x[hi])
        s *= 2


def _steal(pop: np.ndarray, start: np.ndarray, c: np.ndarray, steal: tuple, r: slice, last: np.ndarray) -> None:
    """Push each ``pop`` (``start + c``) of rows ``r`` later by the reduce's cycles in its window, in the
    band of rows where any may fall. ``steal``: the blocked go history, its offset and length, and
    the first go of each core; the go cycles of a core are sorted and distinct. Optionally also
    (n_short, deep): only the rows ``deep`` (bool per row) have more than the first n_short go
    cycles (the rest of their history is past every cycle: the tree's non-root cores)."""
    go, off, n, first = steal[:4]
    need = start <= last
    need &= pop >= first[r]
    band = np.flatnonzero(need.any(axis=1))
    if not len(band):
        return
    b = slice(band[0], band[-1] + 1)
    rows = slice(r.start + band[0], r.start + band[-1] + 1)
    st, cb = start[b], c[b]
    if len(steal) == 4:
        pop[b] += _taken(go, off, n, rows, st, cb, pop.dtype)
        return
    short, deep = steal[4]
    k = _taken(go, off, short, rows, st, cb, pop.dtype)
    d = np.flatnonzero(deep[rows])
    if len(d):
        k[d] = _taken(go, off, n, rows.start + d, st[d], cb[d], pop.dtype)
    pop[b] += k


def _taken(go: np.ndarray, off: int, n: int, rows, st: np.ndarray, c: np.ndarray, dt) -> np.ndarray:
    """The reduce's cycles that fall in each element's window: from ``st`` until ``c`` + 1 cycles
    not taken by it have passed (rows ``rows`` of the go history, its first n)."""
    g = go[off:off + n, :, rows]
    g = g.transpose(0, 2, 1, 3).reshape(n, g.shape[2], -1)  # (n, rows, C)
    cnt = np.uint8 if n < 256 else np.int32
    before = np.add.reduce((g < st).view(np.uint8), axis=0, dtype=cnt).astype(dt)
    # go - its rank: the cycles not taken before it (a copy: g is a view of go where go has one block)
    g = g - np.arange(n, dtype=g.dtype)[:, None, None]
    thr = c + 1 - before
    thr += st
    k = np.add.reduce((g < thr).view(np.uint8), axis=0, dtype=cnt).astype(dt)
    k -= before
    return k


def _block_width(C: int, target: int) -> int:
    """Columns per block: the largest divisor of C up to ``target`` (all of C where none is near)."""
    w = max(d for d in range(1, min(C, target) + 1) if C % d == 0)
    return w if 4 * w >= min(C, target) else C


def _unblock(out: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(nb, R, cw) blocks of columns into (R, C) ``out``."""
    nb, R, cw = x.shape
    np.copyto(out.reshape(R, nb, cw), x.transpose(1, 0, 2))
    return out


def _fill_counters(lay: Layout, f: Fabric, resident: bool) -> None:
    """Every wavelet passed every router on its way: the totals the cycle loop counts."""
    m = lay.m
    kt, nt = m * lay.kt.astype(np.int64), m * lay.nt.astype(np.int64)
    if not resident:
        f.row_in[...] = kt
        f.row_out[...] = kt
        f.injected[...] = kt[:, 0]
    f.col_ramp_in[...] = nt
    f.col_south_out[...] = nt
    f.col_north_in[1:] = nt[1:]
    f.col_ramp_out[1:] = nt[1:]
    f.sunk[...] = nt[-1]
