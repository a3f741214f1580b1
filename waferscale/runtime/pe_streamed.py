"""PE-level simulator of the streamed-weight (activation-stationary) GEMM: every core, every router,
every cycle. It is the ground truth that the tile-level model (``backends/streamed.py``) is held to
(tests/test_streamed_gemm.py), and runs the same algorithm on a grid of ``kp`` K parts by ``mp`` M
parts: core (i, j) holds ``A[M_j, K_i]`` and two kinds of state, its accumulators (``ACC_BUFFERS``
output columns of ``mt_j`` sums) and its queues.

1. **Weight multicast.** The edge injector of K part i sends, output column by output column, one
   header wavelet (the column's count) and then each non-zero of ``W[K_i, n]`` (a zero is never
   sent), one wavelet per cycle, into router (i, 0); router (i, j) passes each wavelet to its core
   and on to router (i, j + 1), only when every receiver has room (a multicast).
2. **FMAC.** A core takes the wavelet at the head of its queue: a header starts the column's task
   (``Costs.task_start``), if fewer than ``ACC_BUFFERS`` columns are in flight on the core; a
   non-zero takes ``streamed.wavelet_cycles(mt_j)`` cycles (one AXPY over the core's tokens). The
   wavelet leaves the queue when it is done; after the column's last, the column may be reduced.
3. **Chain reduce.** Column by column, core (i, j) sends its ``mt_j`` partial sums towards K part
   i + 1, one per cycle: part 0 its own, part i > 0 each sum arriving from part i - 1 added to its
   own. The add-and-forward takes the datapath for ``Costs.psum_add`` and goes before the FMACs
   (which wait that cycle). The last part sends ``C[M_j, n]`` out of the edge.

Fabric rules as in ``pe_sim`` (``depth`` wavelets per queue, the machine's ``pe_queue_depth``; a
wavelet moves one stage a cycle, only into a queue that had room at the start of the cycle; all
decisions of a cycle are taken from the state at its start; a hop of several cycles, a WSE-3's 2, is a
delay line, ``pe_links``). The numbers (``products``) are the other interpreter of the
same walk: each core adds its non-zeros' products in the order they arrive (K order within a
column), and the chain adds the parts' sums in order, in float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backends.blocks import offsets, split
from ..backends.datapath import Datapath, as_datapath
from ..backends.machine import WSE2, Machine
from ..backends.streamed import ACC_BUFFERS, passes_for, wavelet_cycles
from .pe_links import DelayLine
from .pe_machine import check_machine


@dataclass(frozen=True)
class StreamedRun:
    cycles: int
    c: np.ndarray  # (m, n) float32, as the edge receives it
    wavelets: int  # weight wavelets injected (headers and non-zeros, every pass)


def _streams(w: np.ndarray, ks: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per K part: (is_header, ends_column) of each wavelet of its stream, in order."""
    out, at = [], 0
    for kt in ks:
        counts = (w[at:at + kt] != 0).sum(axis=0)
        at += kt
        length = counts + 1
        header = np.zeros(int(length.sum()), dtype=bool)
        header[np.concatenate([[0], np.cumsum(length)[:-1]])] = True
        ends = np.zeros_like(header)
        ends[np.cumsum(length) - 1] = True
        out.append((header, ends))
    return out


def products(a: np.ndarray, w: np.ndarray, ks: list[int]) -> np.ndarray:
    """C as the edge receives it: each K part's sums of its non-zeros' products in K order, added
    down the chain part by part (float32)."""
    a32, w32 = a.astype(np.float32), w.astype(np.float32)
    total = None
    for k0, kt in zip(offsets(ks), ks):
        own = np.zeros((a.shape[0], w.shape[1]), np.float32)
        for k in range(k0, k0 + kt):
            nz = np.flatnonzero(w32[k])
            own[:, nz] += a32[:, k:k + 1] * w32[k, nz]
        total = own + np.float32(0) if total is None else total + own
    return total


def simulate_streamed(a: np.ndarray, w: np.ndarray, kp: int, mp: int, lanes: Datapath | float = 4.0,
                      max_cycles: int = 10_000_000, depth: int | None = None,
                      machine: Machine = WSE2) -> StreamedRun:
    """``a @ w`` (w's zeros never sent) on ``kp x mp`` cores, cut to ``min(kp, k) x min(mp, m)``. Where a
    core's slices of A exceed ``streamed.A_BLOCK_BYTES`` the tokens go in passes (``passes_for``), one
    after the other, each streaming the whole weight: each M part's tokens are split over the passes.
    ``depth``: wavelets per queue (the machine's ``pe_queue_depth``). ``machine``: one-cycle ramp and
    partial-sum add only (``pe_machine.check_machine``), else not supported; any hop (``pe_links``)."""
    check_machine(machine, lanes, "the PE-level streamed GEMM")
    depth = machine.pe_queue_depth if depth is None else depth
    if depth < 1:
        raise ValueError("queue depth must be at least 1")
    dp = as_datapath(lanes)
    m, k = a.shape
    kp, mp = min(kp, k), min(mp, m)
    ks, ms = split(k, kp), split(m, mp)
    passes, _ = passes_for(m, mp, max(ks), dp.elem)
    streams = _streams(w, ks)
    cycles = sum(_pass_cycles(streams, w.shape[1], [split(x, passes)[p] for x in ms], dp, max_cycles, depth,
                              machine.hop_cycles) for p in range(passes))
    return StreamedRun(cycles, products(a, w, ks), passes * int(sum(len(h) for h, _ in streams)))


