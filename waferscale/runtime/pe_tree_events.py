"""The tree reduce's cycle loop (``pe_tree.run_tree``) solved by event times: the same cycles, per
element and per wavelet instead of per cycle, as ``pe_events`` does for the chain.

Every move of the loop happens in the first cycle its rules allow, and each rule but one is "event
X happened before this cycle": a pass of a core's reduce program takes wavelet s after its wavelet
s - 1 (or, the first, after the previous pass, or the previous token's last pass and the token's
FMACs), after that wavelet was delivered to the core, and, the last pass (the send), once the ramp
queue has room (its wavelet s - D left it); a wavelet leaves a queue after it entered it, after the
one before it left, and once the next queue has room (the wavelet D before it has left that one).
So each move's cycle is a max of the cycles of the moves it waits for, plus one. The rule that is
not: a phase-2 wavelet crossing a link a phase-1 stream also uses (the same direction) waits while
the phase-1 stream moves, so it moves at the first cycle from its max on that is not one of the
phase-1 stream's cycles (``_first_free``); the loop counts each cycle it waited (``contended``).

Order. Each core's passes of a token are given consecutive **stages**, a stream's sender's last
pass the stage of the receiver's pass that adds it (from the column root down the plan), so in one
stage the moves form disjoint paths: a chain head's send, the hops of its stream, the receiver's
delivery and pass, its send if that pass is its last, and so on; each wavelet of a stage is then a
running max along the paths (a segmented scan, one step per move), redone where a phase-2 wavelet
had to wait. The A side (row multicast and FMACs) is ``pe_events.ElementEvents``: a token's FMACs
lose the cycles of the previous token's passes (they share the datapath).

A phase-2 wavelet of token t can also wait for a phase-1 wavelet of a later token (the next token's
phase-1 wave, already under way). The solver takes the phase-1 streams of tokens t - 1 and t into
account and then checks, as each later token's phase-1 streams are known, that none of their moves
falls on a cycle in which it placed a phase-2 wavelet of an earlier token on the same link (and
that no older token reaches that far). If one does, the solution is not the loop's: ``run_tree_events``
returns None and ``pe_sim`` runs the loop. Otherwise every rule of the loop holds for every move,
and the loop's cycles are the only ones that satisfy them all (each cycle is fixed by earlier ones),
so they are the loop's. ``tests/test_pe_tree_events.py`` holds the two to the same cycles.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..backends.column_reduce import N1, N2, S1, S2, ColumnPlan
from .pe_events import ElementEvents
from .pe_fabric import TreeFabric
from .pe_layout import Layout

DL, GO, L0, TH = range(4)  # a site: delivery to the core, a pass's wavelet, off the ramp, through a router
SEG = np.int64(1) << 40  # segment offset of the scans (cycles stay far below it)


@dataclass
class Stage:
    kind: np.ndarray  # (n,) site type
    row: np.ndarray  # (n,) its row
    bp: np.ndarray  # (n, 1) bool: site i's queue is drained by site i + 1 (its wavelet s - D frees room)
    off: np.ndarray  # (n, 1) int64: segment offset less the site's index (the scan's ramp)
    first: np.ndarray  # GO sites of a first pass (the token's FMACs, the previous token's reduce)
    later: np.ndarray  # GO sites of a later pass
    later_prev: np.ndarray  # ... the previous pass's GO site (in the stage before)
    arb: np.ndarray  # TH sites on a link a phase-1 stream also uses
    arb_slot: np.ndarray  # ... their index among all arbitrated sites
    passes: list  # (pass index, GO sites, rows)
    last: np.ndarray  # GO sites of a row's last pass
    exit: int  # the site whose move is out of the south edge (-1: none here)


@dataclass
class Plan:
    stages: list
    arb_l0: list  # per arbitrated site: (stage, site) of the phase-1 stream that shares its link
    pmax: int


@lru_cache(maxsize=64)
def sites(p: ColumnPlan) -> Plan | None:
    """The stages of a column's plan and the paths of moves in each (None: the plan has a phase-1
    stream that is not solved before the phase-2 streams crossing it)."""
    R = p.rows
    P = [p.passes(r) for r in range(R)]
    last = {p.top: 0}
    todo = [p.top]
    while todo:
        r = todo.pop()
        for i, k in enumerate(p.ins[r]):
            q = p.src[r][k]
            last[q] = last[r] - (P[r] - 1 - i)
            todo.append(q)
    lo = min(last[r] - P[r] + 1 for r in range(R))
    stage = {(r, i): last[r] - (P[r] - 1 - i) - lo for r in range(R) for i in range(P[r])}
    ns = max(stage.values()) + 1
    dst = {(p.src[d][k], k): d for d in range(R) for k in p.ins[d]}
    paths = [[] for _ in range(ns)]
    for (r, i), st in sorted(stage.items(), key=lambda x: x[1]):
        if i or p.ins[r]:
            continue  # a path starts at a pass with no input (a lone send)
        path, first = [], True
        while True:
            if not first:
                path.append((DL, r, i))
            first = False
            path.append((GO, r, i))
            if i != P[r] - 1:
                break
            k = p.out[r]
            path.append((L0, r, k))
            if r == p.top:
                path += [(TH, x, S2) for x in range(r + 1, R)]
                break
            d = dst[r, k]
            step = 1 if d > r else -1
            path += [(TH, x, k) for x in range(r + step, d, step)]
            r, i = d, p.ins[d].index(k)
        paths[st].append(path)
    where = {}
    stages, arb_l0 = [], []
    for st in range(ns):
        flat = [s for path in paths[st] for s in path]
        seg = np.concatenate([np.full(len(path), j, np.int64) for j, path in enumerate(paths[st])])
        start = np.r_[True, seg[1:] != seg[:-1]]
        for j, (kind, r, _) in enumerate(flat):
            if kind == L0:
                where[r] = (st, j)
        kind = np.array([s[0] for s in flat])
        row = np.array([s[1] for s in flat])
        first = [j for j, s in enumerate(flat) if s[0] == GO and s[2] == 0]
        later = [j for j, s in enumerate(flat) if s[0] == GO and s[2] > 0]
        prev = [stages[st - 1].index[(GO, flat[j][1], flat[j][2] - 1)] for j in later] if later else []
        arb = []
        for j, (kd, x, k) in enumerate(flat):
            if kd == TH and ((k == S2 and p.out[x] == S1) or (k == N2 and p.out[x] == N1)):
                if x not in where or where[x][0] >= st:
                    return None
                arb.append(j)
                arb_l0.append(where[x])
        passes = {}
        for j, s in enumerate(flat):
            if s[0] == GO:
                passes.setdefault(s[2], []).append(j)
        off = (seg * SEG - np.arange(len(flat)))[:, None]
        g = Stage(kind=kind, row=row, bp=np.r_[~start[1:], False][:, None], off=off,
                  first=np.array(first, np.intp), later=np.array(later, np.intp), later_prev=np.array(prev, np.intp),
                  arb=np.array(arb, np.intp), arb_slot=np.arange(len(arb_l0) - len(arb), len(arb_l0)),
                  passes=[(i, np.array(js, np.intp), row[js]) for i, js in sorted(passes.items())],
                  last=np.array([j for j, s in enumerate(flat) if s[0] == GO and s[2] == P[s[1]] - 1], np.intp),
                  exit=next((j for j, s in enumerate(flat) if (s[0] == TH and s[1] == R - 1 and s[2] == S2)
                             or (s[0] == L0 and s[1] == R - 1 == p.top)), -1))
        g.index = {(s[0], s[1], s[2]): j for j, s in enumerate(flat) if s[0] == GO}
        stages.append(g)
    return Plan(stages=stages, arb_l0=arb_l0, pmax=max(P))


def run_tree_events(lay: Layout, f: TreeFabric, plan: ColumnPlan, depth: int, nbuf: int, max_cycles: int,
                    resident: bool):
    """As ``pe_tree.run_tree`` (same result), by event times; None where the solution could not be
    shown to be the loop's (see the module docstring): run the loop."""
    sp = sites(plan)
    if sp is None or nbuf > 2:
        return None
    R, C, m, D = lay.rows, lay.cols, lay.m, depth
    a = ElementEvents(lay, depth, nbuf, max_cycles, resident)
    dt, neg, big = a.dt, a.neg, a.big
    ns = lay.nt[0]
    ntmax, ntmin = int(ns[0]), int(ns[-1])
    c1 = int(np.count_nonzero(ns == ntmax))
    groups = [(slice(0, c1), ntmax)] + ([(slice(c1, C), ntmin)] if ntmin < ntmax else [])
    groups = [Group(sp, cs, nt, D, dt, neg, big) for cs, nt in groups]
    n = sp.pmax * ntmax
    goall = np.full((n, R, C), big, dt)  # each core's go cycles of the last token, sorted (big: none)
    first = goall[0]
    contended, snaps, redo, t = [], {}, 0, 0
    while t < m:
        snaps[t] = (a.snapshot(), goall.copy(), [g.snapshot() for g in groups])
        snaps.pop(t - 3, None)
        a.token(t)
        last = np.empty((R, C), dt)
        for g in groups:
            g.token(t, a.tokdone, a.DONE[0], goall, last)
        verdict = [g.check(t) for g in groups]
        if FAIL in verdict:
            return None
        back = [v for v in verdict if v != OK]
        if back:  # an earlier token's phase-2 moves, again, with this token's phase-1 ones in view
            redo += 1
            t = min(back)
            if redo > MAX_REDO * m or t not in snaps:
                return None
            a.restore(snaps[t][0])
            goall[...] = snaps[t][1]
            for g, sn in zip(groups, snaps[t][2]):
                g.restore(sn)
            del contended[t:]
            continue
        for g in groups:
            g.advance()
        contended.append(sum(g.contended for g in groups))
        a.DONE[1:] = a.DONE[:-1].copy()
        a.DONE[0] = last
        if nbuf == 2:
            a.steal = (goall[:, None], 0, n, first)
        t += 1
    cycles = max(g.exit_max for g in groups) + 1
    if cycles > max_cycles:
        raise RuntimeError(f"PE simulation made no progress for {max_cycles} cycles (deadlock)")
    f.contended = sum(contended)
    return cycles, _fill_counters(lay, f, plan, resident)


