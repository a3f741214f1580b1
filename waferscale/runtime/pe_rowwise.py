"""PE-level simulator of the mesh layernorm: every core, every router, every cycle.

It is the second ground truth of the tile level, for a kernel whose cores combine statistics across
a row (``backends/kernels/rowwise.py``, ``Rowwise`` with ``op="layernorm"``), and it runs that
kernel's decomposition: ``y = (x - mean) / sqrt(var + eps) * weight + bias`` over the last axis of
an ``m x f`` array on a grid of ``rows x cols`` cores, cut to ``min(rows, m) x min(cols, f)``. Token
t goes to row ``t mod rows``; the features are split over the columns in contiguous blocks
(``backends/blocks.py``, the larger first), so core (i, j) handles ``x[t, F_j]`` (``ft_j`` elements)
of its row's tokens and keeps ``weight[F_j]`` and ``bias[F_j]`` in its SRAM. A core works through
its row's tokens in order; one token on one core goes as follows.

1. **Delivery.** The token's ``ft_j`` elements arrive at the core's router from the producer (a
   source at each router, as when a kernel's output lands where the next kernel runs: the tile
   level's ``ft * inputs`` wavelets per token per core), one 32-bit wavelet per cycle, cross the
   ramp and are received into a token buffer in SRAM without the datapath (an asynchronous
   fabric-to-memory move, one wavelet per cycle). A token takes a buffer when its first element is
   received and frees it when its last output has left. The buffers are the input and output
   buffers ``Rowwise.sram`` reserves, used as one pool (``Rowwise.token_slots``: four tokens): a
   token is normalized in place and sent from where it arrived.
2. **Statistics task.** Once all ``ft_j`` elements are in: ``Costs.task_start`` and
   ``LN_STAT_PASSES`` vector passes (sum, sum of squares), each ``Costs.vector_issue`` plus
   ``ceil(ft_j / lanes)`` cycles, ``lanes`` being the FMAC lanes times ``ELEMENTWISE_LANE_FRACTION``
   (``rowwise.layernorm_tasks``).
3. **Row all-reduce.** The two statistics go east along the row, one wavelet each: column 0 puts its
   own on the fabric; column j > 0 takes each statistic arriving from the west, adds its own and
   forwards the sum; the last column's add-and-forward sends the row's total west instead, and each
   router of the row passes it to its core and on west (a multicast, no datapath). Each
   add-and-forward (and column 0's send) takes the datapath for ``Costs.psum_add`` and goes
   before any task, which waits that cycle. So every core gets the totals (sum, sum of squares);
   the round trip to column 0 costs 4 cycles per column (east: hop, ramp, add; west: hop).
4. **Normalize task.** Once the token's totals are in: ``Costs.task_start``, the scalar
   ``LN_FINISH_OPS`` (mean, 1/sigma: ``element_cycles`` each, every core alike), and
   ``element_cycles('layernorm') - LN_STAT_PASSES`` vector passes (subtract, multiply by 1/sigma,
   scale, shift). The ``ft_j`` outputs then leave through the ramp, one wavelet per cycle
   (asynchronously again), and the router sends them on to the consumer (the sink).

When its datapath is free a core starts the next token's statistics if that token is in, else the
oldest normalize whose totals are in; a task runs to its end, interrupted only by the one-cycle
adds of step 3. So a core computes the statistics of later tokens while the all-reduce of earlier
ones is on the fabric, as far as its buffers allow. Every core does the same work per token, so the
widest core is the busiest and column 0 (widest, and the last to get the totals) is mostly the one
the row waits for; but a core that gets the totals earlier may normalize before the next token's
statistics where column 0 does the reverse, so the tile level (``rowwise.layernorm_row``)
schedules every core of the row, token by token.

How the simulator models it: as ``pe_sim``, one stage per cycle (``hop_cycles`` router to router,
``ramp_cycles`` router to core or core to router), a queue of ``pe_queue_depth`` wavelets (the
machine file's) per color at each router and at each core, and credit flow control: a wavelet moves
only if the receiving queue had room at the start of the cycle (a multicast only if all its
receivers had). Four colors: the delivery (source -> router -> core), the chain east (core -> router
-> next router -> its core), the totals west (last core -> router -> routers westward, each passing
to its core) and the output (core -> router -> sink); a hop of several cycles (a WSE-3's 2: source
to router, router to router, router to sink) is a delay line (``pe_links``). All decisions of a
cycle come from the state at its start and are then applied together; every step is a NumPy
operation over the whole ``(rows, cols)`` grid, with no Python loop over cores. The cycle count runs
from the first delivered wavelet to the last output received by a sink.

Numbers (float32). The block sums of each core are evaluated up front (their timing is the
task's); the chain's additions are made when, and in the order, the wavelets move (a core forwards
its own statistic plus the one that arrived from the west), so the totals are the float32 sums
from column 0 east; mean and 1/sigma follow from them by ``LN_FINISH_OPS``, the same operations on
every core, and the outputs from those. The variance is E[x^2] - mean^2, the algorithm the costs
describe; in float32 it loses precision when |mean| is many times sigma.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..backends.blocks import offsets, split
from ..backends.kernels.rowwise import LN_STATS, Rowwise, layernorm_tasks
from ..backends.machine import WSE2, Machine
from .pe_links import DelayLine
from .pe_machine import check_machine
from .pe_sim import PeRate

IDLE, STAT_TASK, NORM_TASK = 0, 1, 2  # what a core's datapath is running


@dataclass(frozen=True)
class RowwiseResult(PeRate):
    y: np.ndarray  # (m, f) float32: the layernorm as the sinks received it
    cycles: int  # from the first delivered wavelet to the last output received
    rows: int  # grid simulated: min(rows, m) x min(cols, f)
    cols: int
    wall_s: float
    busy: np.ndarray  # (rows, cols) datapath cycles of each core
    slots: int  # token buffers per core
    peak: int  # largest queue occupancy seen (with check=True)


def token_slots(f: int, cols: int) -> int:
    """Token buffers per core (``Rowwise.token_slots`` of a layernorm over ``f`` features)."""
    kernel = Rowwise(tokens=1, dtype="f32", elem=4, op="layernorm", features=f, inputs=1, params=2, flops_per_token=0)
    return kernel.token_slots(cols)


def finish(totals: np.ndarray, f: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and 1/sigma (float32) from the row totals (..., 2) of sum and sum of squares, as
    ``LN_FINISH_OPS``: mean = s / f, var = q / f - mean^2, 1/sigma = rsqrt(var + eps)."""
    totals = np.asarray(totals, np.float32)
    mean = totals[..., 0] * np.float32(1 / f)
    var = totals[..., 1] * np.float32(1 / f) - mean * mean
    return mean, np.float32(1) / np.sqrt(var + np.float32(eps))


