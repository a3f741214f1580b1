"""PE-level simulator of the mesh layernorm: every core, every router, every cycle.

It is the second ground truth of the tile level, for a kernel with a reduction across a row of
cores (``backends/kernels/rowwise.py``, ``Rowwise`` with ``op="layernorm"``), and it runs the same
decomposition: ``y = (x - mean) / sqrt(var + eps) * weight + bias`` over the last axis of an
``m x f`` array on a grid of ``rows x cols`` cores, cut to ``min(rows, m) x min(cols, f)``. Token t
goes to row ``t mod rows``; the features are split over the columns in contiguous blocks
(``backends/blocks.py``), so core (i, j) handles ``x[t, F_j]`` (``ft_j`` elements) of its row's
tokens and keeps ``weight[F_j]`` and ``bias[F_j]`` in its SRAM. Each core works through its row's
tokens in order, and one token's work on one core goes as follows.

1. **Delivery.** The token's ``ft_j`` elements arrive at the core's router from the producer (a
   source at each router, as when a kernel's output lands where the next kernel runs: the tile
   level's ``ft * inputs`` wavelets per core per token), one 32-bit wavelet per cycle, and cross the
   ramp to the core, which receives each into a token buffer in SRAM without using its datapath
   (an asynchronous fabric-to-memory move). A token takes a buffer when its first element is
   received and gives it back when its last output has left. The buffers are those
   ``Rowwise.sram`` reserves, input and output together (``token_slots``: four), used as one pool:
   a token is normalized in place and sent from where it arrived.
2. **Statistics task.** When all ``ft_j`` elements are in, a task computes the block's sum and sum
   of squares: ``TASK_OVERHEAD_CYCLES`` plus ``STAT_PASSES`` SIMD passes of ``ceil(ft_j / lanes)``
   cycles (``lanes`` is the FMAC lanes times ``ELEMENTWISE_LANE_FRACTION``).
3. **Row all-reduce.** The two statistics go east along the row in a chain, one wavelet each:
   column 0 puts its own on the fabric; column j > 0 takes each statistic arriving from the west,
   adds its own and forwards the sum (the last column keeps it). Each such add-and-forward takes the
   datapath for ``PARTIAL_SUM_CYCLES`` and goes before any task (a task waits that cycle). The last
   column then finishes the statistics, ``FINISH_OPS`` scalar ops (mean = s / f, E[x^2] = q / f,
   mean^2, var, + eps, 1/sigma = rsqrt) at ``element_cycles`` each, and puts mean and 1/sigma on
   the fabric going west (``PARTIAL_SUM_CYCLES`` each, before any task). Each router of the row
   passes those two wavelets to its core and on to the west (a multicast, no datapath involved);
   each core receives them into the token's buffer.
4. **Normalize task.** When the token's mean and 1/sigma are in (the last column: when it has
   finished them), a task subtracts, scales by 1/sigma, by the weight and adds the bias:
   ``TASK_OVERHEAD_CYCLES`` plus ``element_cycles('layernorm') - STAT_PASSES`` passes of
   ``ceil(ft_j / lanes)`` cycles. The ``ft_j`` outputs then leave through the ramp one wavelet per
   cycle (asynchronously again) to the router, which sends them on to the consumer (the sink).

When the datapath is free it starts, of the tasks that are ready, the finish first, then the
oldest token's normalize, then the next token's statistics; a task runs to its end, interrupted
only by the one-cycle fabric sends of step 3. So a core computes the statistics of later tokens
while the all-reduce of earlier ones is on the fabric, as far as its buffers allow.

How the simulator models it: as ``pe_sim``, one stage per cycle (``HOP_CYCLES`` router to
router, ``RAMP_CYCLES`` router to core or core to router), a queue of ``PE_QUEUE_DEPTH`` wavelets
per color at each router and at each core, and credit flow control: a wavelet moves only if the
receiving queue had room at the start of the cycle (a multicast only if all its receivers had).
Four colors: the delivery (source -> router -> core), the chain east (core -> router -> next
router -> its core; three cycles per column: hop, ramp, add-and-forward), the broadcast west
(last core -> router -> routers westward, each passing to its core; one cycle per column) and the
output (core -> router -> sink). All decisions of a cycle come from the state at its start and are
then applied together; every step is a NumPy operation over the whole ``(rows, cols)`` grid, with
no Python loop over cores. The cycle count runs from the first delivered wavelet to the last
output received by a sink.

Numbers (float32). The block sums of each core are evaluated up front (their timing is the
task's); the chain's additions are made when and in the order the wavelets move (each core's
forwarded value is its own statistic plus the one that arrived from the west); the last column's
finish computes mean and 1/sigma from the totals it received; the outputs are computed from
those. The variance is E[x^2] - mean^2, the algorithm the costs describe; in float32 it loses
precision when |mean| is many times sigma.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from math import ceil

import numpy as np

from ..backends import assumptions as A
from ..backends.blocks import offsets, split
from ..backends.kernels.rowwise import Rowwise, element_cycles

if (A.HOP_CYCLES, A.RAMP_CYCLES, A.PARTIAL_SUM_CYCLES) != (1, 1, 1):  # one stage per cycle; more needs delay lines
    raise NotImplementedError("the PE-level layernorm models HOP_CYCLES = RAMP_CYCLES = PARTIAL_SUM_CYCLES = 1 only")

STAT_PASSES = 2  # sum and sum of squares: the passes of element_cycles("layernorm") before the all-reduce
FINISH_OPS = ("mul", "mul", "mul", "sub", "add", "rsqrt")  # mean, E[x^2], mean^2, var, + eps, 1/sigma
STATS = 2  # wavelets per token each way on the row: (sum, sum of squares) east, (mean, 1/sigma) west
IDLE, STAT_TASK, NORM_TASK = 0, 1, 2


@dataclass(frozen=True)
class RowwiseResult:
    y: np.ndarray  # (m, f) float32: the layernorm as the sinks received it
    cycles: int  # from the first delivered wavelet to the last output received
    rows: int  # grid simulated: min(rows, m) x min(cols, f)
    cols: int
    wall_s: float
    busy: np.ndarray  # (rows, cols) datapath cycles of each core
    slots: int  # token buffers per core
    peak: int  # largest queue occupancy seen (with check=True)

    @property
    def pe_cycles(self) -> int:
        return self.cycles * self.rows * self.cols

    @property
    def pe_cycles_per_s(self) -> float:
        return self.pe_cycles / self.wall_s if self.wall_s > 0 else float("inf")


def token_slots(f: int, cols: int) -> int:
    """Token buffers per core: the input and output buffers ``Rowwise.sram`` reserves for layernorm,
    counted in tokens of the widest block."""
    k = Rowwise(tokens=1, dtype="f32", elem=4, op="layernorm", features=f, inputs=1, params=2, flops_per_token=0)
    s = k.sram(1, cols)
    return (s["activations_in"] + s["activations_out"]) // (4 * ceil(f / min(cols, f)))


def task_cycles(ft: int, lanes: float) -> tuple[int, int, int]:
    """Datapath cycles of the statistics task, the normalize task and the finish, for a block of ``ft``
    features and ``lanes`` FMAC lanes."""
    lanes = lanes * A.ELEMENTWISE_LANE_FRACTION
    passes = ceil(ft / lanes)
    stat = A.TASK_OVERHEAD_CYCLES + STAT_PASSES * passes
    norm = A.TASK_OVERHEAD_CYCLES + (element_cycles("layernorm") - STAT_PASSES) * passes
    finish = sum(ceil(1 / lanes) * element_cycles(op) for op in FINISH_OPS)
    return stat, norm, finish


def simulate_layernorm(x: np.ndarray, rows: int, cols: int, lanes: float, *, weight: np.ndarray | None = None,
                       bias: np.ndarray | None = None, eps: float = 1e-5, depth: int = A.PE_QUEUE_DEPTH,
                       check: bool = False, max_cycles: int | None = None) -> RowwiseResult:
    """Layernorm over the last axis of ``x`` (m x f) on a ``rows x cols`` grid with ``lanes`` FMAC
    lanes per core (``machine.lanes(dtype)``). ``check`` verifies every queue's occupancy every cycle."""
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
    own = np.where((t < m)[:, :, None, None], sums[tc], 0).transpose(0, 2, 1, 3).reshape(R * C, K, STATS)
    own = np.ascontiguousarray(own, np.float32)
    slots = token_slots(f, cols)
    cycles, busy, peak, mean, rstd = _run(own, R, C, m, f, ft, lanes, depth, slots, eps, check, max_cycles)
    tok = np.arange(m)
    y = (x - mean[tok % R, tok // R][:, None]) * rstd[tok % R, tok // R][:, None]
    if weight is not None:
        y = y * np.asarray(weight, np.float32)
    if bias is not None:
        y = y + np.asarray(bias, np.float32)
    return RowwiseResult(y=y.astype(np.float32), cycles=cycles, rows=R, cols=C, wall_s=time.perf_counter() - t0,
                         busy=busy, slots=slots, peak=peak)


def _run(own, R, C, m, f, ft_cols, lanes, D, S, eps, check, max_cycles):
    shape = (R, C)
    z = lambda: np.zeros(shape, np.int64)
    ft = np.broadcast_to(ft_cols[None, :], shape)
    mt = np.broadcast_to(np.array([len(range(i, m, R)) for i in range(R)])[:, None], shape)  # tokens per row
    durs = [task_cycles(int(n), lanes) for n in ft_cols]
    stat_d = np.broadcast_to(np.array([d[0] for d in durs])[None, :], shape)
    norm_d = np.broadcast_to(np.array([d[1] for d in durs])[None, :], shape)
    fin_d = durs[-1][2]
    last = np.zeros(shape, bool)
    last[:, -1] = True
    if max_cycles is None:  # a generous bound: reaching it means the simulator deadlocked
        max_cycles = 10 * (mt.max() * int(ft.max() + stat_d.max() + norm_d.max() + fin_d + 8 * C) + 4 * C) + 1000
    # queues (wavelets held), per color: delivery at the router and the core; chain east at the
    # router (from its core), the router (from the west) and the core; broadcast at the router and
    # the core; output at the router
    xr, xc, co, ci, cc, bq, bc, yo = (z() for _ in range(8))
    inj, rk, rn, slots = z(), z(), z(), z()  # delivered; tokens received, elements of the next; buffers held
    task, left, busy = z(), z(), z()  # the datapath's task, its cycles still to go, cycles used
    sk, hk, hn, fk, fl = z(), z(), z(), z(), z()  # statistics done; chain: tokens, statistic of the next; finishes
    bk, bn, bgot, nk = z(), z(), z(), z()  # broadcast sends: tokens, wavelets of the next; received; normalized
    ok, on = z(), z()  # output: tokens sent, wavelets of the next
    tot_in = mt * ft
    fwd = np.zeros_like(own)  # the value each core added and forwarded (the last column: the totals)
    mean, rstd = np.zeros((R, mt.max()), np.float32), np.zeros((R, mt.max()), np.float32)
    has_west = (np.arange(R * C) % C) > 0
    out_left, cycle, peak = m * f, 0, 0
    chain = C > 1
    while out_left:
        if cycle >= max_cycles:
            raise RuntimeError(f"PE layernorm made no progress for {max_cycles} cycles (deadlock)")
        # -- decisions, all from the state at the start of the cycle --
        fi = (inj < tot_in) & (xr < D)  # source -> router
        xm = (xr > 0) & (xc < D)  # router -> core (ramp)
        rv = (xc > 0) & ((rn > 0) | (slots < S))  # core receives into a buffer (a new token takes one)
        fab = np.zeros(shape, bool)
        if chain:
            chm = (co[:, :-1] > 0) & (ci[:, 1:] < D)  # hop east
            crm = (ci > 0) & (cc < D)  # ramp to the core
            do_c = sk > hk  # add-and-forward: own statistic ready, ...
            do_c[:, 1:] &= cc[:, 1:] > 0  # ... the west one arrived, ...
            do_c[:, :-1] &= co[:, :-1] < D  # ... and room on the ramp east
            bsend = last & (fk > bk) & (bq < D)  # the last column puts mean, 1/sigma on the fabric
            fin_go = last & ~bsend & ((fl > 0) | (hk > fk))  # ... after it finishes them
            do_c &= ~bsend & ~fin_go
            fab = do_c | bsend | fin_go
            bmv = bq > 0  # broadcast: router -> its core (but the last column) and west (but column 0)
            bmv[:, :-1] &= bc[:, :-1] < D
            bmv[:, 1:] &= bq[:, :-1] < D
            br = bc > 0
        else:  # one column: the finish is the next thing its datapath does once the statistics are done
            fin_go = (fl > 0) | ((sk > fk) & (task == IDLE))
            fab = fin_go
        run = (task != IDLE) & ~fab
        idle = (task == IDLE) & ~fab
        norm_ok = np.where(last, fk > nk, bgot >= STATS * (nk + 1))
        stat_go = idle & (rk > sk)
        norm_go = idle & ~stat_go & norm_ok
        osend = (nk > ok) & (yo < D)  # core -> router (output ramp)
        ysink = yo > 0  # router -> sink
        # -- apply: delivery --
        xr += fi
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
        act = run | stat_go | norm_go
        left -= act
        busy += act | fab
        done = act & (left == 0)
        if done.any():
            sk += done & (task == STAT_TASK)
            nk += done & (task == NORM_TASK)
            task[done] = IDLE
        if fin_go.any():  # the finish: its cycles, then mean and 1/sigma from the totals
            fl[fin_go & (fl == 0)] = fin_d
            fl -= fin_go
            fin = fin_go & (fl == 0)
            if fin.any():
                i = np.flatnonzero(fin[:, -1])
                k = fk[i, -1]
                tot = (fwd if chain else own)[i * C + C - 1, k]
                mu = tot[:, 0] * np.float32(1 / f)
                var = tot[:, 1] * np.float32(1 / f) - mu * mu
                mean[i, k], rstd[i, k] = mu, np.float32(1) / np.sqrt(var + np.float32(eps))
                fk += fin
        # -- apply: the chain east and the broadcast west --
        if chain:
            if do_c.any():
                idx = np.flatnonzero(do_c)
                k, s = hk.ravel()[idx], hn.ravel()[idx]
                west = np.where(has_west[idx], fwd[idx - 1, k, s], np.float32(0))
                fwd[idx, k, s] = own[idx, k, s] + west
                cc[:, 1:] -= do_c[:, 1:]
                co[:, :-1] += do_c[:, :-1]
                hn += do_c
                nxt = hn == STATS
                hk += nxt
                hn[nxt] = 0
            co[:, :-1] -= chm
            ci[:, 1:] += chm
            ci -= crm
            cc += crm
            bq += bsend
            bn += bsend
            nxt = bn == STATS
            bk += nxt
            bn[nxt] = 0
            bq -= bmv
            bc[:, :-1] += bmv[:, :-1]
            bq[:, :-1] += bmv[:, 1:]
            bc -= br
            bgot += br
        # -- apply: output --
        yo += osend
        yo -= ysink
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
    return cycle, busy, peak, mean, rstd
