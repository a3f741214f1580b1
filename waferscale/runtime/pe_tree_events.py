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

A phase-2 wavelet of token t can also wait for a phase-1 wavelet of a later token (the next
tokens' phase-1 waves, already under way). The solver solves token t with the phase-1 moves of
tokens t - W .. t + W (W = ``window``) on the shared links in view, the later ones as their last solve found them or
as the last two solved suggest (steady state repeats), and keeps, per link, the span of token t's
phase-2 moves. When a later token is solved, its true phase-1 moves must be what token t took
within that span; where they are not, token t is solved again with them (and the tokens after it),
a few times at most. If an older token than t - W could still be in the way, or the re-solves run
out, ``run_tree_events`` returns None and ``pe_sim`` runs the loop (fused, ``pe_tree_fused``).
Otherwise every rule of the loop holds for every move, and the loop's cycles are the only ones that
satisfy them all (each cycle is fixed by earlier ones), so they are the loop's. The column root's
stream to the south edge, which the groups below the centre run tens of tokens ahead of, is solved
apart, after all tokens (``pe_tree_edge``). ``fits`` keeps the solver to columns whose groups cannot
run further apart than the window (else it would re-solve each token several times, slower than the
loop: at 256 x 256 rows about three times). ``tests/test_pe_tree_events.py`` holds the solver to the
loop.
"""

from __future__ import annotations

import numpy as np

from ..backends.column_reduce import N2, S1, S2, ColumnPlan
from .pe_events import ElementEvents
from .pe_fabric import TreeFabric
from .pe_layout import Layout
from .pe_tree import run_tree
from .pe_tree_edge import solve_edge
from .pe_tree_fused import run_tree_fused
from .pe_tree_jit import JIT_MAX_CORES, available, run_tree_jit
from .pe_tree_sites import SEG, Plan, sites

# At a hop of several cycles the fused loop is as fast as the loop itself or faster from about here
# (benchmarks/pe_tree_hop.py), and below it slower on short runs (the loop skips more work per cycle).
FUSED_HOP_MIN_CORES = 128 * 128
# ... and the compiled loop faster than both up to here; at 256 x 256 the fused loop is faster on long
# runs (16 tokens: 1.5x), where the compiled loop's queues of events no longer fit in the caches
JIT_HOP_MAX_CORES = 192 * 192


def solve_tree(lay: Layout, p: ColumnPlan, depth: int, nbuf: int, check: bool, engine: str, max_cycles: int,
               resident: bool, hop: int = 1, avail: np.ndarray | None = None, exits: np.ndarray | None = None,
               progress=None):
    """The tree reduce by the loop compiled (``pe_tree_jit``, where numba is installed and the grid
    has at most ``JIT_MAX_CORES`` cores), else by event times where they fit (``fits``) and the solver
    shows its cycles to be the loop's, else by the loop fused (``pe_tree_fused``: the same rules in
    fewer operations), and with ``check`` or ``engine="cycles"`` by the loop itself (``pe_tree``,
    which counts every wavelet at every router). Returns the fabric, the cycles and the cores'
    progress. ``hop`` (``Machine.hop_cycles``) > 1: the compiled loop up to ``JIT_HOP_MAX_CORES`` cores,
    else the fused loop from ``FUSED_HOP_MIN_CORES`` cores and the loop itself below (the event solver
    has one-cycle links only);
    ``avail`` and ``exits`` (a GEMV fed by the kernel before it): the loop itself, the one with
    arrivals. ``progress`` (the cycles done, every 1,024): the two loops
    call it; the compiled loop and the event solver do not (seconds at a one-cycle hop; at a hop of
    several cycles the compiled loop takes some 5 s on 16 tokens at 192 x 192 cores, and more on more
    tokens, with no bar)."""
    def counted(done):  # a fast loop's (cycles, waits): the counters are the totals every router passes
        f = TreeFabric.empty(lay.rows, lay.cols)
        f.contended = done[1]
        return f, done[0], fill_counters(lay, f, p, resident)

    fast = not check and engine != "cycles" and avail is None
    if fast and available() and lay.rows * lay.cols <= (JIT_MAX_CORES if hop == 1 else JIT_HOP_MAX_CORES):
        done = run_tree_jit(lay, p, depth, nbuf, max_cycles, resident, hop=hop)
        if done is not None:
            return counted(done)
    if fast and hop > 1 and lay.rows * lay.cols >= FUSED_HOP_MIN_CORES:
        done = run_tree_fused(lay, p, depth, nbuf, max_cycles, resident, hop, progress)
        if done is not None:
            return counted(done)
    elif fast and hop == 1:
        f = TreeFabric.empty(lay.rows, lay.cols)
        if fits(lay, p, depth):
            done = run_tree_events(lay, f, p, depth, nbuf, max_cycles, resident)
            if done is not None:
                return f, *done
        done = run_tree_fused(lay, p, depth, nbuf, max_cycles, resident, progress=progress)
        if done is not None:
            return counted(done)
    f = TreeFabric.empty(lay.rows, lay.cols)
    return f, *run_tree(lay, f, p, depth, nbuf, check, max_cycles, resident, hop, avail, exits, progress)


def fits(lay: Layout, p: ColumnPlan, depth: int) -> bool:
    """Whether the solver is worth trying: the queues between two group roots hold at most LAG
    tokens, so the groups run at most that far apart (deeper, it re-solves tokens over and over)."""
    return _lag(lay, p, depth) <= LAG


def window(lay: Layout, p: ColumnPlan, depth: int) -> int:
    """Tokens either side a token's phase-2 waits are solved against: the lag, 2 to 4."""
    return min(4, max(2, _lag(lay, p, depth)))


