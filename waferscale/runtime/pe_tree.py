"""The PE-level simulator's tree reduce: the partial sums of each column of cores reduced by the
plan of ``backends/column_reduce.py`` (the two-level centre-rooted tree; the chain, as a plan, runs
here too and takes exactly the cycles of ``pe_sim``'s own chain loop), cycle by cycle over the
whole grid, A fed by ``pe_fmac``.

A core's reduce of a token is a short program of passes of ``nt`` wavelets, one per cycle (it takes
the datapath before the FMACs): a pass adds the wavelet at the head of one input queue to the
core's partial sum; the last pass also puts the sum on the ramp to the router (add and forward);
a core with no input only sends. A pass waits when its wavelet has not arrived or (the last) when
the ramp queue is full.

The fabric (``TreeFabric``) has, per stream kind, an input queue at each router and a queue to each
core. In one cycle a wavelet moves at most one stage: the ramp up, one link (a link of several
cycles, ``hop``, is a delay line: ``pe_links``), or the ramp down. A
router either gives a kind to its core or passes it on to the next router (phase-2 streams between
the roots, and the column root's sums on their way south to the edge), with the credit rule of
``pe_sim``. A link direction carries one wavelet per cycle whatever its color: where a phase-1
and a phase-2 stream both want it (the phase-2 streams cross the halves of groups whose phase-1
chain flows the same way), the phase-1 wavelet goes first (a fixed priority of colors: an
assumption, as the SDK says only that colors share the link and that one color's congestion does
not block another). Within a token the wait costs nothing a root needs, as a root adds its group's
streams, the ones in the way, before the phase-2 ones; with several tokens in flight the next
token's phase-1 wave can hold up this token's phase-2 stream (the tile level does not model that).
A fair round robin was tried too: it spreads that cost over both phases, and the GEMV is then no
longer exactly the tile level's critical path. ``TreeFabric.contended`` counts the waits; with
``check`` every cycle asserts that no link direction carried two wavelets.

Numbers: the loop moves counts only; C is ``pe_fmac.products`` over the same plan (each core adds
its incoming streams in the plan's order, so the float32 sums do not depend on the cycles).
"""

from __future__ import annotations

import numpy as np

from ..backends.column_reduce import N1, N2, S1, S2, ColumnPlan
from .pe_fabric import TreeFabric
from .pe_fmac import Fmacs, uint
from .pe_layout import Layout
from .pe_links import DelayLine

PROGRESS_CYCLES = 1024  # cycles between calls of a loop's ``progress``


