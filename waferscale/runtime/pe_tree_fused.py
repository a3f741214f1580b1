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
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..backends.column_reduce import N1, N2, S1, S2, ColumnPlan
from .pe_fmac import uint
from .pe_layout import Layout

FULL = 255  # c1 of a core with no input or a root: always "has a wavelet", never "has room"
REFILL = 128  # cycles between refills of FULL (a pass takes one per cycle from it)


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


def run_tree_fused(lay: Layout, p: ColumnPlan, depth: int, nbuf: int, max_cycles: int, resident: bool):
    """As ``pe_tree.run_tree`` (same cycles and waits): returns (cycles, contended), or None where
    the plan is not of the tree's shape (``roles``)."""
    ro = roles(p)
    if ro is None:
        return None
    R, C, m, D = lay.rows, lay.cols, lay.m, depth
    roots, G = ro.roots, len(ro.roots)
    Q = np.zeros((8, R, C), np.uint8)  # 0 row_q, 1 row_core_q (resident: 1 while tokens are left to FMAC),
    qa, ia, ahead, rq, i1, s2, n2, c1 = Q  # 2 tokens FMAC'd ahead of the reduce, 3 ramp, 4 i1, 5 s2, 6 n2, 7 c1
    B = np.array([D, D, nbuf, D, D, D, D, D], np.uint8)[:, None, None]
    P, Rm = np.zeros((2, 8, R, C), bool)  # has a wavelet; has room
    c1[ro.full] = FULL
    if resident:
        ia[...] = 1
    cdt = uint(max(lay.peak_cycles, lay.ntmax))
    CNT = np.stack([lay.nt, lay.first_cycles]).astype(cdt)  # wavelets left of the pass; cycles left of the element
    RELOAD = np.stack([lay.nt, lay.fmac_cycles * (not lay.sparse)]).astype(cdt)
    TMP, EV, RAN = np.zeros((2, R, C), cdt), np.zeros((2, R, C), bool), np.zeros((2, R, C), bool)
    go, act = EV  # a reduce pass takes the datapath; an FMAC cycle
    ev8, ran8 = EV.view(np.uint8), RAN.view(np.uint8)
    go8 = ev8[0]
    if lay.sparse:  # element e of core (i, j): elem[base[i, j] + e]
        elem = lay.element_cycles.astype(cdt).ravel()
        base = (np.arange(R * C, dtype=np.intp) * lay.ktmax).reshape(R, C)
        idx, nxt = np.zeros((R, C), np.intp), np.zeros((R, C), cdt)
    kdt = uint(lay.ktmax)
    kt, kk, tk = lay.kt.astype(kdt), np.zeros((R, C), kdt), np.zeros((R, C), kdt)
    tokf = np.zeros((R, C), uint(m))
    ovh = cdt(lay.lanes.costs.task_start)
    tot_a, inj = m * lay.kt[:, 0].astype(np.int64), np.zeros(R, np.int64)
    b = lambda: np.zeros((R, C), bool)
    fa, m1s, m1n, m2s, m2n, src, cf, dl1, t2 = (b() for _ in range(9))
    fa8, m1s8, m1n8, m2s8, m2n8, dl18, t28 = (x.view(np.uint8) for x in (fa, m1s, m1n, m2s, m2n, dl1, t2))
    # the roots: their phase-1 router queue from the south, core queues per kind, pass under way
    iN1, cq = np.zeros((G, C), np.uint8), np.zeros((4, G, C), np.uint8)
    opi = np.zeros((G, C), np.uint8)
    kind = np.broadcast_to(ro.optab[:, :1], (G, C)).copy()
    inm = kind[None] == np.arange(4, dtype=np.int8)[:, None, None]
    noin, notout = kind < 0, np.broadcast_to(ro.passes > 1, (G, C)).copy()
    gi = np.arange(G)[:, None]
    sl, lo_s = slice(ro.s_lo, R), ro.s_lo
    nl, lo_n, hi_n = slice(ro.n_lo, ro.n_hi), ro.n_lo, ro.n_hi
    north = hi_n - lo_n > 1
    contended, a_left, out_left, cycle = 0, m * R * C, m * lay.n, 0
    while out_left:
        if cycle >= max_cycles:
            raise RuntimeError(f"PE simulation made no progress for {max_cycles} cycles (deadlock)")
        if cycle % REFILL == 0:
            c1[ro.full] = FULL
        np.greater(Q, 0, out=P)
        np.less(Q, B, out=Rm)
        # -- a reduce pass: a token FMAC'd, its wavelet at hand (or no input), room on the ramp (the send) --
        np.logical_and(P[2], P[7], out=go)
        go &= Rm[3]
        if G:
            h = cq > 0
            h &= inm
            ok = h.any(axis=0)
            ok |= noin
            go_r = P[2][roots] & ok & (Rm[3][roots] | notout)
            go[roots] = go_r
        # -- links: phase 1 --
        np.logical_and(P[3, :-1], Rm[4, 1:], out=m1s[:-1])
        m1s[:-1] &= ro.s1[:-1]
        np.logical_and(P[3, 1:], Rm[4, :-1], out=m1n[1:])
        m1n[1:] &= ro.n1[1:]
        if len(ro.below):
            m1n[ro.below] = P[3][ro.below] & (iN1[ro.below_g] < D)
        # -- phase 2, southward (the last row's: the south edge); the phase-1 wavelet first --
        np.logical_and(P[5, sl], ro.thr_s2[sl], out=src[sl])
        src[ro.send_s2] = P[3][ro.send_s2]
        np.logical_and(src[lo_s:-1], Rm[5, lo_s + 1:], out=m2s[lo_s:-1])
        m2s[-1] = src[-1]
        np.logical_and(m2s[sl], m1s[sl], out=cf[sl])
        n = np.count_nonzero(cf[sl])
        if n:
            contended += n
            m2s[sl] ^= cf[sl]
        if north:  # northward
            np.logical_and(P[6, nl], ro.thr_n2[nl], out=src[nl])
            src[ro.send_n2] = P[3][ro.send_n2]
            np.logical_and(src[lo_n + 1:hi_n], Rm[6, lo_n:hi_n - 1], out=m2n[lo_n + 1:hi_n])
            np.logical_and(m2n[nl], m1n[nl], out=cf[nl])
            n = np.count_nonzero(cf[nl])
            if n:
                contended += n
                m2n[nl] ^= cf[nl]
        # -- router -> core --
        np.logical_and(P[4], Rm[7], out=dl1)
        if G:
            d = np.stack([P[4][roots], iN1 > 0, P[5][roots], P[6][roots]])
            d &= cq < D
            d &= ro.has_in
        # -- the row multicast and the FMACs, the datapath not taken by the reduce --
        if a_left:
            if not resident:
                np.logical_and(P[0], Rm[1], out=fa)
                fa[:, :-1] &= Rm[0, :, 1:]
                fi = (inj < tot_a) & Rm[0, :, 0]
            np.logical_and(P[1], Rm[2], out=act)
            np.greater(act, go, out=act)
        # -- apply --
        if a_left and not resident:
            qa -= fa8
            qa[:, 1:] += fa8[:, :-1]
            qa[:, 0] += fi
            ia += fa8
            inj += fi
        rq += go8
        rq -= m1s8
        rq -= m1n8
        i1 -= dl18
        i1[1:] += m1s8[:-1]
        i1[:-1] += m1n8[1:]
        c1 += dl18
        c1 -= go8
        s2[sl] -= m2s8[sl]
        s2[lo_s + 1:] += m2s8[lo_s:-1]
        s2[ro.send_s2] += m2s8[ro.send_s2]
        rq[ro.send_s2] -= m2s8[ro.send_s2]
        if north:
            n2[nl] -= m2n8[nl]
            n2[lo_n:hi_n - 1] += m2n8[lo_n + 1:hi_n]
            n2[ro.send_n2] += m2n8[ro.send_n2]
            rq[ro.send_n2] -= m2n8[ro.send_n2]
        if G:
            if len(ro.below):
                mb = m1n8[ro.below]
                i1[roots[ro.below_g]] -= mb
                iN1[ro.below_g] += mb
            rq[roots] -= go_r & notout  # a root's passes but the last do not send
            cq -= inm & go_r
            cq += d
            i1[roots] -= d[S1]
            iN1 -= d[N1]
            s2[roots] -= d[S2]
            n2[roots] -= d[N2]
        if m2s[-1].any():  # the south edge
            out_left -= int(np.count_nonzero(m2s[-1]))
        # -- the countdowns: a pass's wavelets, the head element's cycles --
        CNT -= ev8
        np.equal(CNT, 0, out=RAN)
        np.multiply(ran8, RELOAD, out=TMP)
        CNT += TMP
        ahead -= ran8[0]  # a non-root's pass is its token's reduce
        if G:
            pd = RAN[0][roots]
            if pd.any():  # a root's pass done: the next, or (the last) the next token
                o = opi + pd
                tok = pd & (o == ro.passes)
                o[tok] = 0
                opi[...] = o
                ahead[roots] += pd & ~tok
                kind = ro.optab[gi, opi]
                np.equal(kind[None], np.arange(4, dtype=np.int8)[:, None, None], out=inm)
                np.less(kind, 0, out=noin)
                np.less(opi + 1, ro.passes, out=notout)
        if a_left:
            pop8 = ran8[1]
            kk += pop8
            if not resident:
                ia -= pop8
            np.equal(kk, kt, out=t2)
            if t2.any():  # last element of a token: its partial sums are done
                tokf += t28
                ahead += t28
                np.multiply(t28, kt, out=tk)
                kk -= tk
                CNT[1] += t28 * ovh
                a_left -= int(np.count_nonzero(t2))
                if resident:
                    np.less(tokf, m, out=ia.view(bool))
                if not a_left:
                    act[...] = False
            if lay.sparse:  # the next element (index: the token's elements done) costs its row's
                np.add(base, kk, out=idx)
                np.take(elem, idx, out=nxt, mode="clip")
                nxt *= pop8
                CNT[1] += nxt
        cycle += 1
    c1[ro.full] = 0
    if Q[[0, 1, 3, 4, 5, 6, 7]].any() or ahead.any() or iN1.any() or cq.any():
        raise RuntimeError("the fused tree loop ended with wavelets queued (simulator bug)")
    return cycle, contended
