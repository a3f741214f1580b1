"""The tree reduce's cycle loop (``pe_tree.run_tree``) compiled with numba: the same rules, the same
cycles and waits, visiting only the cores that have something to do.

A cycle is two passes. The first takes every decision from the state at the start of the cycle, as
``run_tree`` does: per core a byte of flags (a pass of its reduce; the four link moves, phase 1
first where two colors want one link direction, each such wait counted; the row multicast; the
FMAC) and four bits of deliveries (router to core, per stream kind). The second applies them. Each
core's arithmetic is ``run_tree``'s and ``pe_fmac.Fmacs.step``'s, its countdown in the same unsigned
width (it wraps where that one does).

Most cores, most cycles, only count their head A element down. A core whose decisions come out as
that alone (or as nothing) sleeps: its countdown is made up when it wakes (``SINCE``,
``COUNTING``), and ``wake`` holds the first cycle it must be visited. A neighbour wakes it by
changing what its decisions read: a wavelet into one of its empty queues (an arrival into a queue
that held one already changes no decision: the core waited for something else), or room in a full
queue it sends into. A dense core's elements (``pe`` cycles each) are made up too (``_done``), but
for those that change a decision (``_chain``): its token's last (its reduce may start: visited in
that cycle) and one that makes room in its row queue for a multicast waiting only for that (visited
the cycle after, whose decisions see the room); one that empties the queue stops the countdown. That
saves the visits of the other element ends, a fifth of all visits (``benchmarks/pe_tree_profile.py``);
a sparse core, whose elements differ, is visited at each one's end. The first pass visits only the
cores awake.

A hop of several cycles (a WSE-3's 2, ``Machine.hop_cycles``) follows ``pe_links``' rule: a wavelet
sent in cycle c is in the next queue from cycle c + hop, and its sender sees a place freed in cycle c
from c + hop. Each queue a link feeds keeps its wavelets on their way and its credits on their way
back as two short FIFOs of cycles (``_sent``, ``_freed``), settled by the core that reads each one in
the cycle it is due in (``_settle``), which such an event wakes; ``QS`` counts each queue as its
sender sees it (at one cycle, ``S`` itself). ``tests/test_pe_tree_fused.py`` holds this loop, as the
fused one, to ``run_tree``'s cycles and waits, at hops of 1, 2, 3 and 5; ``tests/test_pe_tree_jit.py``
checks where it runs.

Memory: 16 bytes and 8 int32 words a core, 60 bytes with its wake cycle and list entries (3.9 MB
at 256 x 256); at a hop of several cycles 36 + 40 x (hop + 1) bytes more (``QS`` and the FIFOs: 156 at 2).
``pe_tree_events.solve_tree`` runs it on grids of up to ``JIT_MAX_CORES`` cores, where it is faster
than the NumPy engines (``benchmarks/pe_tree_engines.py``: 1.8x at 64 x 64, 2.6x at 128 x 128, 1.1x
at 256 x 256, where its state has left the caches and a visit costs more; on the full wafer it was
slower than ``pe_tree_fused`` in development runs), and at a hop of several cycles up to
``JIT_HOP_MAX_CORES`` (``benchmarks/pe_tree_hop.py``).

Needs numba (the ``jit`` extra, in the test extra too); ``available()`` says whether it is installed.
"""

from __future__ import annotations

from importlib.util import find_spec

import numpy as np

from ..backends.column_reduce import N1, N2, S1, S2, ColumnPlan, plan
from .pe_fmac import uint
from .pe_layout import Layout, layout
from .pe_tree import row_tables

GO, M1S, M2S, M1N, M2N, FA, ACT = 1, 2, 4, 8, 16, 32, 64  # a core's decisions
JIT_MAX_CORES = 256 * 256  # faster than the NumPy engines up to here (benchmarks/pe_tree_engines.py)


def available() -> bool:
    """Whether numba is installed (without importing it: a chain-only or tile-level user never pays
    for its import, some 100 MiB)."""
    return find_spec("numba") is not None


def warm() -> bool:
    """Compile the loop, or load it from numba's cache on disk (some 15 s the first time on a 2-core
    machine, well under a second after): ``make``'s install step calls it, so that neither the tests
    nor a user's first simulation wait for the compiler. False without numba."""
    if not available():
        return False
    rng = np.random.default_rng(0)
    lay = layout(rng.standard_normal((2, 8), dtype=np.float32), rng.standard_normal((8, 4), dtype=np.float32), 4, 2, 4)
    return run_tree_jit(lay, plan(lay.rows, "tree"), 4, 2, 10_000, False) is not None


