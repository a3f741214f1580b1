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
"""

from __future__ import annotations

import numpy as np

from ..backends import assumptions as A
from .pe_fabric import Fabric
from .pe_layout import Layout

NEG = -(1 << 40)  # "never happened": a move waits for nothing
BIG = 1 << 50  # "never happens": padding of the datapath's reduce cycles


def run_events(lay: Layout, f: Fabric, depth: int, nbuf: int, check: bool, max_cycles: int, resident: bool,
               avail: np.ndarray | None = None, exits: np.ndarray | None = None):
    """As ``pe_sim._run`` (same arguments and result; ``check`` is the cycle loop's), by event times."""
    R, C, m, D = lay.rows, lay.cols, lay.m, depth
    ks, ns = lay.kt[:, 0].astype(np.int64), lay.nt[0].astype(np.int64)
    ktmax, ntmax = int(ks[0]), int(ns[0])
    r1 = int(np.count_nonzero(ks == ktmax))  # the rows holding ktmax elements (the larger blocks first)
    c1 = int(np.count_nonzero(ns == ntmax))
    ktmin, ntmin = int(ks[-1]), int(ns[-1])
    ovh = A.TASK_OVERHEAD_CYCLES
    elem = lay.element_cycles.astype(np.int64) if lay.sparse else None
    fmac = lay.fmac_cycles.astype(np.int64)
    jj = np.arange(C, dtype=np.int64)
    ii3 = 3 * np.arange(R, dtype=np.int64)[:, None]
    t64 = lambda *s: np.full((*s, R, C), NEG, np.int64)
    FA, POP = t64(D), t64(D)  # the last D elements of each row's stream: [0] = a - 1 ... [D - 1] = a - D
    inj_prev = np.full(R, NEG, np.int64)
    GO, MV, DL = t64(D), t64(D), t64(D)  # the last D partial sums of each core
    DONE = t64(nbuf)  # the reduce-done cycle of the last nbuf tokens: [0] = t - 1
    tokdone = np.full((R, C), NEG, np.int64)
    steal = np.full((0, R, C), BIG, np.int64)  # the go cycles of the tokens that may take the datapath
    GOT = np.full((ntmax, R, C), BIG, np.int64)
    recent: list[np.ndarray] = []
    last = NEG
    for t in range(m):
        hsteal = steal - np.arange(len(steal), dtype=np.int64)[:, None, None]
        for e in range(ktmax):
            hi = R if e < ktmin else r1
            fa_h, pop_h = FA[:, :hi], POP[:, :hi]
            start = pop_h[0] + 1
            if not resident:
                a = t * ks[:hi] + e  # each row's element of A
                inj = np.maximum(inj_prev[:hi] + 1, fa_h[D - 1, :, 0] + 1)
                np.maximum(inj, 0, out=inj)
                if avail is not None:
                    np.maximum(inj, avail[np.arange(hi), np.minimum(a, avail.shape[1] - 1)], out=inj)
                b = np.maximum(fa_h[0], pop_h[D - 1])
                np.maximum(b[:, :-1], fa_h[D - 1, :, 1:], out=b[:, :-1])
                b += 1
                np.maximum(b[:, 0], inj + 1, out=b[:, 0])
                b -= jj
                fa = np.maximum.accumulate(b, axis=1)
                fa += jj
                inj_prev[:hi] = inj
                np.maximum(start, fa + 1, out=start)
            if e == 0:
                np.maximum(start, DONE[nbuf - 1, :hi] + 1, out=start)
            np.maximum(start, 0, out=start)
            c = (elem[:hi, :, e] if elem is not None else fmac[:hi]) + (ovh if e == 0 else 0)
            if len(steal):  # the c-th cycle from start that the reduce does not take (steal: sorted, distinct)
                before = np.count_nonzero(steal[:, :hi] < start, axis=0)
                k = np.count_nonzero(hsteal[:, :hi] < c + start - before, axis=0)
                pop = start + c - 1 + k - before
            else:
                pop = start + c - 1
            fa_h[1:] = fa_h[:-1].copy()
            pop_h[1:] = pop_h[:-1].copy()
            if not resident:
                fa_h[0] = fa
            pop_h[0] = pop
            if e == ktmax - 1:
                tokdone[:hi] = pop
            elif e == ktmin - 1:
                tokdone[r1:] = pop[r1:]
        # the reduce of token t
        GOT.fill(BIG)
        done = np.empty((R, C), np.int64)
        for s in range(ntmax):
            ch = C if s < ntmin else c1
            go_h, mv_h, dl_h = GO[:, :, :ch], MV[:, :, :ch], DL[:, :, :ch]
            p = np.maximum(go_h[0] + 1, tokdone[:, :ch] + 1)
            np.maximum(p, mv_h[D - 1] + 1, out=p)
            q = np.maximum(dl_h[0], go_h[D - 1]) + 1
            mm = mv_h[0] + 1
            np.maximum(mm[:-1], dl_h[D - 1, 1:] + 1, out=mm[:-1])
            kk = p
            np.maximum(kk[1:], q[1:] + 1, out=kk[1:])
            np.maximum(kk[1:], mm[:-1] + 2, out=kk[1:])
            kk -= ii3
            go = np.maximum.accumulate(kk, axis=0)
            go += ii3
            mv = np.maximum(go + 1, mm)
            dl = np.full_like(go, NEG)
            np.maximum(mv[:-1] + 1, q[1:], out=dl[1:])
            for h, x in ((go_h, go), (mv_h, mv), (dl_h, dl)):
                h[1:] = h[:-1].copy()
                h[0] = x
            GOT[s, :, :ch] = go
            out = mv[-1] + 1
            last = max(last, int(out.max()))
            if exits is not None:
                exits[lay.n_offsets[:ch] + t * ns[:ch] + s] = out
            if s == ntmax - 1:
                done[:, :ch] = go
            elif s == ntmin - 1:
                done[:, c1:] = go[:, c1:]
        DONE[1:] = DONE[:-1].copy()
        DONE[0] = done
        if nbuf > 1:  # the tokens whose reduce may overlap the FMACs of the next (their go cycles, sorted)
            recent = (recent + [GOT.copy()])[-(nbuf - 1):]
            steal = recent[0] if nbuf == 2 else np.sort(np.concatenate(recent), axis=0)
    cycles = last
    if cycles > max_cycles:
        raise RuntimeError(f"PE simulation made no progress for {max_cycles} cycles (deadlock)")
    _fill_counters(lay, f, resident)
    kt64, nt64 = lay.kt.astype(np.int64), lay.nt.astype(np.int64)
    return cycles, (m * kt64, m * nt64)


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
