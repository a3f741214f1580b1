"""The tree reduce's cycle loop (``pe_tree.run_tree``) fused: the same rules, the same cycles, in
far fewer NumPy operations per cycle, as ``pe_sim._run`` is for the chain.

``pe_tree.run_tree`` keeps, per stream kind, a router queue and a core queue at every core, and
masks them by the plan each cycle: about 150 operations over the grid per cycle, most of them over
queues that the plan leaves empty. Here each queue that the plan uses lives once:

- every core but a group root has at most one input, a phase-1 stream (from the north above its
  root, from the south below it), and sends a phase-1 stream: its router queue of that input is one
  slab, ``i1``, its core queue another, ``c1``, and its reduce is one pass per token (the send);
- the phase-2 streams pass through routers: ``s2`` and ``n2`` are the router queues of the
  southward and northward ones (through, or delivered at a root);
- the group roots (a few rows: one per group) keep their several inputs, their passes and their
  core queues in small ``(groups, cols)`` arrays; their router queue of the phase-1 stream from
  the south (their ``i1`` holds the one from the north) too.

The A queues, the tokens FMAC'd ahead of the reduce, the ramp queues and these are slabs of one
array, so one comparison gives every queue's "has a wavelet" and "has room"; a core with no input
or a root keeps a full ``c1`` (a sentinel, never delivered to) so that one test serves every
non-root. The wavelets left of a core's pass and the cycles left of its head A element are one
stacked countdown, as in the chain's loop. The moves, the arbitration of a shared link (the phase-1
wavelet first, each wait counted in ``contended``) and the order of decisions (all from the state
at the start of the cycle) are ``run_tree``'s; the counters are filled with the totals every router
passes (``pe_tree_events.fill_counters``), as the event solver does, since each wavelet is counted
by the loop that has them, ``run_tree`` with ``check``. ``tests/test_pe_tree_fused.py`` holds the
two loops to the same cycles and waits.

A hop of several cycles (a WSE-3's 2) delays the links by ``pe_links``' rule, as ``run_tree``'s
delay lines do: the row multicast east (from the injectors), phase 1 and phase 2 between routers,
phase 1 into a root from the south, and the last row's to the south edge. At such a hop it runs
the tree from ``pe_tree_events.FUSED_HOP_MIN_CORES`` cores where the compiled loop does not (past
``JIT_HOP_MAX_CORES`` cores, without numba, or where it declines: queues deeper than a byte, a hop
past 64 cycles); the event solver has one-cycle links only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..backends.column_reduce import N1, N2, S1, S2, ColumnPlan
from .pe_fmac import uint
from .pe_layout import Layout
from .pe_tree import PROGRESS_CYCLES

FULL = 255  # c1 of a core with no input or a root: always "has a wavelet", never "has room"
REFILL = 128  # cycles between refills of FULL (a pass takes one per cycle from it)
assert PROGRESS_CYCLES % REFILL == 0  # progress is reported at a refill


@dataclass(frozen=True)
class Roles:
    """The rows of a plan, by what their cores and routers do (see the module docstring)."""

    roots: np.ndarray  # (G,) the group roots' rows
    s1: np.ndarray  # (R, 1) non-roots sending south (phase 1)
    n1: np.ndarray  # (R, 1) non-roots sending north to a non-root
    below: np.ndarray  # rows sending north to a root ...
    below_g: np.ndarray  # ... its index among the roots
    full: np.ndarray  # rows whose c1 is FULL
    thr_s2: np.ndarray  # (R, 1) routers passing a southward phase-2 stream on
    thr_n2: np.ndarray
    send_s2: np.ndarray  # rows sending a southward phase-2 stream (roots)
    send_n2: np.ndarray
    s_lo: int  # rows s_lo.. hold the southward phase-2 streams
    n_lo: int  # rows n_lo..n_hi - 1 the northward ones
    n_hi: int
    optab: np.ndarray  # (G, 5) int8: each root's input kind per pass (-1: none)
    passes: np.ndarray  # (G, 1) uint8
    has_in: np.ndarray  # (4, G, 1) bool: the root receives that kind


@lru_cache(maxsize=64)
def roles(p: ColumnPlan) -> Roles | None:
    """None where the plan is not of the tree's shape (a non-root with several inputs, or a
    phase-2 input, or sending phase 2)."""
    R = p.rows
    roots = np.array(sorted(set(p.roots)), np.intp)
    isroot = np.zeros(R, bool)
    isroot[roots] = True
    out = np.array(p.out)
    for r in range(R):
        if not isroot[r] and (len(p.ins[r]) > 1 or out[r] not in (S1, N1) or set(p.ins[r]) - {S1, N1}):
            return None
        if isroot[r] and out[r] not in (S2, N2):
            return None
    s1 = (out == S1) & ~isroot
    n1 = (out == N1) & ~isroot
    below = np.flatnonzero(n1 & np.r_[False, isroot[:-1]])
    n1[below] = False
    thr = {k: np.zeros(R, bool) for k in (S2, N2)}
    for k in (S2, N2):
        thr[k][list(p.through(k))] = True
    send_s2, send_n2 = roots[out[roots] == S2], roots[out[roots] == N2]
    if thr[S2][send_s2].any() or thr[N2][send_n2].any():
        return None
    n_rows = [r for r in range(R) if thr[N2][r] or r in send_n2 or N2 in p.ins[r]]
    optab = np.full((len(roots), 5), -1, np.int8)
    has_in = np.zeros((4, len(roots), 1), bool)
    for g, r in enumerate(roots):
        optab[g, :len(p.ins[r])] = p.ins[r]
        for k in p.ins[r]:
            has_in[k, g] = True
    head = ~isroot & np.array([not p.ins[r] for r in range(R)])
    return Roles(roots=roots, s1=s1[:, None], n1=n1[:, None], below=below,
                 below_g=np.searchsorted(roots, below - 1), full=np.flatnonzero(head | isroot),
                 thr_s2=thr[S2][:, None], thr_n2=thr[N2][:, None], send_s2=send_s2, send_n2=send_n2,
                 s_lo=int(send_s2.min()), n_lo=min(n_rows, default=0), n_hi=max(n_rows, default=-1) + 1,
                 optab=optab, passes=np.array([[p.passes(r)] for r in roots], np.uint8), has_in=has_in)


def rows(idx: np.ndarray) -> slice | np.ndarray:
    """Rows as a slice where they are evenly spaced (indexing then gives views), else as they are."""
    idx = np.asarray(idx, np.intp)
    if len(idx) == 1 or len(idx) > 1 and idx[1] > idx[0] and (np.diff(idx) == idx[1] - idx[0]).all():
        return slice(int(idx[0]), int(idx[-1]) + 1, int(idx[1] - idx[0]) if len(idx) > 1 else 1)
    return idx


LINKED = (0, 1, 4, 5)  # the queues a link fills: the row multicast's, phase 1's and phase 2's


def run_tree_fused(lay: Layout, p: ColumnPlan, depth: int, nbuf: int, max_cycles: int, resident: bool,
                   hop: int = 1, progress=None):
    """As ``pe_tree.run_tree`` (same cycles and waits): returns (cycles, contended), or None where
    the plan is not of the tree's shape (``roles``) or the queues are over 126 deep. ``hop``: cycles
    a wavelet takes router to router (and injector to first router, last router to the south edge),
    ``Machine.hop_cycles``; links of more are delay lines (``pe_links``), as in ``run_tree``: a
    queue a link fills has room as its sender sees it, and each cycle's sends, and the places
    freed in those queues, go on the lines. ``progress``, if given, is called with the cycles done
    every ``PROGRESS_CYCLES``."""
    ro = roles(p)
    if ro is None or depth >= FULL - REFILL:  # a FULL c1 must never fall to the depth between refills
        return None
    R, C, m, D = lay.rows, lay.cols, lay.m, depth
    roots, G = ro.roots, len(ro.roots)
    # queues, and aligned with them the events that take a wavelet out of each: 0 row_q (fa: the row multicast),
    # 1 i1 (dl1: to the core), 2 c1 (go: a pass takes it), 3 ramp (m1: a phase-1 send), 4 s2, 5 n2 (phase-2
    # moves), 6 tokens FMAC'd ahead of the reduce (a pass done: a non-root's token), 7 row_core_q (an element
    # FMAC'd; resident: 1 while the core has tokens to FMAC)
    Q = np.zeros((8, R, C), np.uint8)
    qa, i1, c1, rq, s2, n2, ahead, ia = Q
    E = np.zeros((8, R, C), bool)
    fa, dl1, go, m1, m2s, m2n = E[:6]
    E8 = E.view(np.uint8)
    fa8, go8, m2s8, m2n8 = E8[0], E8[2], E8[4], E8[5]
    B = np.array([D, D, D, D, D, D, nbuf, D], np.uint8)[:, None, None]
    PR = np.zeros((2, 8, R, C), bool)
    P, Rm = PR  # has a wavelet; has room
    c1[ro.full] = FULL
    if resident:
        ia[...] = 1
    cdt = uint(max(lay.peak_cycles, lay.ntmax))
    CNT = np.stack([lay.nt, lay.first_cycles]).astype(cdt)  # wavelets left of the pass; cycles left of the element
    # per column (pe_layout: nt and a dense element's cycles depend on the column only)
    RELOAD = np.stack([lay.nt[:1], lay.fmac_cycles[:1] * (not lay.sparse)]).astype(cdt)
    TMP = np.zeros((2, R, C), cdt)
    RAN8 = E8[6:8]
    if lay.sparse:  # element e of core (i, j): elem[base[i, j] + e]
        elem = lay.element_cycles.astype(cdt).ravel()
        base = (np.arange(R * C, dtype=np.intp) * lay.ktmax).reshape(R, C)
        idx, nxt = np.zeros((R, C), np.intp), np.zeros((R, C), cdt)
    kdt = uint(lay.ktmax)
    kt, kk, tk = lay.kt[:, :1].astype(kdt), np.zeros((R, C), kdt), np.zeros((R, C), kdt)  # kt: per row
    tokf = np.zeros((R, C), uint(m))
    ovh = cdt(lay.lanes.costs.task_start)
    tot_a, inj = m * lay.kt[:, 0].astype(np.int64), np.zeros(R, np.int64)
    b = lambda: np.zeros((R, C), bool)
    act, m1s, m1n, src, cf, t2 = (b() for _ in range(6))
    act8, m1s8, m1n8, t28 = (x.view(np.uint8) for x in (act, m1s, m1n, t2))
    # the roots: their phase-1 router queue from the south, core queues per kind, the pass under way (at
    # which pass each adds each kind: ``at``)
    iN1, cq, opi = np.zeros((G, C), np.uint8), np.zeros((4, G, C), np.uint8), np.zeros((G, C), np.uint8)
    at = np.full((4, G, 1), 255, np.uint8)
    for g, r in enumerate(roots):
        for i, k in enumerate(p.ins[r]):
            at[k, g] = i
    noin, last = ro.optab[:, :1] < 0, ro.passes - 1
    inm, notout = opi[None] == at, opi < last
    hb, d = np.zeros((2, 4, G, C), bool)
    has, gr, tok = np.zeros((3, G, C), bool)
    tmp_r = np.zeros((G, C), np.uint8)
    RS = rows(roots)  # a slice where the roots are evenly spaced: views, no copies
    below, below_g, s_s2, s_n2 = rows(ro.below), rows(ro.below_g), rows(ro.send_s2), rows(ro.send_n2)
    s2_g, n2_g = rows(np.searchsorted(roots, ro.send_s2)), rows(np.searchsorted(roots, ro.send_n2))  # among the roots
    is_s2, is_n2 = np.isin(roots, ro.send_s2)[:, None], np.isin(roots, ro.send_n2)[:, None]
    sl, lo_s = slice(ro.s_lo, R), ro.s_lo
    nl, lo_n, hi_n = slice(ro.n_lo, ro.n_hi), ro.n_lo, ro.n_hi
    north = hi_n - lo_n > 1
    d = np.zeros((4, G, C), bool)
    delayed = hop > 1
    if delayed:  # the moves of the last hop - 1 cycles, on the links: fa, dl1, m1s, m1n, m2s, m2n; fi, mb, d
        L = hop - 1
        past, past_fi = np.zeros((L, 6, R, C), np.uint8), np.zeros((L, R), np.uint8)
        past_mb, past_d = np.zeros((L, len(ro.below), C), np.uint8), np.zeros((L, 4, G, C), np.uint8)
        seen = np.zeros((4, R, C), np.uint8)  # the LINKED queues, as their senders see them
        seen_n = np.zeros((G, C), np.uint8)  # iN1, as the rows below the roots see it
        freed = np.zeros((R, C), np.uint8)
        above = rows(ro.below - 1)  # the roots that the rows in ``below`` send to
    contended, a_left, out_left, cycle = 0, m * R * C, m * lay.n, 0
    while out_left:
        if cycle >= max_cycles:
            raise RuntimeError(f"PE simulation made no progress for {max_cycles} cycles (deadlock)")
        if cycle % REFILL == 0:
            c1[ro.full] = FULL
            if progress is not None and cycle % PROGRESS_CYCLES == 0 and cycle:
                progress(cycle)
        np.greater(Q, 0, out=P)
        np.less(Q, B, out=Rm)
        if delayed:  # a queue a link fills, as its sender sees it
            for i, q in enumerate(LINKED):
                np.less(seen[i], D, out=Rm[q])
        # -- a reduce pass: a token FMAC'd, its wavelet at hand (or no input), room on the ramp (the send) --
        np.logical_and(P[6], P[2], out=go)
        go &= Rm[3]
        pr = PR[:, :, RS]
        np.greater(cq, 0, out=hb)
        hb &= inm
        np.logical_or.reduce(hb, axis=0, out=has)
        has |= noin
        np.logical_or(pr[1, 3], notout, out=gr)
        gr &= pr[0, 6]
        gr &= has
        go[RS] = gr
        # -- links: phase 1 (to a root from the south: its own queue) --
        np.logical_and(P[3, :-1], Rm[1, 1:], out=m1s[:-1])
        m1s[:-1] &= ro.s1[:-1]
        np.logical_and(P[3, 1:], Rm[1, :-1], out=m1n[1:])
        m1n[1:] &= ro.n1[1:]
        if len(ro.below):
            mb = P[3][below] & ((seen_n if delayed else iN1)[below_g] < D)
            m1n[below] = mb
        np.logical_or(m1s, m1n, out=m1)
        # -- phase 2, southward (the last row's: the south edge); the phase-1 wavelet first --
        np.logical_and(P[4, sl], ro.thr_s2[sl], out=src[sl])
        src[s_s2] = pr[0, 3][s2_g]
        np.logical_and(src[lo_s:-1], Rm[4, lo_s + 1:], out=m2s[lo_s:-1])
        m2s[-1] = src[-1]
        np.logical_and(m2s[sl], m1s[sl], out=cf[sl])
        n = np.count_nonzero(cf[sl])
        if n:
            contended += n
            m2s[sl] ^= cf[sl]
        if north:  # northward
            np.logical_and(P[5, nl], ro.thr_n2[nl], out=src[nl])
            src[s_n2] = pr[0, 3][n2_g]
            np.logical_and(src[lo_n + 1:hi_n], Rm[5, lo_n:hi_n - 1], out=m2n[lo_n + 1:hi_n])
            np.logical_and(m2n[nl], m1n[nl], out=cf[nl])
            n = np.count_nonzero(cf[nl])
            if n:
                contended += n
                m2n[nl] ^= cf[nl]
        # -- router -> core (a root's: below) --
        np.logical_and(P[1], Rm[2], out=dl1)
        d[0], d[2], d[3] = pr[0, 1], pr[0, 4], pr[0, 5]  # S1, N1, S2, N2
        np.greater(iN1, 0, out=d[1])
        np.less(cq, D, out=hb)
        d &= hb
        d &= ro.has_in
        # -- the row multicast and the FMACs, the datapath not taken by the reduce --
        if a_left:
            if not resident:
                np.logical_and(P[0], Rm[7], out=fa)
                fa[:, :-1] &= Rm[0, :, 1:]
                fi = (inj < tot_a) & Rm[0, :, 0]
            np.logical_and(P[7], Rm[6], out=act)
            np.greater(act, go, out=act)
        # -- the countdowns: a pass's wavelets, the head element's cycles (their ends: events 6 and 7) --
        CNT[0] -= go8
        CNT[1] -= act8
        np.equal(CNT, 0, out=E[6:8])
        np.multiply(RAN8, RELOAD, out=TMP)
        CNT += TMP
        # -- apply: every queue a wavelet left, every queue it entered --
        if resident:
            Q[:7] -= E8[:7]
        else:
            Q -= E8
            ia += fa8
            inj += fi
        Q[2:4] += E8[1:3]  # c1 += dl1; the ramp += go (a non-root's pass is its send)
        if not delayed:
            if not resident:
                qa[:, 1:] += fa8[:, :-1]
                qa[:, 0] += fi
            i1[1:] += m1s8[:-1]
            i1[:-1] += m1n8[1:]
            s2[lo_s + 1:] += m2s8[lo_s:-1]
            if north:
                n2[lo_n:hi_n - 1] += m2n8[lo_n + 1:hi_n]
            edge_now = np.count_nonzero(m2s[-1])
        else:
            # pe_links' rule without its arrays: a wavelet sent in cycle c is in its queue from c + hop, and
            # a place freed in c is seen by the sender from c + hop, so the queue as the sender sees it
            # (``seen``) counts every wavelet sent into it less every place freed up to hop - 1 cycles ago
            o = past[cycle % L]  # the moves of cycle - hop + 1: their wavelets reach their queues now
            ofi, omb, od = past_fi[cycle % L], past_mb[cycle % L], past_d[cycle % L]
            if not resident:
                qa[:, 1:] += o[0][:, :-1]
                qa[:, 0] += ofi
            i1[1:] += o[2][:-1]
            i1[:-1] += o[3][1:]
            s2[lo_s + 1:] += o[4][lo_s:-1]
            if north:
                n2[lo_n:hi_n - 1] += o[5][lo_n + 1:hi_n]
            if len(ro.below):  # to a root from the south: its own queue
                i1[above] -= omb
                iN1[below_g] += omb
            edge_now = np.count_nonzero(o[4][-1])
            if not resident:  # the senders see this cycle's sends, and the places freed hop - 1 cycles ago
                seen[0][:, 1:] += fa8[:, :-1]
                seen[0][:, 0] += fi
                seen[0] -= o[0]  # the multicast frees its place in the row queue
            seen[1][1:] += m1s8[:-1]
            seen[1][:-1] += m1n8[1:]
            seen[1] -= o[1]  # delivered to the core
            seen[2][lo_s + 1:] += m2s8[lo_s:-1]
            np.multiply(o[4], ro.thr_s2, out=freed)  # passed on south
            seen[2] -= freed
            if north:
                seen[3][lo_n:hi_n - 1] += m2n8[lo_n + 1:hi_n]
            np.multiply(o[5], ro.thr_n2, out=freed)
            seen[3] -= freed
            seen[1][RS] -= od[0]  # the roots take their inputs from these queues too
            seen[2][RS] -= od[2]
            seen[3][RS] -= od[3]
            seen_n -= od[1]
            if len(ro.below):
                seen[1][above] -= mb
                seen_n[below_g] += mb
                omb[...] = mb
            o[0], o[1], o[2], o[3], o[4], o[5] = fa8, E8[1], m1s8, m1n8, m2s8, m2n8  # kept hop - 1 cycles
            od[...] = d
            if not resident:
                ofi[...] = fi
        if edge_now:  # the south edge
            out_left -= int(edge_now)
        # -- the roots: their passes (but the last) do not send, their sends are phase 2, their inputs their own --
        er, q = E[4:7, RS], Q[:, RS]  # at the roots: events 4 to 6; the queues
        ri1, rrq, rs2, rn2, rah = q[1], q[3], q[4], q[5], q[6]
        np.logical_and(gr, notout, out=tok)
        rrq -= tok
        np.logical_and(er[0], is_s2, out=tok)
        rrq -= tok
        rs2 += tok
        np.logical_and(er[1], is_n2, out=tok)
        rrq -= tok
        rn2 += tok
        ri1 -= d[0]
        rs2 -= d[2]
        rn2 -= d[3]
        iN1 -= d[1]
        if len(ro.below) and not delayed:
            ri1[below_g] -= mb
            iN1[below_g] += mb
        np.logical_and(inm, gr, out=hb)
        cq -= hb
        cq += d
        pd = er[2]  # a root's pass done: the next, or (the last) the next token
        opi += pd
        np.equal(opi, ro.passes, out=tok)
        rah += pd
        rah -= tok
        np.multiply(tok, ro.passes, out=tmp_r)
        opi -= tmp_r
        np.equal(opi[None], at, out=inm)
        np.less(opi, last, out=notout)
        if not isinstance(RS, slice):
            Q[:, roots] = q
        if a_left:
            kk += RAN8[1]
            np.equal(kk, kt, out=t2)
            if t2.any():  # last element of a token: its partial sums are done
                ahead += t28
                np.multiply(t28, kt, out=tk)
                kk -= tk
                np.multiply(t28, ovh, out=TMP[1])
                CNT[1] += TMP[1]
                a_left -= int(np.count_nonzero(t2))
                if resident:
                    tokf += t28
                    np.less(tokf, m, out=ia.view(bool))
                if not a_left:
                    act[...] = False
            if lay.sparse:  # the next element (index: the token's elements done) costs its row's
                np.add(base, kk, out=idx)
                np.take(elem, idx, out=nxt, mode="clip")
                nxt *= RAN8[1]
                CNT[1] += nxt
        cycle += 1
    c1[ro.full] = 0
    if Q.any() or iN1.any() or cq.any():
        raise RuntimeError("the fused tree loop ended with wavelets queued (simulator bug)")
    return cycle, contended