def run_tree_jit(lay: Layout, p: ColumnPlan, depth: int, nbuf: int, max_cycles: int, resident: bool,
                 stats: dict | None = None, hop: int = 1):
    """As ``pe_tree.run_tree``: returns (cycles, contended), or None (the caller runs another
    engine) where the queues are deeper than a byte holds or the cycles more than a 32-bit word.
    ``stats``, a dict, gets ``visits``: how many times the loop visited a core (its cost, nearly all
    of it: ``benchmarks/pe_tree_profile.py``)."""
    R, C, m = lay.rows, lay.cols, lay.m
    if depth > 255 or max_cycles >= NEVER // 2 or not 1 <= hop <= 64:
        return None
    snd = np.array(p.out, np.int8)
    thr, dlv, optab, passes = row_tables(p)
    nt, kt, pe = lay.nt[0], lay.kt[:, 0], lay.fmac_cycles[0] * (not lay.sparse)
    # pe_layout: nt and a dense element's cycles per column, kt (at least 1) per row
    assert (lay.nt == nt).all() and (lay.kt == kt[:, None]).all() and (lay.fmac_cycles * (not lay.sparse) == pe).all()
    assert kt.min() >= 1
    # no router both delivers a kind to its core and passes it on: a queue frees one place a cycle at most,
    # so a FIFO of the loop at a hop of several cycles holds at most ``hop`` credits
    assert not (thr & dlv).any()
    top = int(np.iinfo(uint(lay.peak_cycles)).max)  # the width of run_tree's countdown (it wraps there)
    w = lambda x: (np.asarray(x, np.int64) & top).astype(np.int32)  # as run_tree's width holds them
    elem = w(lay.element_cycles).ravel() if lay.sparse else np.zeros(1, np.int32)
    out = _compiled()(R, C, m, depth, nbuf, max_cycles, resident, lay.sparse, int(lay.ktmax), snd, thr, dlv, optab,
                      passes, w(lay.first_cycles).ravel(), w(pe), elem, kt.astype(np.int32), nt.astype(np.int32),
                      m * lay.kt[:, 0].astype(np.int64), int(w(lay.lanes.costs.task_start)), m * lay.n, top, hop)
    cycles, contended, status, visits = out
    if stats is not None:
        stats["visits"] = int(visits)
    if status == 1:
        raise RuntimeError(f"PE simulation made no progress for {max_cycles} cycles (deadlock)")
    if status == 2:
        raise RuntimeError("the compiled tree loop ended with wavelets queued (simulator bug)")
    return int(cycles), int(contended)


_cache = []


def _compiled():
    """The kernel compiled, or loaded from numba's cache on disk (numba is imported here, once)."""
    if not _cache:
        import numba

        jit = numba.njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
        # the kernel calls the helpers compiled: numba reads its globals as it compiles it, so each helper's
        # module name is bound to its compiled form from here on (once, under the first call's thread)
        g = globals()
        for f in (_chain, _done):
            g[f.__name__] = jit(f)
        inline = numba.njit(cache=True, nogil=True, error_model="numpy", boundscheck=False, inline="always")
        for f in (_push, _sent, _freed, _credits, _settle, _next):
            g[f.__name__] = inline(f)
        _cache.append(jit(_kernel))
    return _cache[0]


def _chain(t, p, sparse, last, ia, D, room_waits, resident):
    """The first cycle a core asleep, counting down, must be visited: its head element is done in
    cycle ``t``, then ``last`` more to its token's last, ``p`` cycles each, with ``ia`` in its row
    queue (``room_waits``: its multicast waits only for room there). See the module docstring."""
    if sparse or p == 0:  # each element its own cycles: visited at each one's end
        return t
    if resident:
        return t + last * p
    if ia == D and room_waits:  # the multicast waits for this room
        return t if last == 0 else t + 1
    return t + last * p if last < ia else NEVER  # ia elements, then the queue is empty


def _done(gone, rem, p, ia, resident):
    """(elements done, the countdown after them, whether the queue emptied): an asleep dense core's
    ``gone`` cycles from a countdown of ``rem`` (> gone), ``p`` cycles an element, ``ia`` queued."""
    n = 1 + (gone - rem) // p
    if not resident and n >= ia:
        return ia, p, True
    return n, rem + n * p - gone, False