OK, FAIL = -1, -2  # else: the token to solve again
MAX_REDO = 4  # re-solves of a token, on average, before the loop is left to do it


class Group:
    """The reduce of the columns ``cs``, each with ``nt`` partial sums, token by token."""

    def __init__(self, sp: Plan, cs: slice, nt: int, D: int, dt, neg, big):
        self.sp, self.cs, self.nt, self.D, self.dt, self.neg, self.big = sp, cs, nt, D, dt, neg, big
        w = cs.stop - cs.start
        self.V = [np.full((D + nt, len(g.kind), w), neg, dt) for g in sp.stages]
        na = len(sp.arb_l0)
        # the phase-1 moves on the links phase-2 moves cross, tokens t - 2 .. t + 2 (the later two as
        # their last solve found them, where there was one)
        self.BL = np.full((5 * nt, na, w), neg, dt)
        self.BL[3 * nt:] = big
        self.est = {}  # token -> its phase-1 moves there, as its last solve found them
        self.used = {}  # token -> the estimates of tokens t + 1, t + 2 its solve took (None: none)
        self.XH = np.full((2 * nt, na, w), neg, dt)  # the phase-2 moves there, tokens t - 2, t - 1
        self.xold = np.full((na, w), neg, dt)  # ... the latest of older tokens
        self.blold = np.full((na, w), neg, dt)  # the latest phase-1 move of token t - 3 there
        self.X = np.empty((nt, na, w), dt)  # this token's phase-2 moves there
        self.exit_max = int(neg)
        self.contended = 0

    def snapshot(self):
        D = self.D
        return ([v[:D].copy() for v in self.V], self.BL.copy(), self.XH.copy(), self.xold.copy(), self.blold.copy(),
                self.exit_max)

    def restore(self, sn) -> None:
        D = self.D
        for v, h in zip(self.V, sn[0]):
            v[:D] = h
        self.BL[...], self.XH[...], self.xold[...], self.blold[...] = sn[1:5]
        self.exit_max = sn[5]

    def token(self, t: int, tokdone, done, goall, last) -> None:
        sp, cs, nt, D, V, BL = self.sp, self.cs, self.nt, self.D, self.V, self.BL
        self.contended = 0
        self.used[t] = tuple(self.est.get(u) for u in (t + 1, t + 2))
        for i, x in enumerate(self.used[t]):
            BL[(3 + i) * nt:(4 + i) * nt] = self.big if x is None else x
        for st, g in enumerate(sp.stages):
            v = V[st]
            if len(g.arb):  # this token's phase-1 moves on the links its phase-2 moves cross (stages before)
                for slot in g.arb_slot:
                    s0, j = sp.arb_l0[slot]
                    BL[2 * nt:3 * nt, slot] = V[s0][D:D + nt, j]
                B = BL[:, g.arb_slot]
                blo = B.reshape(5, -1).min(axis=1)  # each token's first and last phase-1 move there
                bhi = B.reshape(5, -1).max(axis=1)
            for s in range(nt):
                b = v[D + s - 1] + 1
                np.maximum(b[:-1], np.where(g.bp[:-1], v[s, 1:] + 1, self.neg), out=b[:-1])
                if s == 0:
                    if len(g.first):
                        r = g.row[g.first]
                        b[g.first] = np.maximum(np.maximum(b[g.first], tokdone[r, cs]), done[r, cs] + 1)
                    if len(g.later):
                        b[g.later] = np.maximum(b[g.later], V[st - 1][D + nt - 1, g.later_prev] + 1)
                x = _segscan(b, g.off)
                if len(g.arb):
                    e = x[g.arb]
                    free = _first_free(e, B, blo, bhi, nt)
                    while (free > e).any():
                        b[g.arb] = np.maximum(b[g.arb], free)
                        x = _segscan(b, g.off)
                        e = x[g.arb]
                        free = _first_free(e, B, blo, bhi, nt)
                    want = np.maximum(v[D + s - 1, g.arb] + 1, x[g.arb - 1] + 1)  # its max, without the wait
                    np.maximum(want, np.where(g.bp[g.arb], v[s, np.minimum(g.arb + 1, len(b) - 1)] + 1, self.neg),
                               out=want)
                    self.contended += int((e - want).sum())
                    self.X[s, g.arb_slot] = e
                v[D + s] = x
            if g.exit >= 0:
                self.exit_max = max(self.exit_max, int(v[D + nt - 1, g.exit].max()))
            for i, js, rows in g.passes:
                goall[i * nt:(i + 1) * nt, rows, cs] = v[D:D + nt, js]
            last[g.row[g.last], cs] = v[D + nt - 1, g.last]
        self.est[t] = BL[2 * nt:3 * nt].copy()
        self.est.pop(t - 3, None)

    def check(self, t: int) -> int:
        """OK: this token's phase-2 moves are clear of token t - 3's phase-1 ones (t - 2's to t + 2's,
        as far as known, were taken into account), and this token's phase-1 moves clear of the
        phase-2 moves of earlier tokens on the same links: of t - 1's and t - 2's unless that token
        was solved with exactly these in view. Else the token to solve again, or FAIL: an older one."""
        nt, BL, XH = self.nt, self.BL, self.XH
        if not BL.shape[1]:
            return OK
        cur = BL[2 * nt:3 * nt]
        if (self.X.min(axis=0) <= self.blold).any() or (cur.min(axis=0) <= self.xold).any():
            return FAIL
        for u, xh in ((t - 2, XH[:nt]), (t - 1, XH[nt:])):
            if u < 0:
                continue
            took = self.used[u][t - u - 1]
            if not np.array_equal(took, cur) if took is not None else _meet(cur, xh):
                return u
        return OK

    def advance(self) -> None:
        nt, BL, XH = self.nt, self.BL, self.XH
        np.maximum(self.xold, XH[:nt].max(axis=0), out=self.xold)
        XH[:nt] = XH[nt:]
        XH[nt:] = self.X
        self.blold = BL[:nt].max(axis=0)
        BL[:4 * nt] = BL[nt:].copy()
        for v in self.V:  # on to the next token: the last D moves of each site
            v[:self.D] = v[nt:nt + self.D]