def row_tables(plan: ColumnPlan) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The plan per row, as the loops read it: (4, rows) the routers that pass a kind on and those
    that deliver it to their core; (rows, 5) the input kind of each pass (-1: none, only a lone
    send); (rows,) the passes a token."""
    R = plan.rows
    thr, dlv = np.zeros((2, 4, R), bool)
    for k in (S2, N2):
        thr[k, list(plan.through(k))] = True
    optab = np.full((R, 5), -1, np.int8)
    for r in range(R):
        dlv[list(plan.ins[r]), r] = True
        optab[r, :len(plan.ins[r])] = plan.ins[r]
    return thr, dlv, optab, np.array([plan.passes(r) for r in range(R)], np.uint8)


def run_tree(lay: Layout, f: TreeFabric, plan: ColumnPlan, depth: int, nbuf: int, check: bool, max_cycles: int,
             resident: bool, hop: int = 1, avail: np.ndarray | None = None, exits: np.ndarray | None = None,
             progress=None):
    """Simulate until the south edge has every element of C. Returns the cycles and the cores'
    progress (the numbers are ``pe_fmac.products``). ``hop``: cycles a wavelet takes router to router
    (and last router to the south edge, injector to first router), ``Machine.hop_cycles``; links of
    more than one cycle are delay lines (``pe_links``). ``avail``: when each element of A may be
    injected (``pe_fmac.Fmacs``); ``exits``, if given, gets the cycle each element of C reached the
    south edge (a GEMV: both as ``pe_sim``'s chain loop). ``progress``, if given, is called with the
    cycles done every ``PROGRESS_CYCLES``."""
    R, C, m, D = lay.rows, lay.cols, lay.m, depth
    N, ntmax = R * C, lay.ntmax
    fm = Fmacs(lay, f, D, nbuf, resident, hop, avail)
    sent = np.zeros((4, R, C), np.uint8)  # this cycle's wavelets onto the links, per kind by receiving router
    line, edge = DelayLine(hop, (4, R, C)), DelayLine(hop, (C,))  # those links, and the last row's to the edge
    room_q = np.zeros((4, R, C), np.uint16)  # the receiving queues as their senders see them
    ahead = fm.ahead
    rq, iq, cq = f.ramp_q, f.in_q, f.core_q
    tk = f.ticks
    t_rin, t_lout, t_lin, t_rout = tk["ramp_in"], tk["link_out"], tk["link_in"], tk["ramp_out"]

    # -- the plan, per row, spread over the columns --
    grid = lambda per_row, dt=bool: np.repeat(np.asarray(per_row, dt)[..., None], C, axis=-1)
    thr_r, dlv_r, optab, passes_r = row_tables(plan)
    snd = np.stack([grid(np.array(plan.out) == k) for k in range(4)])  # the kind each core sends
    thr, dlv, passes = grid(thr_r), grid(dlv_r), grid(passes_r, np.uint8)
    ndt = uint(ntmax)
    nt = lay.nt.astype(ndt)
    opi, e = np.zeros((R, C), np.uint8), np.zeros((R, C), ndt)  # the pass under way; its wavelets done
    inm = np.stack([grid(optab[:, 0] == k) for k in range(4)])  # the input kind of the pass under way
    noin = grid(optab[:, 0] < 0)
    notout = passes > 1  # the pass under way is not the last (the one that sends)
    tokr = np.zeros(N, np.int64)  # tokens whose reduce is done
    rowi = np.arange(N) // C

    sunk = f.sunk

    b = lambda *s: np.zeros((*s, R, C), bool)
    go, pos, t1, t2, m1s, m2s, m1n, m2n, ok = b(), b(), b(), b(), b(), b(), b(), b(), b()
    has, dl, take = b(4), b(4), b(4)
    go8 = go.view(np.uint8)
    out_left = m * lay.n
    moving = False
    cycle = 0
    while out_left:
        if cycle >= max_cycles:
            raise RuntimeError(f"PE simulation made no progress for {max_cycles} cycles (deadlock)")
        if cycle % 255 == 254:
            f.flush()
        if progress is not None and cycle % PROGRESS_CYCLES == 0 and cycle:
            progress(cycle)
        # -- decisions, all from the state at the start of the cycle --
        np.greater(ahead, 0, out=go)  # a pass: a token's FMACs are done ...
        if moving:
            np.greater(cq, 0, out=has)  # ... its input wavelet has arrived (or it has none) ...
            has &= inm
            np.logical_or(has[0], has[1], out=ok)
            ok |= has[2]
            ok |= has[3]
            ok |= noin
            go &= ok
            np.less(rq, D, out=t1)  # ... and, the last pass, the ramp queue has room
            t1 |= notout
            go &= t1
            np.greater(rq, 0, out=pos)
            np.add(iq, line.held, out=room_q)
            # links south (the last row's: the south edge) and north; phase 1 first
            np.logical_and(snd[S1], pos, out=m1s)
            np.less(room_q[S1, 1:], D, out=t1[:-1])
            m1s[:-1] &= t1[:-1]
            np.greater(iq[S2], 0, out=m2s)
            m2s &= thr[S2]
            np.logical_and(snd[S2], pos, out=t1)
            m2s |= t1
            np.less(room_q[S2, 1:], D, out=t1[:-1])
            m2s[:-1] &= t1[:-1]
            np.logical_and(snd[N1], pos, out=m1n)
            np.less(room_q[N1, :-1], D, out=t1[1:])
            m1n[1:] &= t1[1:]
            np.greater(iq[N2], 0, out=m2n)
            m2n &= thr[N2]
            np.logical_and(snd[N2], pos, out=t1)
            m2n |= t1
            np.less(room_q[N2, :-1], D, out=t1[1:])
            m2n[1:] &= t1[1:]
            m2n[0] = False
            np.logical_and(m1s, m2s, out=t1)
            t1 |= m1n & m2n
            if t1.any():  # one link direction, two colors: the phase-1 wavelet goes first
                f.contended += int(np.count_nonzero(t1))
                m2s &= ~m1s
                m2n &= ~m1n
            if check and ((m1s & m2s).any() or (m1n & m2n).any()):
                raise AssertionError(f"cycle {cycle}: a link direction carried two wavelets")
            np.greater(iq, 0, out=dl)  # router -> core
            np.less(cq, D, out=take)
            dl &= take
            dl &= dlv
        else:
            go &= noin  # nothing has arrived anywhere yet
            go &= ~notout
        if fm.left:  # the row multicast and the FMACs (pe_fmac), the datapath not taken by the reduce
            fm.step(go)
        # -- apply: passes --
        if go.any():
            np.logical_and(go, ~notout, out=t1)  # the last pass sends
            rq += t1.view(np.uint8)
            t_rin += snd & t1
            np.logical_and(inm, go, out=take)
            cq -= take.view(np.uint8)
            e += go8
            np.equal(e, nt, out=t2)
            if t2.any():  # a pass is done: the next one, or the next token
                idx = np.flatnonzero(t2)
                e.flat[idx] = 0
                o = opi.flat[idx] + 1
                done = o == passes.flat[idx]
                o[done] = 0
                opi.flat[idx] = o
                tokr[idx[done]] += 1
                ahead.flat[idx[done]] -= 1
                kind = optab[rowi[idx], o]
                for k in range(4):
                    inm[k].flat[idx] = kind == k
                noin.flat[idx] = kind < 0
                notout.flat[idx] = o + 1 < passes.flat[idx]
            moving = True
        # -- apply: links and ramps --
        if moving:
            rq -= (m1s | m2s & snd[S2] | m1n | m2n & snd[N2]).view(np.uint8)
            iq[S2] -= (m2s & thr[S2]).view(np.uint8)
            iq[N2] -= (m2n & thr[N2]).view(np.uint8)
            for k, mv in ((S1, m1s), (S2, m2s)):  # onto the links south (row 0 receives none) ...
                sent[k, 1:] = mv[:-1]
                t_lout[k] += mv.view(np.uint8)
            for k, mv in ((N1, m1n), (N2, m2n)):  # ... and north (the last row receives none)
                sent[k, :-1] = mv[1:]
                t_lout[k] += mv.view(np.uint8)
            freed = None
            if hop > 1:  # the places freed in the receiving queues: their credits go back over the links
                freed = dl.astype(np.uint8)
                freed[S2] += m2s & thr[S2]
                freed[N2] += m2n & thr[N2]
            got = line.push(sent, freed)  # what reaches the receiving queues now
            iq += got
            t_lin += got
            out = edge.push(m2s[-1])  # ... and the south edge
            iq -= dl.view(np.uint8)
            cq += dl.view(np.uint8)
            t_rout += dl.view(np.uint8)
            if out.any():  # the south edge
                if exits is not None:
                    js = np.flatnonzero(out)
                    exits[lay.n_offsets[js] + sunk[js]] = cycle + 1
                sunk += out
                out_left -= int(np.count_nonzero(out))
        cycle += 1
        if check:
            f.check_bounds(D)
    f.flush()
    # progress from the cores' own counters: wavelets sent and consumed per kind
    tr = tokr.reshape(R, C)
    sent = tr * lay.nt + np.where(notout, 0, e)
    consumed = np.zeros((4, R, C), np.int64)
    for k in range(4):
        for o in range(4):
            at = grid(optab[:, o] == k)
            consumed[k] += at * (tr * lay.nt + np.where(opi > o, lay.nt, np.where(opi == o, e, 0)))
    return cycle, (fm.consumed(), sent, consumed, snd)