# A hop of several cycles (``pe_links``' rule): each queue a link feeds keeps two FIFOs of cycles, its
# wavelets on their way (slot k: a stream kind, or 4, the row queue) and the credits for the places it
# freed on their way back (slot 5 + k). A wavelet is counted at once in ``QS`` (the queue as its sender
# sees it), in ``S`` from the cycle it arrives; a freed place leaves ``S`` at once, ``QS`` when its
# credit is back. Each is settled at the start of the cycle it is due in, by the core that reads it
# (``_settle``; the row's injector, ``_credits``), which is visited then: an event wakes its reader.
# One a cycle at most per link, each settled in its cycle: a FIFO holds at most ``hop`` of them.


def _push(T, L, HD, j, k, t, hop):
    T[j, k, (HD[j, k] + L[j, k]) % (hop + 1)] = t
    L[j, k] += 1


def _sent(QS, T, L, HD, wake, j, k, t, hop):
    """A wavelet onto the link into queue ``k`` of core ``j``, there from cycle ``t``: the core is visited then."""
    QS[j, QA if k == 4 else IQ + k] += 1
    _push(T, L, HD, j, k, t, hop)
    if wake[j] > t:
        wake[j] = t


def _freed(T, L, HD, wake, j, k, t, hop, sender):
    """A place freed in queue ``k`` of core ``j``: its sender (a core, or -1: the row's injector or none)
    sees it from cycle ``t``, and is visited then."""
    _push(T, L, HD, j, 5 + k, t, hop)
    if sender >= 0 and wake[sender] > t:
        wake[sender] = t


def _credits(QS, T, L, HD, j, k, t, hop):
    """The credits for queue ``k`` of core ``j`` due by cycle ``t``, back with its sender."""
    while L[j, 5 + k] and T[j, 5 + k, HD[j, 5 + k]] <= t:
        HD[j, 5 + k] = (HD[j, 5 + k] + 1) % (hop + 1)
        L[j, 5 + k] -= 1
        QS[j, QA if k == 4 else IQ + k] -= 1


def _settle(S, QS, X, T, L, HD, i, r, c, R, C, t, hop):
    """Core ``i`` (row ``r``, column ``c``) at the start of cycle ``t``: the wavelets that have reached its
    queues, and the credits back for the queues it sends into."""
    for k in range(5):
        while L[i, k] and T[i, k, HD[i, k]] <= t:
            HD[i, k] = (HD[i, k] + 1) % (hop + 1)
            L[i, k] -= 1
            if k == 4:
                S[i, QA] += 1
            else:
                S[i, IQ + k] += 1
                X[i, BUSY] += 1
    if r < R - 1:
        _credits(QS, T, L, HD, i + C, S1, t, hop)
        _credits(QS, T, L, HD, i + C, S2, t, hop)
    if r > 0:
        _credits(QS, T, L, HD, i - C, N1, t, hop)
        _credits(QS, T, L, HD, i - C, N2, t, hop)
    if c < C - 1:
        _credits(QS, T, L, HD, i + 1, 4, t, hop)


def _next(T, L, HD, i, r, c, R, C):
    """The first cycle an event of core ``i``'s is due in: a wavelet into its queues, a credit back to it."""
    t = NEVER
    for k in range(5):
        if L[i, k]:
            t = min(t, T[i, k, HD[i, k]])
    for j, k, ok in ((i + C, S1, r < R - 1), (i + C, S2, r < R - 1), (i - C, N1, r > 0), (i - C, N2, r > 0),
                     (i + 1, 4, c < C - 1)):
        if ok and L[j, 5 + k]:
            t = min(t, T[j, 5 + k, HD[j, 5 + k]])
    return t


# a core's bytes (S) and words (X)
QA, IA, RQ, AHEAD, OPI, FLAGS, DLS, IQ, CQ = 0, 1, 2, 3, 4, 5, 6, 8, 12
REM, KK, E, BUSY, SINCE, COUNTING, TOKF = 0, 1, 2, 3, 4, 5, 6  # (the eighth word pads a core's to 32 bytes)
NEVER = np.iinfo(np.int32).max