def simulate_layernorm(x: np.ndarray, rows: int, cols: int, lanes: float, *, weight: np.ndarray | None = None,
                       bias: np.ndarray | None = None, eps: float = 1e-5, depth: int | None = None,
                       check: bool = False, max_cycles: int | None = None, machine: Machine = WSE2) -> RowwiseResult:
    """Layernorm over the last axis of ``x`` (m x f) on a ``rows x cols`` grid with ``lanes`` FMAC
    lanes per core (``machine.lanes(dtype)``). ``check`` verifies every queue's occupancy every cycle.
    ``machine``: one-cycle ramp and partial-sum add only (``pe_machine.check_machine``); any hop (``pe_links``)."""
    check_machine(machine, what="the PE-level layernorm")
    depth = machine.pe_queue_depth if depth is None else depth
    t0 = time.perf_counter()
    x = np.asarray(x, np.float32)
    if x.ndim != 2 or min(x.shape) < 1 or min(rows, cols) < 1 or lanes <= 0 or depth < 1:
        raise ValueError("x must be a non-empty m x f array; rows, cols, lanes and depth positive")
    m, f = x.shape
    R, C = min(rows, m), min(cols, f)
    ft = np.array(split(f, C), np.int64)
    off = np.array(offsets(list(ft)), np.int64)
    K = -(-m // R)  # tokens of the busiest row
    # Payloads: the block sums of every core and token, flat by core: own[i * C + j, k] for token i + k * R.
    t = np.arange(R)[:, None] + R * np.arange(K)[None, :]  # (R, K) token of each row's k-th turn
    tc = np.minimum(t, m - 1)
    sums = np.stack([np.add.reduceat(x, off, axis=1), np.add.reduceat(x * x, off, axis=1)], -1)  # (m, C, 2)
    own = np.where((t < m)[:, :, None, None], sums[tc], 0).transpose(0, 2, 1, 3).reshape(R * C, K, LN_STATS)
    own = np.ascontiguousarray(own, np.float32)
    slots = token_slots(f, cols)
    cycles, busy, peak, totals = _run(own, R, C, m, ft, lanes, depth, slots, check, max_cycles, machine.hop_cycles)
    tok = np.arange(m)
    mean, rstd = finish(totals[tok % R, tok // R], f, eps)  # what every core of the row computes alike
    y = (x - mean[:, None]) * rstd[:, None]
    if weight is not None:
        y = y * np.asarray(weight, np.float32)
    if bias is not None:
        y = y + np.asarray(bias, np.float32)
    return RowwiseResult(y=y.astype(np.float32), cycles=cycles, rows=R, cols=C, wall_s=time.perf_counter() - t0,
                         busy=busy, slots=slots, peak=peak)


def _run(own, R, C, m, ft_cols, lanes, D, S, check, max_cycles, hop=1):
    """Cycle by cycle until the sinks have every output: (cycles, busy cycles per core, peak queue,
    the totals each row's last column sent west, (rows, tokens of the busiest row, 2)). ``hop``: cycles
    a hop; links of more are delay lines: source -> router, east, west, router -> sink."""
    shape = (R, C)
    z = lambda: np.zeros(shape, np.int64)
    ft = np.broadcast_to(ft_cols[None, :], shape)
    mt = np.broadcast_to(np.array([len(range(i, m, R)) for i in range(R)])[:, None], shape)  # tokens per row
    durs = [layernorm_tasks(int(n), lanes) for n in ft_cols]
    stat_d = np.broadcast_to(np.array([d[0] for d in durs])[None, :], shape)
    norm_d = np.broadcast_to(np.array([d[1] for d in durs])[None, :], shape)
    if max_cycles is None:  # a generous bound: reaching it means the simulator deadlocked
        max_cycles = 10 * (mt.max() * int(ft.max() + stat_d.max() + norm_d.max() + 8 * C) + 4 * C) + 1000
    # queues (wavelets held), per color: delivery at the router and the core; chain east at the router
    # (from its core), the router (from the west) and the core; broadcast at the router and the core;
    # output at the router
    xr, xc, co, ci, cc, bq, bc, yo = (z() for _ in range(8))
    inj, rk, rn, slots = z(), z(), z(), z()  # delivered; tokens received, elements of the next; buffers held
    task, left, busy = z(), z(), z()  # the datapath's task, its cycles still to go, cycles used
    sk, nk = z(), z()  # tokens whose statistics, whose normalize are done
    hk, hn, bgot = z(), z(), z()  # chain: tokens done, statistic of the next; totals received (wavelets)
    ok, on = z(), z()  # output: tokens sent, wavelets of the next
    tot_in = mt * ft
    fwd = np.zeros_like(own)  # the value each core added and forwarded (the last column: the totals)
    has_west = (np.arange(R * C) % C) > 0
    out_left, cycle, peak = m * int(ft_cols.sum()), 0, 0
    chain = C > 1
    # links of several cycles: 0 source -> router, 1 east, 2 west, 3 router -> sink (by receiving queue)
    lines = [DelayLine(hop, shape) for _ in range(4)]

    to_east, to_west = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)  # onto the links, by receiving router
    while out_left:
        if cycle >= max_cycles:
            raise RuntimeError(f"PE layernorm made no progress for {max_cycles} cycles (deadlock)")
        # -- decisions, all from the state at the start of the cycle --
        fi = (inj < tot_in) & lines[0].room(xr, D)  # source -> router
        xm = (xr > 0) & (xc < D)  # router -> core (ramp)
        rv = (xc > 0) & ((rn > 0) | (slots < S))  # core receives into a buffer (a new token takes one)
        if chain:
            chm = (co[:, :-1] > 0) & lines[1].room(ci, D)[:, 1:]  # chain: hop east
            crm = (ci > 0) & (cc < D)  # chain: ramp to the core
            do_c = sk > hk  # add-and-forward: own statistic ready, ...
            do_c[:, 1:] &= cc[:, 1:] > 0  # ... the west one arrived, ...
            do_c[:, :-1] &= co[:, :-1] < D  # ... and room on the ramp east (the last column: west)
            do_c[:, -1] &= bq[:, -1] < D
            bmv = bq > 0  # broadcast: router -> its core (but the last column) and west (but column 0)
            bmv[:, :-1] &= bc[:, :-1] < D
            bmv[:, 1:] &= lines[2].room(bq, D)[:, :-1]
            br = bc > 0
            norm_ok = bgot >= LN_STATS * (nk + 1)
            norm_ok[:, -1] = hk[:, -1] > nk[:, -1]  # the last column made the totals itself
        else:
            do_c = np.zeros(shape, bool)
            norm_ok = sk > nk
        idle = (task == IDLE) & ~do_c
        stat_go = idle & (rk > sk)
        norm_go = idle & ~stat_go & norm_ok
        act = ((task != IDLE) & ~do_c) | stat_go | norm_go
        osend = (nk > ok) & (yo < D)  # core -> router (output ramp)
        ysink = yo > 0  # router -> sink
        # -- apply: delivery --
        xr += lines[0].push(fi, xm)
        xr -= xm
        inj += fi
        xc += xm
        xc -= rv
        slots += rv & (rn == 0)
        rn += rv
        full = rn == ft
        rk += full
        rn[full] = 0
        # -- apply: tasks --
        task[stat_go], left[stat_go] = STAT_TASK, stat_d[stat_go]
        task[norm_go], left[norm_go] = NORM_TASK, norm_d[norm_go]
        left -= act
        busy += act | do_c
        done = act & (left == 0)
        if done.any():
            sk += done & (task == STAT_TASK)
            nk += done & (task == NORM_TASK)
            task[done] = IDLE
        # -- apply: the chain east and the broadcast west --
        if chain:
            if do_c.any():
                idx = np.flatnonzero(do_c)
                k, s = hk.ravel()[idx], hn.ravel()[idx]
                west = np.where(has_west[idx], fwd[idx - 1, k, s], np.float32(0))
                fwd[idx, k, s] = own[idx, k, s] + west
                cc[:, 1:] -= do_c[:, 1:]
                co[:, :-1] += do_c[:, :-1]
                bq[:, -1] += do_c[:, -1]
                hn += do_c
                nxt = hn == LN_STATS
                hk += nxt
                hn[nxt] = 0
            co[:, :-1] -= chm
            to_east[:, 1:] = chm
            ci += lines[1].push(to_east, crm)
            ci -= crm
            cc += crm
            bq -= bmv
            bc[:, :-1] += bmv[:, :-1]
            to_west[:, :-1] = bmv[:, 1:]
            bq += lines[2].push(to_west, bmv)
            bc -= br
            bgot += br
        # -- apply: output --
        yo += osend
        yo -= ysink
        ysink = lines[3].push(ysink)  # the wavelets that reach the sinks now
        on += osend
        sent = on == ft
        ok += sent
        slots -= sent
        on[sent] = 0
        out_left -= int(np.count_nonzero(ysink))
        cycle += 1
        if check:
            for q in (xr, xc, co, ci, cc, bq, bc, yo):
                if q.min() < 0 or q.max() > D:
                    raise AssertionError(f"queue occupancy {q.min()}..{q.max()} outside 0..{D} at cycle {cycle}")
                peak = max(peak, int(q.max()))
            if slots.min() < 0 or slots.max() > S:
                raise AssertionError(f"token buffers {slots.min()}..{slots.max()} outside 0..{S} at cycle {cycle}")
    if not (np.array_equal(ok, mt) and np.array_equal(sk, mt) and np.array_equal(nk, mt)):
        raise AssertionError("PE layernorm ended with tokens not processed on some core")
    totals = (fwd if chain else own)[np.arange(R) * C + C - 1]  # (R, K, 2): what the last column sent west
    return cycle, busy, peak, totals