def _lag(lay: Layout, p: ColumnPlan, depth: int) -> int:
    """Tokens' partial sums the longest queue between two group roots holds (rounded up)."""
    hops = max([p.hops(r, k) for r in range(p.rows) for k in p.ins[r] if k in (S2, N2)], default=0)
    return -(-hops * depth // int(lay.nt.min()))


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
    W = window(lay, plan, D)
    groups = [Group(sp, cs, nt, D, dt, neg, big, m, W) for cs, nt in groups]
    n = sp.pmax * ntmax
    deep = np.array([plan.passes(r) > 1 for r in range(R)])
    goall = np.full((n, R, C), big, dt)  # each core's go cycles of the last token, sorted (big: none)
    first = goall[0]
    contended, snaps, redo, t = [], {}, 0, 0
    while t < m:
        snaps[t] = (a.snapshot(), goall.copy(), [g.snapshot() for g in groups])
        snaps.pop(t - W - 1, None)
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
            if redo > 4 + t // 2 or min(back) not in snaps:  # more re-solves than solves gain: the loop is faster
                return None
            t = min(back)
            a.restore(snaps[t][0])
            goall[...] = snaps[t][1]
            for g, sn in zip(groups, snaps[t][2]):
                g.restore(sn)
            del contended[t:]
            continue
        for g in groups:
            g.advance(t)
        contended.append(sum(g.contended for g in groups))
        a.DONE[1:] = a.DONE[:-1].copy()
        a.DONE[0] = last
        if nbuf == 2:
            a.steal = (goall[:, None], 0, n, first, (ntmax, deep))  # one pass a token: ntmax go cycles
        t += 1
    for g in groups:
        if sp.hops:  # the column root's stream to the south edge, with every token's phase-1 moves in view
            done = solve_edge(g.send, g.ramp, g.eb, np.array([h for h, _ in sp.edge_arb], np.intp), sp.hops, D,
                              g.nt)
            if done is None:
                return None
            g.exit_max = int(done[0].max())
            contended.append(int(done[1].sum()))
    cycles = max(g.exit_max for g in groups) + 1
    if cycles > max_cycles:
        raise RuntimeError(f"PE simulation made no progress for {max_cycles} cycles (deadlock)")
    f.contended = sum(contended)
    return cycles, fill_counters(lay, f, plan, resident)


OK, FAIL = -1, -2  # else: the token to solve again
LAG = 2  # tokens the queues between two group roots may hold for the solver to be tried (``fits``)


class Group:
    """The reduce of the columns ``cs``, each with ``nt`` partial sums, token by token."""

    def __init__(self, sp: Plan, cs: slice, nt: int, D: int, dt, neg, big, m: int, W: int):
        self.sp, self.cs, self.nt, self.D, self.dt, self.neg, self.big, self.m = sp, cs, nt, D, dt, neg, big, m
        self.W = W  # tokens either side whose phase-1 moves a token's phase-2 moves are solved against
        w = cs.stop - cs.start
        self.V = [np.full((D + nt, len(g.kind), w), neg, dt) for g in sp.stages]
        na = len(sp.arb_l0)
        # the phase-1 moves on the links phase-2 moves cross, tokens t - W .. t + W (the later ones as
        # their last solve found them, or as the two before them suggest)
        self.BL = np.full(((2 * W + 1) * nt, na, w), neg, dt)
        self.BL[(W + 1) * nt:] = big
        self.est = {}  # token -> its phase-1 moves there, as its last solve found them
        self.used = {}  # token -> the estimates of tokens t + 1, t + 2 its solve took (None: none)
        self.XH = np.full((W, 2, na, w), neg, dt)  # the span of the phase-2 moves there, tokens t - W .. t - 1
        self.xold = np.full((na, w), neg, dt)  # ... the latest of older tokens
        self.blold = np.full((na, w), neg, dt)  # the latest phase-1 move of token t - W - 1 there
        self.X = np.empty((2, na, w), dt)  # this token's: from the first cycle one wanted to the last move
        self.buf = np.empty((D, max(len(g.kind) for g in sp.stages), w), np.int64)
        ramp = np.arange(D, dtype=np.int64)[:, None, None]
        self.pre = []  # per stage, in the scan's domain (see ``token``): the offsets of the moves' rules
        for g in sp.stages:
            seg = (g.off[:, 0] + np.arange(len(g.off))) // SEG
            self.pre.append((g.off + 1,  # after its previous wavelet
                             np.where(g.bp[:-1], g.off[:-1] + 1, -SEG)[None] - ramp,  # room (-SEG: none)
                             g.off[None] - ramp,  # the domain's offset of each wavelet of a block at each site
                             int(np.bincount(seg - seg.min()).max())))  # the longest path: the scan's reach
        self.exit_max, self.contended = int(neg), 0
        if sp.hops:
            self.send, self.ramp = np.empty((2, m * nt, w), dt)
            self.eb = np.empty((m * nt, len(sp.edge_arb), w), dt)

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
        sp, cs, nt, D, V, BL, W = self.sp, self.cs, self.nt, self.D, self.V, self.BL, self.W
        self.contended = 0
        self.used[t] = tuple(self.guess(u) for u in range(t + 1, t + W + 1))
        for i, x in enumerate(self.used[t]):
            BL[(W + 1 + i) * nt:(W + 2 + i) * nt] = self.big if x is None else x
        for st, g in enumerate(sp.stages):
            v = V[st]
            if len(g.arb):  # this token's phase-1 moves on the links its phase-2 moves cross (stages before)
                for slot in g.arb_slot:
                    s0, j = sp.arb_l0[slot]
                    BL[W * nt:(W + 1) * nt, slot] = V[s0][D:D + nt, j]
                B = BL[:, g.arb_slot]
                blo = B.reshape(2 * W + 1, nt, *B.shape[1:]).min(axis=1)  # each token's first and last
                bhi = B.reshape(2 * W + 1, nt, *B.shape[1:]).max(axis=1)  # phase-1 move there
            # D wavelets at a time (their room was made by the D before them), in the scan's domain:
            # z = cycle + the site's segment offset - the wavelet's index in the block, in int64, so
            # that a running max along the wavelets and one along the sites (segmented by the offset)
            # give every move its max over the moves it waits for, one cycle per move
            off, (off1, bpz, zoff, span) = g.off, self.pre[st]
            if len(g.arb):
                aoff = zoff[:, g.arb]
            for s0 in range(0, nt, D):
                L = min(D, nt - s0)
                z = self.buf[:L, :len(g.kind)]
                np.add(v[s0:s0 + L, 1:], bpz[:L], out=z[:, :-1])  # room: the next site took the wavelet D before
                z[:, -1] = -SEG
                np.maximum(z[0], v[D + s0 - 1] + off1, out=z[0])  # its own previous wavelet, one cycle on
                if s0 == 0:
                    if len(g.first):
                        r, of = g.row[g.first], off[g.first]
                        z[0, g.first] = np.maximum(np.maximum(z[0, g.first], tokdone[r, cs] + of), done[r, cs] + 1 + of)
                    if len(g.later):
                        prev = V[st - 1][D + nt - 1, g.later_prev]  # the pass before, in the stage before
                        z[0, g.later] = np.maximum(z[0, g.later], prev + 1 + off[g.later])
                _cummax(z, span)
                if len(g.arb):  # raised to the first free cycle, and on again from there (the max is monotone)
                    e = z[:, g.arb] - aoff[:L]
                    free = _first_free(e, B, blo, bhi)
                    while (free > e).any():
                        z[:, g.arb] = np.maximum(z[:, g.arb], free + aoff[:L])
                        _cummax(z, span)
                        e = z[:, g.arb] - aoff[:L]
                        free = _first_free(e, B, blo, bhi)
                np.subtract(z, zoff[:L], out=v[D + s0:D + s0 + L], casting="unsafe")
            if len(g.arb):  # each wait: the move's cycle less its max without the wait
                a = g.arb
                e = v[D:D + nt, a]
                want = np.maximum(v[D - 1:D + nt - 1, a], v[D:D + nt, a - 1])
                np.maximum(want, np.where(g.bp[a], v[:nt, np.minimum(a + 1, len(g.kind) - 1)], self.neg), out=want)
                want += 1
                self.contended += int((e.astype(np.int64) - want).sum())
                self.X[0, g.arb_slot] = want[0]
                self.X[1, g.arb_slot] = e[-1]
            if g.exit >= 0:
                self.exit_max = max(self.exit_max, int(v[D + nt - 1, g.exit].max()))
            for i, js, rows in g.passes:
                goall[i * nt:(i + 1) * nt, rows, cs] = v[D:D + nt, js]
            last[g.row[g.last], cs] = v[D + nt - 1, g.last]
        self.est[t] = BL[W * nt:(W + 1) * nt].copy()
        self.est.pop(t - W - 3, None)

    def guess(self, u: int):
        """Token u's phase-1 moves on the arbitrated links: as its last solve found them, else one
        token period on from the two before (steady state repeats), else none."""
        if u >= self.m:
            return None
        if u in self.est:
            return self.est[u]
        k = max((k for k in self.est if k < u and k - 1 in self.est), default=None)
        if k is None:
            return None
        a = self.est[k]
        return a + (u - k) * (a - self.est[k - 1])

    def check(self, t: int) -> int:
        """OK: this token's phase-2 moves are clear of token t - W - 1's phase-1 ones (t - W's to
        t + W's, as far as known, were taken into account), and this token's phase-1 moves clear of
        the phase-2 moves of earlier tokens on the same links: of t - W's to t - 1's unless that
        token was solved with exactly these in view. Else the token to solve again, or FAIL: an
        older one."""
        nt, BL, XH, W = self.nt, self.BL, self.XH, self.W
        if not BL.shape[1]:
            return OK
        cur = BL[W * nt:(W + 1) * nt]
        if (self.X[0] <= self.blold).any() or (cur[0] <= self.xold).any():
            return FAIL
        for i in range(W):
            u, (lo, hi) = t - W + i, XH[i]
            if u < 0:
                continue
            took = self.used[u][t - u - 1]
            if not _same_within(cur, took, lo, hi):
                return u
        return OK

    def advance(self, t: int) -> None:
        nt, BL, XH, D, sp = self.nt, self.BL, self.XH, self.D, self.sp
        if sp.hops:  # what the edge stream's solve needs of this token
            st, go, l0 = sp.top
            self.send[t * nt:(t + 1) * nt] = self.V[st][D:D + nt, go]
            self.ramp[t * nt:(t + 1) * nt] = self.V[st][D:D + nt, l0]
            for i, (_, (s0, j)) in enumerate(sp.edge_arb):
                self.eb[t * nt:(t + 1) * nt, i] = self.V[s0][D:D + nt, j]
        np.maximum(self.xold, XH[0, 1], out=self.xold)
        XH[:-1] = XH[1:].copy()
        XH[-1] = self.X
        self.blold = BL[:nt].max(axis=0)
        BL[:-nt] = BL[nt:].copy()
        for v in self.V:  # on to the next token: the last D moves of each site
            v[:self.D] = v[nt:nt + self.D]


def _same_within(x: np.ndarray, y: np.ndarray | None, lo: np.ndarray, hi: np.ndarray) -> bool:
    """Whether the cycles of ``x`` and ``y`` (n, sites, columns; y None: none) that fall within
    lo..hi (sites, columns) are the same: a token's phase-2 moves, solved with y in view where x is,
    are then what x would have given (a first free cycle depends on the cycles from its start on)."""
    inx = (x >= lo) & (x <= hi)
    if y is None:
        return not inx.any()
    iny = (y >= lo) & (y <= hi)
    diff = (inx != iny) | (inx & (x != y))
    if not diff.any():
        return True
    a, c = np.nonzero(diff.any(axis=0))  # where the windows hold the two differently: compare as sets
    xs = np.sort(np.where(inx[:, a, c], x[:, a, c], hi[a, c] + 1), axis=0)
    ys = np.sort(np.where(iny[:, a, c], y[:, a, c], hi[a, c] + 1), axis=0)
    return bool(np.array_equal(xs, ys))


def _cummax(z: np.ndarray, span: int) -> None:
    """In place, the running max of z along its first two axes (wavelets, then sites, up to ``span``
    sites), by doubling: a few whole-array maxima (``np.maximum.accumulate`` takes an element at a
    time, some twenty times an add's time per element)."""
    k = 1
    while k < len(z):
        np.maximum(z[k:], z[:-k], out=z[k:])
        k *= 2
    k = 1
    while k < span:
        np.maximum(z[:, k:], z[:, :-k], out=z[:, k:])
        k *= 2


def _first_free(e: np.ndarray, B: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The first cycle from ``e`` (wavelets, sites, columns) on that is not in ``B`` (cycles along
    axis 0, in blocks whose least and greatest values are ``lo`` and ``hi``, (blocks, sites,
    columns); a guessed block need not follow the one before it), looked for only where e is within
    a block's span: one cycle on while the cycle is taken."""
    hit = ((lo[:, None] <= e) & (e <= hi[:, None])).any(axis=0)
    if not hit.any():
        return e
    s, a, c = np.nonzero(hit)
    x = e[s, a, c]
    b = B[:, a, c]
    while True:
        taken = (b == x).any(axis=0)
        if not taken.any():
            break
        x += taken
    out = e.copy()
    out[s, a, c] = x
    return out


def fill_counters(lay: Layout, f: TreeFabric, p: ColumnPlan, resident: bool):
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
