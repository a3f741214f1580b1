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


def solve_edge(send: np.ndarray, ramp: np.ndarray, blockers: np.ndarray, arb: np.ndarray, hops: int, depth: int,
               nt: int):
    """``send`` (N, w): the cycle the column root put each wavelet on its ramp (its last pass);
    ``ramp`` (N, w): the cycle each left the ramp in the first solve; ``blockers`` (N, nE, w): the
    phase-1 moves on the shared links (increasing, in blocks of ``nt`` per token); ``arb`` (nE,):
    the hop of each. Returns (the last cycle out of the south edge, the cycles phase-2 wavelets
    waited, per column) or None where the ramp moves differ."""
    N, w = send.shape
    D, H = depth, hops
    ring = np.full((D + 1, H + 1, w), np.iinfo(np.int64).min // 4, np.int64)  # [g % (D + 1)]: wavelet g
    ramp_h = np.arange(H + 1, dtype=np.int64)[:, None]
    ne = len(arb)
    m = N // nt
    blk = blockers.reshape(m, nt, ne, w).astype(np.int64)
    hi = blk[:, -1]  # each token's last phase-1 move per link
    ptr = np.zeros((ne, w), np.intp)
    waited = np.zeros(w, np.int64)
    nxt = np.minimum(arb + 1, H)
    has_next = (arb < H)[:, None]
    for g in range(N):
        prev, back = ring[(g - 1) % (D + 1)], ring[(g - D) % (D + 1)]  # wavelet g - 1; g - D (its room)
        b = prev + 1
        np.maximum(b[:-1], back[1:] + 1, out=b[:-1])
        np.maximum(b[0], send[g] + 1, out=b[0])
        x = _scan(b, ramp_h)
        if ne:
            while True:
                e = x[arb]
                c = _first_free(e, blk, hi, ptr)
                if not (c > e).any():
                    break
                b[arb] = np.maximum(b[arb], c)
                x = _scan(b, ramp_h)
            want = np.maximum(prev[arb] + 1, x[arb - 1] + 1)
            np.maximum(want, np.where(has_next, back[nxt] + 1, want), out=want)
            waited += (x[arb] - want).sum(axis=0)
        if not np.array_equal(x[0], ramp[g]):
            return None
        ring[g % (D + 1)] = x
    return ring[(N - 1) % (D + 1), H], waited


def _scan(b: np.ndarray, ramp: np.ndarray) -> np.ndarray:
    """x[h] = max over j <= h of b[j] + (h - j): one cycle per hop."""
    x = b - ramp
    np.maximum.accumulate(x, axis=0, out=x)
    x += ramp
    return x


def _first_free(e: np.ndarray, blk: np.ndarray, hi: np.ndarray, ptr: np.ndarray) -> np.ndarray:
    """The first cycle from ``e`` (links, columns) on that no phase-1 move of ``blk`` (tokens, nt,
    links, columns; increasing) takes. ``ptr``: per link and column, the first token whose last
    move is not before e (advanced in place: e only grows). The run of consecutive cycles from e is
    found by rank in that token and the next, again from its end while it reaches further."""
    m = len(blk)
    c = e
    while True:
        while True:
            cur = np.take_along_axis(hi, ptr[None], 0)[0]
            adv = (cur < c) & (ptr < m - 1)
            if not adv.any():
                break
            ptr += adv
        p2 = np.minimum(ptr + 1, m - 1)
        two = np.concatenate([np.take_along_axis(blk, ptr[None, None], 0)[0],
                              np.where(p2 > ptr, np.take_along_axis(blk, p2[None, None], 0)[0], np.int64(1) << 60)])
        kk = np.arange(len(two), dtype=np.int64)[:, None, None]
        i = (two < c).sum(axis=0)
        run = (((two - kk) == (c - i)) & (kk >= i)).sum(axis=0)
        if not run.any():
            return c
        c = c + run
