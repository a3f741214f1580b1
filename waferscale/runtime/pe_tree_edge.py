"""The column root's stream to the south edge, for the tree's event solver (``pe_tree_events``),
solved after every token's other moves.

Below the column root the stream crosses the upper halves of the groups below the centre, whose
phase-1 chains go south over the same links and go first. Those groups run ahead of the column
root by as many tokens as the queues of the phase-2 streams between them hold (tens on a deep
column), so the edge stream of token t meets the phase-1 moves of token t + 10 or later: too far
ahead to solve token by token. The stream feeds nothing but the south edge and, through its queues'
room, the column root's ramp. So the solver first takes it as if no link were shared, keeps the
column root's sends, its ramp moves and the phase-1 moves on the shared links of every token, and
then solves the stream wavelet by wavelet with them all in view: hop h's move is a max over the
hop before it (+1), its own previous wavelet (+1) and the room of the next hop's queue (hop h + 1's
move of the wavelet ``depth`` before, +1), moved on to the first cycle the phase-1 stream leaves
free where the link is shared. If the column root's ramp moves come out as the first solve had
them, the back-pressure it assumed was the true one and the solution is the loop's; else the solver
gives up (the loop runs).
"""

from __future__ import annotations

import numpy as np

NONE = np.iinfo(np.int64).min // 4  # no move yet


def solve_edge(send: np.ndarray, ramp: np.ndarray, blockers: np.ndarray, arb: np.ndarray, hops: int, depth: int,
               nt: int):
    """``send`` (N, w): the cycle the column root put each wavelet on its ramp (its last pass);
    ``ramp`` (N, w): the cycle each left the ramp in the first solve; ``blockers`` (N, nE, w): the
    phase-1 moves on the shared links (increasing, in blocks of ``nt`` per token); ``arb`` (nE,):
    the hop of each. Returns (the last cycle out of the south edge, the cycles phase-2 wavelets
    waited, per column) or None where the ramp moves differ.

    ``depth`` wavelets at a time (the room each waits for was made by the block before): in the
    domain z = cycle - hop - the wavelet's index in the block, a running max along the wavelets and
    one along the hops give each move its max over the moves it waits for; a move on a shared link
    is then raised to the first cycle the phase-1 stream leaves free, and the maxima taken again,
    until none is raised (each rule is monotone, so this ends at the least solution, which is the
    loop's: every move at the first cycle its rules allow)."""
    N, w = send.shape
    D, H = depth, hops
    ne = len(arb)
    m = N // nt
    blk = blockers.reshape(m, nt, ne, w).astype(np.int64)
    hi = blk[:, -1]  # each token's last phase-1 move per link
    ptr = np.zeros((D, ne, w), np.intp)  # per wavelet of the block: the first token whose last move is not before it
    waited = np.zeros(w, np.int64)
    nxt = np.minimum(arb + 1, H)
    has_next = (arb < H)[None, :, None]
    ramp_hj = (np.arange(D, dtype=np.int64)[:, None, None] + np.arange(H + 1, dtype=np.int64)[None, :, None])
    aramp = ramp_hj[:, arb]
    P = np.full((D, H + 1, w), NONE, np.int64)  # the block before (none yet)
    z = np.empty((D, H + 1, w), np.int64)
    for g0 in range(0, N, D):
        L = min(D, N - g0)
        zl, rl = z[:L], ramp_hj[:L]
        np.add(P[:L, 1:], 1, out=zl[:, :-1])  # room: the next hop took the wavelet D before
        zl[:, -1] = NONE  # (the south edge always has room)
        np.maximum(zl[0], P[-1] + 1, out=zl[0])  # the wavelet before, one cycle on
        np.maximum(zl[:, 0], send[g0:g0 + L] + 1, out=zl[:, 0])  # off the ramp once sent
        zl -= rl
        _close(zl)
        if ne:
            p = ptr[:L]
            while True:
                e = zl[:, arb] + aramp[:L]
                c = _first_free(e, blk, hi, p)
                if not (c > e).any():
                    break
                zl[:, arb] = np.maximum(zl[:, arb], c - aramp[:L])
                _close(zl)
        x = zl + rl
        if not np.array_equal(x[:, 0], ramp[g0:g0 + L]):
            return None
        if ne:  # each wait: the move less its max without the wait
            prev = np.concatenate([P[-1:, arb], x[:-1, arb]])
            want = np.maximum(prev, x[:, arb - 1])
            np.maximum(want, np.where(has_next, P[:L, nxt], want), out=want)
            waited += (x[:, arb] - want - 1).sum(axis=(0, 1))
            ptr[:] = ptr[L - 1]
        P[:L] = x
    return P[(N - 1) % D, H], waited


def _close(z: np.ndarray) -> None:
    """In place, the running max of z along wavelets (axis 0) and then hops (axis 1), by doubling."""
    for ax in (0, 1):
        n, k = z.shape[ax], 1
        while k < n:
            if ax:
                np.maximum(z[:, k:], z[:, :-k], out=z[:, k:])
            else:
                np.maximum(z[k:], z[:-k], out=z[k:])
            k *= 2


def _first_free(e: np.ndarray, blk: np.ndarray, hi: np.ndarray, ptr: np.ndarray) -> np.ndarray:
    """The first cycle from ``e`` (wavelets, links, columns) on that no phase-1 move of ``blk``
    (tokens, nt, links, columns; increasing) takes. ``ptr`` (as e): the first token whose last
    move is not before e (advanced in place: e only grows); e before that token's first move is
    free. Elsewhere the run of consecutive cycles from e is found by rank in that token and the
    next, again from its end while it reaches further."""
    m = len(blk)
    a = np.arange(e.shape[1])[None, :, None]
    col = np.arange(e.shape[2])[None, None, :]
    while True:
        adv = (hi[ptr, a, col] < e) & (ptr < m - 1)
        if not adv.any():
            break
        ptr += adv
    at = np.nonzero(e >= blk[ptr, 0, a, col])  # within (or past all) of the phase-1 moves of token ptr
    if not len(at[0]):
        return e
    _, ai, ci = at
    x, p = e[at], ptr[at]
    kk = np.arange(2 * blk.shape[1], dtype=np.int64)
    while True:
        p2 = np.minimum(p + 1, m - 1)
        two = np.concatenate([blk[p, :, ai, ci], np.where((p2 > p)[:, None], blk[p2, :, ai, ci], np.int64(1) << 60)],
                             axis=1)  # (candidates, 2 nt)
        i = (two < x[:, None]).sum(axis=1)
        run = (((two - kk) == (x - i)[:, None]) & (kk >= i[:, None])).sum(axis=1)
        if not run.any():
            break
        x += run
        while True:
            adv = (hi[p, ai, ci] < x) & (p < m - 1)
            if not adv.any():
                break
            p += adv
    c = e.copy()
    c[at], ptr[at] = x, p
    return c