def _pass_cycles(streams, n: int, ms: list[int], dp: Datapath, max_cycles: int, depth: int,
                 hop_cycles: int = 1) -> int:
    """The cycles of one pass whose M parts hold ``ms`` tokens each (the cycle loop; a part with none
    this pass is left out). ``hop_cycles``: cycles a hop (links of more: ``pe_links.DelayLine``)."""
    ms = [x for x in ms if x > 0]
    kp, mp = len(streams), len(ms)
    D, B, T = depth, ACC_BUFFERS, dp.costs.task_start
    length = np.array([len(h) for h, _ in streams])
    width = int(length.max())
    is_header = np.zeros((kp, width + 1), dtype=bool)
    ends = np.zeros((kp, width + 1), dtype=bool)
    for i, (h, e) in enumerate(streams):
        is_header[i, :len(h)], ends[i, :len(e)] = h, e
    mt = np.array(ms, dtype=np.int64)[None, :].repeat(kp, 0)
    cost_nz = np.array([wavelet_cycles(x, dp) for x in ms], dtype=np.int64)[None, :].repeat(kp, 0)
    rows = np.arange(kp)[:, None].repeat(mp, 1)
    z = lambda: np.zeros((kp, mp), dtype=np.int64)  # noqa: E731
    inj, sunk = np.zeros(kp, np.int64), np.zeros(mp, np.int64)
    mq, cq, pos, cd, fm, rd, rs, ramp, north, rin = (z() for _ in range(10))
    started_col = z()  # columns whose header has started (the next header's column)
    need = n * sum(ms)
    # the links east (by receiving router; column 0 from the injector), south, and to the edge
    lines = tuple(DelayLine(hop_cycles, shape) for shape in ((kp, mp), (kp, mp), (mp,)))
    cycle = 0
    while sunk.sum() < need:
        cycle += 1
        if cycle > max_cycles:
            raise RuntimeError("streamed PE simulation did not finish (a deadlock?)")
        # -- fabric, from the state at the start of the cycle
        mq_room, north_room = lines[0].room(mq, D), lines[1].room(north, D)
        east_room = np.ones((kp, mp), dtype=bool)
        east_room[:, :-1] = mq_room[:, 1:]
        hop = (mq > 0) & (cq < D) & east_room  # router (i, j) -> core (i, j) and router (i, j + 1)
        send = (inj < length) & mq_room[:, 0]
        down = ramp > 0
        down[:-1] &= north_room[1:]  # the last part's ramp -> its router -> the edge
        deliver = (north > 0) & (rin < D)
        # -- datapath
        head = is_header[rows, pos]
        reduce = (fm > rd) & ((rows == 0) | (rin > 0)) & (ramp < D)
        running = ~reduce & (cd > 0)
        can_start = (~reduce & (cd == 0) & (cq > 0) & (pos < length[:, None])
                     & (~head | (started_col - rd < B)))
        cost = np.where(head, T, cost_nz)
        new_cd = np.where(running, cd - 1, np.where(can_start, cost - 1, cd))
        done = (running | can_start) & (new_cd == 0)
        ended = done & ends[rows, pos]
        # -- apply
        mq += np.where(hop, -1, 0)
        east = np.zeros((kp, mp), np.uint8)  # onto the links east
        east[:, 1:] = hop[:, :-1]
        east[:, 0] = send
        south = np.zeros((kp, mp), np.uint8)  # ... and south
        south[1:] = down[:-1]
        out = down[-1]
        # what reaches the queues (and the edge) now; the places freed, their credits back
        east, south, out = lines[0].push(east, hop), lines[1].push(south, deliver), lines[2].push(out)
        mq += east
        inj += send
        cq += hop.astype(np.int64) - done
        started_col += can_start & head
        cd = new_cd
        pos += done
        fm += ended
        rs += reduce
        full = reduce & (rs == mt)
        rd += full
        rs[full] = 0
        rin += deliver.astype(np.int64) - (reduce & (rows > 0))
        north -= deliver
        north += south
        ramp += reduce.astype(np.int64) - down
        sunk += out
    return cycle