def _meet(x: np.ndarray, y: np.ndarray) -> bool:
    """Whether two sets of cycles per (site, column), (n, sites, cols) each, share one."""
    near = (x.max(axis=0) >= y.min(axis=0)) & (x.min(axis=0) <= y.max(axis=0))
    if not near.any():
        return False
    a, c = np.nonzero(near)
    return bool((x[:, a, c][:, None] == y[:, a, c][None]).any())


def _segscan(b: np.ndarray, off: np.ndarray) -> np.ndarray:
    """x[i] = max over j <= i in i's segment of b[j] + (i - j): one cycle per move along a path."""
    x = b.astype(np.int64)
    x += off
    np.maximum.accumulate(x, axis=0, out=x)
    x -= off
    return x.astype(b.dtype)


def _first_free(e: np.ndarray, B: np.ndarray, lo: np.ndarray, hi: np.ndarray, nt: int) -> np.ndarray:
    """The first cycle from ``e`` on that is not in ``B`` (increasing along axis 0, in blocks of
    ``nt`` whose least and greatest values are ``lo`` and ``hi``): e plus the length of the run of
    consecutive cycles of B that starts at e. The blocks all below e, and those beyond any run from
    e, are left out (the run is found by rank: B[j] = e + (j - i) with i the values below e)."""
    emin, emax = int(e.min()), int(e.max())
    a = int(np.count_nonzero(hi < emin))
    b = len(lo)
    while b > a and lo[b - 1] > emax + (b - 1 - a) * nt:
        b -= 1
    if b == a:
        return e
    B = B[a * nt:b * nt]
    kk = np.arange(len(B), dtype=e.dtype)[:, None, None]
    i = np.add.reduce((B < e).view(np.uint8), axis=0, dtype=e.dtype)
    run = np.add.reduce(((B - kk) == (e - i)) & (kk >= i), axis=0, dtype=e.dtype)
    return e + run


def _fill_counters(lay: Layout, f: TreeFabric, p: ColumnPlan, resident: bool):
    """Every wavelet passed every router on its way: the totals the loop counts; and the cores'
    progress (everything sent and consumed)."""
    R, m = lay.rows, lay.m
    kt, nt = m * lay.kt.astype(np.int64), m * lay.nt.astype(np.int64)
    if not resident:
        f.row_in[...] = kt
        f.row_out[...] = kt
        f.injected[...] = kt[:, 0]
    snd = np.zeros((4, R, lay.cols), bool)
    for r in range(R):
        k = p.out[r]
        snd[k, r] = True
        f.ramp_in[k, r] = nt[r]
    for k in range(4):
        thr = list(p.through(k))
        south = k in (S1, S2)
        for r in range(R):
            if p.out[r] == k or r in thr:
                f.link_out[k, r] = nt[r]
                nxt = r + (1 if south else -1)
                if 0 <= nxt < R:
                    f.link_in[k, nxt] = nt[nxt]
            if k in p.ins[r]:
                f.ramp_out[k, r] = nt[r]
    f.sunk[...] = nt[-1]
    consumed = f.ramp_out.copy()
    return m * lay.kt.astype(np.int64), nt, consumed, snd