def _kernel(R, C, m, D, nbuf, max_cycles, resident, sparse, ktmax, snd, thr, dlv, optab, passes, first, pe, elem, kt,
            nt, tot_a, ovh, out_left, top, hop):
    N = R * C
    S = np.zeros((N, 16), np.uint8)  # queues and the pass under way, a core's in one line
    # the queues a link feeds as their senders see them (``pe_links``): S itself at a one-cycle hop; else
    # counted from a wavelet's send to the credit for its place (``_sent``, ``_freed``, ``_settle``)
    QS = S if hop == 1 else np.zeros((N, 16), np.uint8)
    M = N if hop > 1 else 1
    T = np.zeros((M, 10, hop + 1), np.int32)  # per queue fed by a link: its wavelets' arrivals, then its credits
    L = np.zeros((M, 10), np.uint8)  # (FIFOs of cycles; the number held, and the first's place)
    HD = np.zeros((M, 10), np.uint8)
    last_exit = 0  # the cycle the last wavelet reaches the south edge
    X = np.zeros((N, 8), np.int32)  # countdowns and counters
    X[:, REM] = first
    X[:, SINCE] = -1
    wake = np.zeros(N, np.int32)  # the first cycle a core must be visited (0: every cycle; NEVER: until marked)
    act_list = np.zeros(N, np.int32)
    act_r = np.zeros(N, np.int32)  # their rows (the apply pass divides by nothing)
    rowlist = np.zeros(C, np.int32)
    fi = np.zeros(R, np.bool_)
    inj = np.zeros(R, np.int64)
    left = m * N
    moving = False
    contended = 0
    visits = 0
    cycle = 0
    while out_left > 0:
        if cycle >= max_cycles:
            return cycle, contended, 1, visits
        lft = left  # the FMACs run while some are left at the start of the cycle
        # -- decisions, all from the state at the start of the cycle, at the cores awake --
        na = 0
        for r in range(R):
            if lft and not resident:
                if hop > 1:  # the credits back to the row's injector
                    _credits(QS, T, L, HD, r * C, 4, cycle, hop)
                fi[r] = inj[r] < tot_a[r] and QS[r * C, QA] < D
            base = r * C
            n0 = 0
            for c in range(C):  # the row's cores awake, listed without a branch
                rowlist[n0] = c
                n0 += wake[base + c] <= cycle
            visits += n0
            sk = snd[r]
            ps = passes[r]
            for q in range(n0):
                c = rowlist[q]
                i = base + c
                wake[i] = 0
                if X[i, SINCE] >= 0:  # it was asleep: its countdown and the elements it finished, made up
                    if X[i, COUNTING]:
                        gone = cycle - X[i, SINCE]
                        if gone < X[i, REM]:
                            X[i, REM] -= gone
                        else:  # elements done asleep (a dense core's: _chain)
                            n, X[i, REM], stop = _done(gone, X[i, REM], pe[c] & top, S[i, IA], resident)
                            X[i, KK] += n
                            if not resident:
                                S[i, IA] -= n
                            if stop:
                                X[i, COUNTING] = 0
                    X[i, SINCE] = -1
                if hop > 1:
                    _settle(S, QS, X, T, L, HD, i, r, c, R, C, cycle, hop)
                fl = 0
                dd = 0
                op = S[i, OPI]
                kind = optab[r, op]
                notout = op + 1 < ps
                go = S[i, AHEAD] > 0
                if moving:
                    if go:
                        go = (kind < 0 or S[i, CQ + kind] > 0) and (S[i, RQ] < D or notout)
                    if X[i, BUSY]:
                        pos = S[i, RQ] > 0
                        m1s = sk == S1 and pos and (r == R - 1 or QS[i + C, IQ + S1] < D)
                        m2s = (((thr[S2, r] and S[i, IQ + S2] > 0) or (sk == S2 and pos))
                               and (r == R - 1 or QS[i + C, IQ + S2] < D))
                        m1n = sk == N1 and pos and (r == 0 or QS[i - C, IQ + N1] < D)
                        m2n = (((thr[N2, r] and S[i, IQ + N2] > 0) or (sk == N2 and pos))
                               and r > 0 and QS[i - C, IQ + N2] < D)
                        if (m1s and m2s) or (m1n and m2n):  # one link direction, two colors: the phase-1 wavelet first
                            contended += 1
                            m2s = m2s and not m1s
                            m2n = m2n and not m1n
                        if m1s:
                            fl |= M1S
                        if m2s:
                            fl |= M2S
                        if m1n:
                            fl |= M1N
                        if m2n:
                            fl |= M2N
                        for k in range(4):
                            if dlv[k, r] and S[i, IQ + k] > 0 and S[i, CQ + k] < D:
                                dd |= 1 << k
                else:
                    go = go and kind < 0 and not notout
                if go:
                    fl |= GO
                if lft:
                    if resident:
                        act = X[i, TOKF] < m
                    else:
                        if S[i, QA] > 0 and S[i, IA] < D and (c == C - 1 or QS[i + 1, QA] < D):
                            fl |= FA
                        act = S[i, IA] > 0
                    if act and S[i, AHEAD] < nbuf and not go:
                        fl |= ACT
                if not (fl & ~ACT or dd) and X[i, REM] > (1 if fl else 0):
                    # nothing but the FMAC's countdown (if that): asleep from this cycle until its head element is
                    # done, or until a neighbour changes a queue of its, or its room, and marks it
                    X[i, SINCE] = cycle
                    X[i, COUNTING] = fl != 0
                    wake[i] = NEVER
                    if fl:
                        wake[i] = _chain(cycle + X[i, REM] - 1, pe[c] & top, sparse, kt[r] - X[i, KK] - 1, S[i, IA],
                                         D, S[i, QA] > 0 and (c == C - 1 or QS[i + 1, QA] < D), resident)
                    if hop > 1:
                        wake[i] = min(wake[i], _next(T, L, HD, i, r, c, R, C))
                    continue
                act_list[na] = i
                act_r[na] = r
                na += 1
                S[i, FLAGS] = fl
                S[i, DLS] = dd
        # -- apply; a core whose queues change, or whose neighbour's room does, is awake the next cycle --
        if lft and not resident:
            for r in range(R):
                if fi[r]:
                    inj[r] += 1
                    if hop > 1:
                        _sent(QS, T, L, HD, wake, r * C, 4, cycle + hop, hop)
                    else:
                        S[r * C, QA] += 1
                        wake[r * C] = 0
        anygo = False
        for j in range(na):
            i = act_list[j]
            r = act_r[j]
            c = i - r * C
            fl = S[i, FLAGS]
            if lft:
                if fl & FA:
                    if hop > 1:
                        _freed(T, L, HD, wake, i, 4, cycle + hop, hop, i - 1 if c > 0 else -1)
                        if c < C - 1:
                            _sent(QS, T, L, HD, wake, i + 1, 4, cycle + hop, hop)
                    else:
                        if c > 0 and S[i, QA] == D:  # room again for the west neighbour's wavelet
                            wake[i - 1] = 0
                        if c < C - 1:  # an arrival wakes a core only where its queue was empty: else it waited
                            if S[i + 1, QA] == 0:
                                wake[i + 1] = 0
                            S[i + 1, QA] += 1
                    S[i, QA] -= 1
                    S[i, IA] += 1
                if fl & ACT:
                    X[i, REM] = (X[i, REM] - 1) & top
                if X[i, REM] == 0:
                    X[i, KK] += 1
                    X[i, REM] = (X[i, REM] + pe[c]) & top
                    if not resident:
                        S[i, IA] -= 1
                    if X[i, KK] == kt[r]:
                        X[i, TOKF] += 1
                        S[i, AHEAD] += 1
                        X[i, KK] = 0
                        X[i, REM] = (X[i, REM] + ovh) & top
                        left -= 1
                    if sparse:
                        X[i, REM] = (X[i, REM] + elem[i * ktmax + X[i, KK]]) & top
            if fl & GO:
                anygo = True
                op = S[i, OPI]
                kind = optab[r, op]
                if op + 1 >= passes[r]:  # the last pass sends
                    S[i, RQ] += 1
                    X[i, BUSY] += 1
                if kind >= 0:
                    S[i, CQ + kind] -= 1
                    X[i, BUSY] -= 1
                X[i, E] += 1
                if X[i, E] == nt[c]:
                    X[i, E] = 0
                    o = op + 1
                    if o == passes[r]:
                        o = 0
                        S[i, AHEAD] -= 1
                    S[i, OPI] = o
            if fl & (M1S | M2S | M1N | M2N):
                sk = snd[r]
                if fl & M1S or fl & M2S and sk == S2 or fl & M1N or fl & M2N and sk == N2:
                    S[i, RQ] -= 1
                    X[i, BUSY] -= 1
                if fl & M2S and thr[S2, r]:
                    if hop > 1:
                        _freed(T, L, HD, wake, i, S2, cycle + hop, hop, i - C if r > 0 else -1)
                    elif r > 0 and S[i, IQ + S2] == D:
                        wake[i - C] = 0
                    S[i, IQ + S2] -= 1
                    X[i, BUSY] -= 1
                if fl & M2N and thr[N2, r]:
                    if hop > 1:
                        _freed(T, L, HD, wake, i, N2, cycle + hop, hop, i + C if r < R - 1 else -1)
                    elif r < R - 1 and S[i, IQ + N2] == D:
                        wake[i + C] = 0
                    S[i, IQ + N2] -= 1
                    X[i, BUSY] -= 1
                if hop > 1:  # onto the links: in the queues a hop on
                    if r < R - 1:
                        if fl & M1S:
                            _sent(QS, T, L, HD, wake, i + C, S1, cycle + hop, hop)
                        if fl & M2S:
                            _sent(QS, T, L, HD, wake, i + C, S2, cycle + hop, hop)
                    elif fl & M2S:
                        out_left -= 1
                        last_exit = cycle + hop - 1
                    if r > 0:
                        if fl & M1N:
                            _sent(QS, T, L, HD, wake, i - C, N1, cycle + hop, hop)
                        if fl & M2N:
                            _sent(QS, T, L, HD, wake, i - C, N2, cycle + hop, hop)
                elif r < R - 1:
                    if fl & M1S:
                        if S[i + C, IQ + S1] == 0:
                            wake[i + C] = 0
                        S[i + C, IQ + S1] += 1
                        X[i + C, BUSY] += 1
                    if fl & M2S:
                        if S[i + C, IQ + S2] == 0:
                            wake[i + C] = 0
                        S[i + C, IQ + S2] += 1
                        X[i + C, BUSY] += 1
                elif fl & M2S:  # the south edge
                    out_left -= 1
                if hop == 1 and r > 0:
                    if fl & M1N:
                        if S[i - C, IQ + N1] == 0:
                            wake[i - C] = 0
                        S[i - C, IQ + N1] += 1
                        X[i - C, BUSY] += 1
                    if fl & M2N:
                        if S[i - C, IQ + N2] == 0:
                            wake[i - C] = 0
                        S[i - C, IQ + N2] += 1
                        X[i - C, BUSY] += 1
            dd = S[i, DLS]
            if dd:
                for k in range(4):
                    if dd & (1 << k):
                        if hop > 1:
                            up = (i - C if r > 0 else -1) if k == S1 or k == S2 else (i + C if r < R - 1 else -1)
                            _freed(T, L, HD, wake, i, k, cycle + hop, hop, up)
                        elif S[i, IQ + k] == D:  # room again for the upstream router's wavelet
                            if k == S1 or k == S2:
                                if r > 0:
                                    wake[i - C] = 0
                            elif r < R - 1:
                                wake[i + C] = 0
                        S[i, IQ + k] -= 1
                        S[i, CQ + k] += 1
            # asleep from the next cycle already, where its own state leaves it nothing but the countdown
            # (a neighbour that changes that later in this pass wakes it, as above)
            if X[i, BUSY] == 0 and (S[i, AHEAD] == 0 or optab[r, S[i, OPI]] >= 0) and (
                    resident or S[i, QA] == 0 or S[i, IA] >= D or (c < C - 1 and QS[i + 1, QA] >= D)):
                cnt = S[i, AHEAD] < nbuf and (X[i, TOKF] < m if resident else S[i, IA] > 0)
                if X[i, REM] > (1 if cnt else 0):
                    X[i, SINCE] = cycle + 1
                    X[i, COUNTING] = cnt
                    wake[i] = NEVER
                    if cnt:
                        wake[i] = _chain(cycle + X[i, REM], pe[c] & top, sparse, kt[r] - X[i, KK] - 1, S[i, IA], D,
                                         S[i, QA] > 0 and (c == C - 1 or QS[i + 1, QA] < D), resident)
                    if hop > 1:
                        wake[i] = min(wake[i], _next(T, L, HD, i, r, c, R, C))
        if anygo:
            moving = True
        cycle += 1
    if hop > 1:  # the last wavelet reaches the south edge a hop after it left
        if last_exit >= max_cycles:
            return max_cycles, contended, 1, visits
        cycle = last_exit + 1
    for i in range(N):
        if X[i, BUSY]:
            return cycle, contended, 2, visits
    return cycle, contended, 0, visits
