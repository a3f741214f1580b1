"""The tile-level time of the mesh GEMM that layer-pipelined kernels use, and that the PE-level
simulator (runtime/pe_sim.py) executes wavelet by wavelet.

The algorithm: weight-stationary, row-broadcast, column-reduce. ``C[m, n] = A[m, k] @ W[k, n]`` on
an ``rows x cols`` rectangle. K is split over rows and N over columns in contiguous blocks whose
sizes differ by at most one (larger blocks first; ``blocks.py``), so core (i, j) holds the tile ``W[K_i, N_j]``
(``kt x nt`` at most). The rows of A (tokens) stream in one after another: ``A[m, K_i]`` enters at
the west edge of row i and is multicast east along the row, one element per wavelet. Each core
multiplies each arriving element into its ``nt`` partial sums (``ceil(nt / lanes)`` cycles per
element; the first element of a token also pays the task start). The partial sums of a token then
flow south down each column, one wavelet per cycle: core (i, j) adds each partial sum arriving
from the north to its own and forwards it; row ``rows - 1`` emits ``C[m, N_j]`` at the south edge.
Partial sums are double buffered, so the next token's FMACs overlap the reduce, but both use the
core's datapath. A GEMV is the case m = 1.

The time, as the PE-level simulator measures it (benchmarks/results/fidelity.md holds the check):

- ``step``, the cycles per token in steady state: the busiest core's datapath, i.e. the task start,
  ``kt`` FMACs of ``ceil(nt / lanes)`` cycles, and ``nt`` add-and-forwards of one cycle each. The
  streams are never the bound: a row's input stream carries ``kt`` wavelets per token and a
  column's partial-sum stream ``nt``, each at one wavelet per cycle.
- ``fill``, the latency of the first token beyond its step: the A stream reaching the last column
  (one hop per column, plus the injector, ramp and sink stages) and the partial sums descending
  the column, three cycles per row (hop, ramp to the core, add-and-forward onto the ramp). When N
  does not divide evenly, the narrower last columns finish a little earlier per token, which the
  fill accounts for.

Fix against the PE level (issue 4): the first model charged the add of the partial sums as one
SIMD pass (``ceil(nt / lanes)`` cycles) and the column descent as one hop per row; the partial sums
arrive one wavelet per cycle, so the add-and-forward costs ``nt`` datapath cycles per token, and
each row of the descent costs a hop, a ramp and the add (3 cycles), not ``ceil(nt / lanes)``.
On the 26 cases of benchmarks/fidelity.py the old model was off by 27% on average: up to 25% low
on GEMMs (the missing ``nt`` per token) and up to 233% high on GEMVs down deep columns with wide
tiles (the fill); the model below is within 1.5%.

``resident_a``: A is in the cores' SRAM from the start, as in WaferLLM's GEMV benchmark (x already
placed): no injector, no multicast, so the fill loses the A stream's hops and the step its bound.

**The tree reduce** (``reduce="tree"``; ``column_reduce.py`` has the plan): the two-level
centre-rooted tree of WaferLLM's MeshGEMV along each column. The rows are cut into
``round(sqrt(rows))`` groups; in each, the rows above the centre row send their partial sums south
to it in a chain and the rows below north; the centre row (the group root) adds both. The group
roots then do the same towards the centre group's root (the column root), their streams passing
through the routers between roots; the column root sends the column's sums south to the edge. A
core adds each incoming stream in one pass of ``nt`` cycles (``Costs.psum_add`` per wavelet),
the last fused with its send, so the column root, which receives four streams, takes four passes.
The time (``_tokens``):

- ``step``: the busiest core per token, ``task_start + kt * element_cycles(nt) +
  passes * nt`` (``core_instructions`` priced by ``costs.py``; the column root's four passes
  against the chain's one), or a stream bound: A into
  a core (``kt``) or the busiest link direction (``link_load * nt``: a phase-2 stream shares the
  links of the phase-1 chain it crosses). The chain is faster per token; the tree's gain is latency.
- the first token: its critical path through the plan. Each core is ready when its FMACs are done;
  each pass starts when the previous one is done and the first wavelet of its input is at the core,
  ``hops`` links (one cycle each, none at the routers passed through) plus the ramp and the add after
  its sender sent it; every stream then flows one wavelet per cycle. The column root's stream
  reaches the edge ``rows - root`` hops later.
- later tokens: the same walk token by token, with each core's datapath shared as on the PE level:
  the FMACs of a token start once the previous token's are done and the token two back has left
  (double buffering) and take the cycles the passes leave free (so tokens after the first can catch
  up with a column root that waited in the first), and a sender runs ahead of its receiver by at
  most the queues between them (``(hops + 2) * pe_queue_depth`` wavelets of the machine file). Once the walk is
  periodic the rest follow at the step; ``fill`` is the total less ``m * step`` (for a GEMV, the
  first token's latency less one step).
- uneven N with A streamed: a row's multicast moves only when all its cores have room, so the
  narrow columns east of the wide ones are held to the wide ones' pace.

Fit against the PE level (benchmarks/fidelity.py, tests/test_pe_sim.py): exact, to the cycle, on
every GEMV tried (1 x 1 to 724 x 724, resident A or streamed, f16 and f32, even and uneven splits;
the 16K x 16K GEMV of WaferLLM on 512 x 512 included). GEMMs: exact where the column root paces the
tokens; on 297 random shapes (meshes to 128 rows, up to 32 tokens) their mean error is 0.5% and
the tile level is optimistic where tiles are small (a few elements) and a few tokens overlap in a
deep tree, as the PE level's links give a phase-1 wavelet precedence over a phase-2 one and the next
token's phase-1 wave then holds up this token's phase-2 stream, which the walk does not model:
11 shapes beyond 5%, the worst -13% (64 rows, nt = 5, 4 tokens); -5% at 256 x 256, k = n = 2048,
4 tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import ceil

from .blocks import block, split
from .column_reduce import CHAIN, TREE, ColumnPlan, plan
from .costs import InstructionCount
from .datapath import Datapath, as_datapath
from .machine import WSE2, Machine

MAX_TOKENS = 64  # the tree's tile time follows at most this many tokens one by one, then extrapolates


@dataclass(frozen=True)
class GemmTime:
    step: int  # cycles per token in steady state
    fill: int  # extra cycles of the first token (latency through the rectangle)
    tokens: int

    @property
    def total(self) -> int:
        return self.fill + self.tokens * self.step


def element_instructions(nt: int, dp: Datapath, calls: int = 1) -> InstructionCount:
    """What a core issues to multiply ``calls`` arriving elements of A into ``nt`` partial sums: per
    element one f16/f32 AXPY of length ``nt`` (the @map-driven loop of WaferLLM's MeshGEMV/MeshGEMM:
    no software loop or scalar load per call), and with quantised weights the dequantise before it."""
    ic = InstructionCount().call("fmac", nt, calls)
    if dp.quant:
        ic.call("dequant", nt, calls)
    return ic


def element_cycles(nt: int, dp: Datapath) -> int:
    """Datapath cycles to multiply one arriving element of A into ``nt`` partial sums
    (``element_instructions`` priced by ``dp.costs``: the AXPY at the slowest of the lanes and the
    SRAM ports, ``datapath.py``, plus each vector instruction's issue, fitted)."""
    return int(element_instructions(nt, dp).cycles(dp))


def core_instructions(kt: int, nt: int, dp: Datapath, passes: int = 1) -> InstructionCount:
    """What a core holding a ``kt x nt`` tile issues per token: the task start, ``kt`` AXPYs of length
    ``nt``, and ``passes`` add-and-forwards of its ``nt`` partial sums (one per incoming stream)."""
    return element_instructions(nt, dp, kt).add("task").add("psum", passes * nt)


def _core_step(kt: int, nt: int, dp: Datapath) -> int:
    """Datapath cycles per token of a core holding a ``kt x nt`` tile (``core_instructions``, priced)."""
    return int(core_instructions(kt, nt, dp).cycles(dp))


def gemm_time(m: int, k: int, n: int, rows: int, cols: int, lanes: Datapath | float, *, reduce: str = CHAIN,
              resident_a: bool = False, machine: Machine = WSE2) -> GemmTime:
    """``lanes``: the core's datapath for the dtype (``Machine.datapath``), or a bare lane rate
    with f16 operands and accumulators. ``reduce``: ``"chain"`` or ``"tree"`` (``column_reduce``);
    ``resident_a``: A is in the cores' SRAM at the start (no injection, no row multicast);
    ``machine``: its fabric's hop, ramp and queue figures."""
    lanes = as_datapath(lanes)
    M = machine
    rows, cols = min(rows, k), min(cols, n)  # a rectangle wider than the matrix idles its extra cores
    if reduce != CHAIN:
        return _tree_time(m, k, n, rows, cols, lanes, plan(rows, reduce), resident_a, M)
    kt, nt = block(k, rows), block(n, cols)
    step = max(_core_step(kt, nt, lanes),
               0 if resident_a else ceil(kt / M.elements_per_wavelet),  # wavelets of A into each core per token
               ceil(nt / M.elements_per_wavelet))  # wavelets of partial sums per token per column
    # The last column is the latest to see A; if N splits unevenly its narrower tiles finish
    # earlier per token, and the last wide column (index n % cols - 1) may be the later one.
    # (The hops are cycles apart, M.hop_cycles each; the narrow tiles' gain is in cycles already.)
    wide = n % cols or cols
    gain = m * (step - _core_step(kt, n // cols, lanes)) if wide < cols else 0
    last = 0 if resident_a else max((wide - 1) * M.hop_cycles, (cols - 1) * M.hop_cycles - gain)
    edges = M.hop_cycles  # last router -> south edge
    if not resident_a:
        edges += M.hop_cycles + M.ramp_cycles  # injector -> first router -> core
    descent = (rows - 1) * (M.hop_cycles + M.ramp_cycles + lanes.costs.psum_add)
    fill = last + edges + descent
    return GemmTime(step=step, fill=fill, tokens=m)


def sparse_gemm_time(m: int, sw, rows: int, cols: int, lanes: Datapath | float, *, tail: int = 0, head: int = 0,
                     tail_cycles: int = 0, resident_a: bool = False, machine: Machine = WSE2) -> GemmTime:
    """The chain GEMM with a sparse weight ``sw`` (``sparse.SparseWeight``; ``k x n``, plus ``tail``
    epilogue rows of ``tail_cycles`` each and ``head`` statistics columns, as ``kernels/matmul.py``
    adds them): each core's step is its own tile's (``SparseWeight.tile``), the slowest paces the
    rectangle; the streams bound it as in the dense GEMM.

    The total is the latest, over the cores, of the path through the core: A reaching its column
    (``j`` hops), its ``m`` tokens at its own step, and its last token's sums descending the
    ``rows - 1 - i`` rows below (3 cycles each), plus the edges' stages (``SparseWeight.latest``;
    in distribution, its expected value). The cores are held to the slowest one's pace by the row
    multicast and the chain, but the slowest core's own path is the critical one, as the PE level
    shows (``benchmarks/fidelity.py``): a faster core east of it gets its row's last elements
    only once the slowest has room for them, and then finishes sooner. For dense tiles the path
    is the dense fill's (the core at row 0 of the last wide column). Fix against the PE level: the
    first model took the dense fill, as if the slowest core were at row 0 of the last column; on
    GEMVs down 64 rows at density 0.03 that was up to 5% high. The path below is exact, to the
    cycle, on all but a few of the shapes tried, and within 2 cycles on those (the PE level's
    row multicast lets a core east of the slowest finish a little after it); where N does not
    divide, the PE layout's column order differs from the kernel's (``fidelity_sparse.py``)."""
    lanes, M = as_datapath(lanes), machine
    k, n = sw.k + tail, sw.n + head
    rows, cols = min(rows, k), min(cols, n)
    core = sw.tile(rows, cols, lanes, tail, head, tail_cycles)
    step = max(core, 0 if resident_a else ceil(block(k, rows) / M.elements_per_wavelet),
               ceil(block(n, cols) / M.elements_per_wavelet))
    col_lag = 0 if resident_a else M.hop_cycles
    row_lag = M.hop_cycles + M.ramp_cycles + lanes.costs.psum_add
    edges = M.hop_cycles + (0 if resident_a else M.hop_cycles + M.ramp_cycles)
    args = (m, rows, cols, lanes)
    extra = (sw.latest(*args, col_lag, row_lag, tail, head, tail_cycles) - sw.latest(*args, 0, 0, tail, head,
                                                                                     tail_cycles))
    longest = (cols - 1) * col_lag + (rows - 1) * row_lag  # the dense fill's path; none is shorter than 0
    return GemmTime(step=step, fill=edges + min(max(round(extra), 0), longest), tokens=m)


@lru_cache(maxsize=4096)
def fastest(m: int, k: int, n: int, rows: int, cols: int, dp: Datapath, resident_a: bool = False,
            machine: Machine = WSE2) -> tuple[str, GemmTime]:
    """The kernel choice lowering makes: the column reduce (``REDUCES``) whose total for ``m``
    tokens is the least, and its time. The tree is walked only when it could win: its root's
    passes alone take ``m`` times its period, and when that is no less than the chain's total (many
    tokens: the tree's root adds four streams per token, a chain's core one) it cannot."""
    best = (CHAIN, gemm_time(m, k, n, rows, cols, dp, resident_a=resident_a, machine=machine))
    r, c = min(rows, k), min(cols, n)
    kt, nt = block(k, r), block(n, c)
    root = plan(r, TREE).passes(plan(r, TREE).top) if r > 1 else 1
    if r > 1 and m * (dp.costs.task_start + kt * element_cycles(nt, dp) + root * nt) < best[1].total:
        tree = gemm_time(m, k, n, rows, cols, dp, reduce=TREE, resident_a=resident_a, machine=machine)
        if tree.total < best[1].total:
            best = (TREE, tree)
    return best


def _tree_time(m: int, k: int, n: int, rows: int, cols: int, dp: Datapath, p: ColumnPlan,
               resident: bool, M: Machine) -> GemmTime:
    """The time with the reduce ``p`` (``column_reduce``): token by token through the plan
    (``_tokens``), for the latest of the wide and of the narrow columns (the other columns of
    either width are earlier: they see A sooner)."""
    ks, ns = split(k, rows), split(n, cols)
    wide = n % cols or cols  # columns 0 .. wide - 1 hold the wider tiles
    step, total, wide_done, wide_el = 0, 0, None, 0
    for j, nt in sorted({(wide - 1, ns[0]), (cols - 1, ns[-1])}):  # the latest wide column, then the latest narrow
        el = element_cycles(nt, dp)
        fmacs = [dp.costs.task_start + kt * el for kt in ks]
        period = max(max(f + p.passes(r) * nt * dp.costs.psum_add for r, f in enumerate(fmacs)),
                     0 if resident else ceil(ks[0] / M.elements_per_wavelet),  # A into each core per token
                     p.link_load * ceil(nt / M.elements_per_wavelet))  # the busiest link direction
        feed = 0 if resident else M.hop_cycles + M.ramp_cycles + j * M.hop_cycles  # injector -> core (i, j)
        floor = None
        if wide_done is not None and not resident:
            # A row's multicast moves only when every core of the row has room, so a narrow core east of
            # the wide ones gets its token's last element once the last wide core has room for it:
            # ``depth`` elements before that core is done, then ``j - (wide - 1)`` hops and a ramp.
            lag = (j - wide + 1) * M.hop_cycles + M.ramp_cycles + el - M.pe_queue_depth * wide_el
            floor = lambda r, t, done=wide_done, lag=lag: done(r, t) + lag
        t_total, done = _tokens(p, fmacs, nt, m, period, feed, None if resident else ks, floor, M, dp.costs.psum_add)
        wide_done, wide_el = done, el
        step, total = max(step, period), max(total, t_total)
    return GemmTime(step=step, fill=total - m * step, tokens=m)


def _tokens(p: ColumnPlan, fmacs: list[int], nt: int, m: int, period: int, feed: int, stream: list[int] | None,
            floor=None, M: Machine = WSE2, psum: int = 1) -> tuple[int, object]:
    """Cycles until the south edge has all ``m`` tokens' sums of a column whose core at row r
    takes ``fmacs[r]`` datapath cycles per token to FMAC, its first A element at hand at ``feed``
    (``stream``: the row's A arrives one element per cycle, ``stream[r]`` per token; ``floor(r, t)``:
    the earliest the FMACs of token t can be done, if the row's multicast holds them back). Returns
    the cycles and ``done(r, t)``, when the FMACs of token t of row r are done.

    Token by token, core by core (senders first), as the PE level runs it:
    - a core's passes of ``nt`` cycles run one after the other; a pass with an input starts no
      earlier than the input's first wavelet is at the core (``hops`` links after its sender sent
      it, plus the ramp down and the add); the first also waits for the token's FMACs and for the
      previous token's passes. Every stream then keeps up, one wavelet per cycle.
    - the FMACs of a token start when the previous token's are done and the token two back has
      left (double buffering), and take the datapath cycles the passes leave free.
    - a sender can run ahead of its receiver by the queues between them, ``(hops + 2) * depth``
      wavelets; beyond that its last pass waits for credit (``hops + 1`` cycles back).
    Once every core's times advance by the same amount for two tokens running, or the column
    root's by the step for three, the rest follow at that period (after ``MAX_TOKENS`` at the
    latest)."""
    R, D, PS = p.rows, M.pe_queue_depth, psum
    order, run = p.order, nt * PS
    recv = {}  # sender row -> (receiver row, index of the receiving pass)
    for r in range(R):
        for i, kind in enumerate(p.ins[r]):
            recv[p.src[r][kind]] = (r, i)
    done = [[0, 0] for _ in range(R)]  # FMACs done, tokens t - 1 and t
    left = [[0, 0] for _ in range(R)]  # last pass done (the token has left), tokens t - 1 and t
    busy = [[] for _ in range(R)]  # the pass intervals of the previous token
    out, deltas, dones = [], [], []  # per token: when the column root's last wavelet has left; per-core
    # advances; FMACs done
    pace = period
    for t in range(m):
        starts = [[] for _ in range(R)]
        for r in order:
            start = feed if t == 0 else max(done[r][1], left[r][0] if t >= 2 else 0)
            if stream is not None:
                start = max(start, feed + t * stream[r])
            work = fmacs[r]
            for a, b in busy[r]:  # the previous token's passes go first
                if b <= start:
                    continue
                if a >= start + work:
                    break
                work -= max(0, a - start)
                start = b
            fm = start + work if floor is None else max(start + work, floor(r, t))
            at = max(fm, left[r][1]) if t else fm
            for kind in p.ins[r]:
                s = p.src[r][kind]
                at = max(at, starts[s][-1] + p.hops(r, kind) * M.hop_cycles + M.ramp_cycles + PS)
                starts[r].append(at)
                at += run
            if not p.ins[r]:
                starts[r].append(at)
                at += run
            done[r] = [done[r][1], fm]
            left[r] = [left[r][1], at]
        for s, (r, i) in recv.items():  # back-pressure: the sender's last pass waits for credit
            hops = p.hops(r, p.ins[r][i])
            left[s][1] = max(left[s][1], starts[r][i] + run - (hops + 2) * D + hops + 1)
        for r in range(R):
            busy[r] = [(a, a + run) for a in starts[r]]
        out.append(left[p.top][1])
        dones.append([d[1] for d in done])
        deltas.append(tuple(done[r][1] - done[r][0] for r in range(R)) +
                      tuple(left[r][1] - left[r][0] for r in range(R)))
        periodic = t >= 3 and deltas[-1] == deltas[-2] and len(set(deltas[-1])) == 1
        paced = t >= 3 and out[-1] - out[-2] == out[-2] - out[-3] == out[-3] - out[-4] == period
        if periodic or paced or t >= MAX_TOKENS:  # the rest follow at that period
            pace = max(out[-1] - out[-2], period)
            out.append(out[-1] + (m - 1 - t) * pace)
            break
    last = len(dones) - 1
    done_at = lambda r, t: dones[t][r] if t <= last else dones[last][r] + (t - last) * pace
    return out[-1] + p.edge_hops * M.hop_cycles, done_at
