"""The tile-level runtime: a discrete-event simulation of a placed, routed program.

Samples flow through the pipeline in chunks of ``chunk`` tokens (``simulate{chunk=N}``; the
default is ``CHUNK_TOKENS`` of ``backends/assumptions.py``). A kernel works on one chunk at a
time, in order; it is busy for the chunk's cycles on its rectangle (``backends/kernels``) and its
output leaves after the rectangle's fill latency. Each flow then moves the chunk over its route:
a transfer takes the chunk's wavelets divided by the bundle's lanes at one wavelet per link per
cycle, plus one hop latency per link and the router delay. A link that several flows share
carries their wavelets one after another (each flow's wavelets are added to the link's backlog
when it is booked, first come, first served), so a chunk finishes crossing it no earlier than
the link has carried everything booked on it before. Graph
inputs stream in over the system I/O; values already in SRAM (weight streaming's layer inputs)
arrive at once. Pipeline fill and drain fall out of the event order.

**Chunks are cut through, not stored and forwarded.** Tokens stream through a kernel one after
another, so within a chunk a kernel emits its tokens at its own pace (the chunk's cycles over its
tokens) and the next kernel may start a chunk when the first token of it has arrived on every
input. It then finishes the chunk no earlier than its own busy cycles after it started, and no
earlier than one token's cycles after the last token of the chunk arrived. So the chunk is only
the granularity of the events, not a unit the hardware waits for: a pipeline of S stages takes
about S first-token latencies plus the tokens at the slowest stage's pace, whatever the chunk
(``tests/test_wafer.py`` holds totals at chunk 64 and 8 within 2%). A store-and-forward model
would make every stage wait for a whole chunk and the pipeline latency S chunks long.

**Within a token, elements stream** (a chunk of one token: decode, ``simulate{chunk=1}``). A kernel
that emits its outputs element by element (a mesh GEMM: each column's last row sends its ``nt``
outputs one per cycle, ``Kernel.emit``) has its first wavelets out ``emit`` cycles before its
token is all out, and its consumer may start on them; a consumer that works element by element as
they arrive (``Kernel.stream_tail``: a GEMM's FMACs) finishes no earlier than its own busy cycles
after it started, and no earlier than the work left after its last element arrives (its tail).
Checked against the PE level on chains of GEMVs (``runtime/pe_chain.py``,
``tests/test_streaming_chain.py``: within 2.1%; the token-level rule before it was 4% to 5.5% slow).
Chunks of several tokens keep the token as the unit.

**Kernels that share cores** (a latency placement, ``passes/latency.py``: rectangles reused by
kernels that never run at the same time) run one after another on them, item by item in program
order: kernel k's item i starts only once every earlier kernel sharing its cores has finished item
i, and every later one item i - 1 (the cores hold one kernel's task at a time), and it starts no
earlier than the router's colors are handed over to it (``switching.py``: a control wavelet per
color, or a route rewrite where more kernels share the cores than a switch has positions).
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from math import ceil

from ..backends import assumptions as A
from ..backends.program import IO, RESIDENT, Placement, Program, Routing
from ..errors import UnsupportedError
from .switching import handover_cycles


@dataclass
class KernelTime:
    busy: int = 0  # cycles, all samples
    roofline: float = 0.0  # sum of its chunks' rooflines
    executed_flops: float = 0.0
    bounds: Counter = field(default_factory=Counter)

    @property
    def bound(self) -> str:
        return self.bounds.most_common(1)[0][0] if self.bounds else "none"


@dataclass(frozen=True)
class GroupTime:
    """One group of a weight-streamed program (a layer): when its weights streamed in, when it ran."""

    name: str
    weight_bytes: int
    stream_start: int
    stream_end: int
    start: int
    end: int
    grad_bytes: int = 0  # training: weight gradients streamed out after it ran
    grad_end: int = 0  # when the last of them was out
    grad_params: int = 0  # the parameters they are of (MemoryX updates these)

    @property
    def compute(self) -> int:
        return self.end - self.start

    @property
    def stream(self) -> int:
        return self.stream_end - self.stream_start

    @property
    def bound(self) -> str:
        """What sets the layer's pace with double buffering: its compute or its weights' stream."""
        return "stream" if self.stream > self.compute else "compute"


@dataclass
class SimResult:
    chunk: int  # tokens per simulated chunk
    cycles: int
    kernels: list[KernelTime]
    roofline: dict[str, float]  # program bounds in cycles: compute, kernel (slowest rectangle), stream
    spans: list[tuple[int, int, int, int, int]]  # (kernel, sample, chunk, start, end)
    groups: list[GroupTime] = field(default_factory=list)  # weight streaming: each layer's stream and run
    latency: int = 0  # cycles from the first token in to the last token of the first sample out

    @property
    def roofline_cycles(self) -> float:
        return max(self.roofline.values())


def chunks(tokens: int, chunk: int = A.CHUNK_TOKENS) -> list[tuple[int, int]]:
    step = min(chunk, tokens)
    return [(p, min(p + step, tokens)) for p in range(0, tokens, step)]


def sharing(placement: Placement) -> list[list[int]]:
    """Per kernel, the kernels whose rectangles share a core with it (none but in a latency placement)."""
    rects = placement.rects
    out: list[list[int]] = [[] for _ in rects]
    if placement.mode != "latency":
        return out
    order = sorted(range(len(rects)), key=lambda i: (rects[i].col, rects[i].row))
    for a_i, a in enumerate(order):  # sweep by column: only rectangles whose columns meet can overlap
        for b in order[a_i + 1:]:
            if rects[b].col >= rects[a].col + rects[a].cols:
                break
            if rects[a].overlaps(rects[b]):
                out[a].append(b)
                out[b].append(a)
    return [sorted(x) for x in out]


def simulate(prog: Program, placement: Placement, routing: Routing, chunk: int = A.CHUNK_TOKENS,
             progress=None, then: tuple = ()) -> SimResult:
    """``then``: more (program, chunk) pairs of the same kernels and flows (the same graph lowered for
    other samples, tokens or positions, ``lower``) whose items follow ``prog``'s through the pipeline
    in the same run: a ragged step, such as serving's decode tokens of a batch and a prompt chunk
    sharing one step (``serve/wafer.py``). Each item costs what its own program's kernels say."""
    if A.COUNT_OUTPUT_IO:
        raise UnsupportedError("counting the outputs' transfer off the wafer (backends/assumptions.py "
                               "COUNT_OUTPUT_IO); the simulation assumes they are consumed at the wafer edge")
    m = placement.machine
    segs = [(prog, chunk), *then]
    for q, _ in segs[1:]:
        if [k.name for k in q.kernels] != [k.name for k in prog.kernels] or \
                [(f.src, f.dst) for f in q.flows] != [(f.src, f.dst) for f in prog.flows]:
            raise AssertionError("simulate(then=...): the programs must have the same kernels and flows")
    parts = chunks(prog.tokens, chunk)
    # items in order: every sample's chunks of each program; per item, its program and chunk
    seg_of, part_of, span_of = [], [], []
    for s, (q, c) in enumerate(segs):
        base = sum(x.samples for x, _ in segs[:s])
        qp = chunks(q.tokens, c)
        for i in range(q.samples * len(qp)):
            seg_of.append(s)
            part_of.append(qp[i % len(qp)])
            span_of.append((base + i // len(qp), i % len(qp)))
    n_items = len(seg_of)
    nk = len(prog.kernels)
    # busy cycles, bound and roofline of every chunk, the same for every sample of a program
    costs = [[{pp: k.model.chunk(r.rows, r.cols, *pp, m) for pp in chunks(q.tokens, c)}
              for k, r in zip(q.kernels, placement.rects)] for q, c in segs]
    times = [KernelTime() for _ in range(nk)]
    fills_s = [[k.model.fill(r.rows, r.cols, m) for k, r in zip(q.kernels, placement.rects)] for q, _ in segs]
    emits_s = [[k.model.emit(r.rows, r.cols) for k, r in zip(q.kernels, placement.rects)] for q, _ in segs]
    tails_s = [[k.model.stream_tail(r.rows, r.cols, m) for k, r in zip(q.kernels, placement.rects)] for q, _ in segs]

    incoming = [[] for _ in range(nk)]
    outgoing = [[] for _ in range(nk)]
    for r in routing.routes:
        f = prog.flows[r.flow]
        (outgoing[f.src] if f.src >= 0 else []).append(r)
        incoming[f.dst].append(r)
    # a kernel streams on its input elements when every producer emits elements (not graph inputs)
    streamed = [[bool(incoming[k]) and all(q.flows[r.flow].src >= 0 and e[q.flows[r.flow].src] > 0
                                           for r in incoming[k]) for k in range(nk)]
                for (q, _), e in zip(segs, emits_s)]
    use = Counter(link for r in routing.routes for link in r.links)
    shared = {r.flow: tuple(link for link in r.links if use[link] > 1) for r in routing.routes}
    link_free: dict = {}
    share = sharing(placement)
    handover = handover_cycles(prog, placement, share)  # the router's colors handed over between turns
    turn_at = [[0.0] * n_items for _ in range(nk)]  # when the turn before it on shared cores has handed over
    pending = [[len(incoming[k]) + sum(j < k for j in share[k]) + (item > 0) * sum(j > k for j in share[k])
                for item in range(n_items)] for k in range(nk)]
    last_in = [[0.0] * n_items for _ in range(nk)]  # when the last token of each chunk has arrived
    next_item = [0] * nk
    free_at = [0.0] * nk
    running = [False] * nk
    spans = []
    heap: list = []
    seq = 0
    end = 0.0
    first_sample_end = 0.0

    def push(t, kind, k, item):
        nonlocal seq
        heapq.heappush(heap, (t, seq, kind, k, item))
        seq += 1

    def arrive(k, item, first, last):
        last_in[k][item] = max(last_in[k][item], last)
        push(first, "arrive", k, item)

    def transfer(r, first_ready, last_ready, item) -> tuple[float, float]:
        """Book flow r's chunk, whose first token is ready at ``first_ready`` and last at
        ``last_ready``; returns when its first and last tokens arrive."""
        f = segs[seg_of[item]][0].flows[r.flow]
        p0, p1 = part_of[item]
        wavelets = ceil(f.elements_per_token * (p1 - p0) / m.elements_per_wavelet / r.lanes)
        per_token = wavelets / (p1 - p0)
        # within a token; a chunk of tokens streams token by token
        emit = emits_s[seg_of[item]][f.src] if p1 - p0 == 1 else 0
        # element streaming: the first token's outputs leave over the producer's last ``emit`` cycles, and
        # the consumer has its first wavelet one cycle after the first leaves; else the token is the unit
        first_out = first_ready - min(emit, first_ready)
        first = first_out + (1 if emit else per_token)
        # the chunk streams out as the producer makes it, never ahead of it, at one wavelet per cycle
        finish = max(first_out + wavelets, last_ready + (0 if emit else per_token))
        for link in shared[r.flow]:  # a shared link carries its flows' wavelets one after another
            link_free[link] = max(link_free.get(link, 0), first_out) + wavelets
            finish = max(finish, link_free[link])
        latency = r.hops * m.hop_cycles + m.router_delay_cycles
        return first + latency, finish + latency

    # graph inputs stream in over the system I/O, one chunk after another
    io_bytes_per_cycle = m.io_bytes_per_s / m.clock_hz
    io_t = 0.0
    for item in range(n_items):
        p0, p1 = part_of[item]
        for k in range(nk):
            for r in incoming[k]:
                f = segs[seg_of[item]][0].flows[r.flow]
                latency = r.hops * m.hop_cycles + m.router_delay_cycles
                if f.src == IO:
                    first = io_t + f.bytes_per_token / io_bytes_per_cycle
                    io_t += f.bytes_per_token * (p1 - p0) / io_bytes_per_cycle
                    arrive(k, item, first + latency, io_t + latency)
                elif f.src == RESIDENT:  # already in SRAM (weight streaming: an earlier layer's output)
                    arrive(k, item, latency, latency)
    stream_cycles = io_t

    def try_start(k, now):
        """Start kernel k's next chunk if it is free and the chunk's first tokens have arrived;
        its outputs are booked at once, as their times are known."""
        nonlocal end, first_sample_end
        item = next_item[k]
        if running[k] or item >= n_items or pending[k][item] > 0:
            return
        sg = seg_of[item]
        p0, p1 = part_of[item]
        c = costs[sg][k][p0, p1]
        cyc = c.cycles
        per_token = cyc / (p1 - p0)
        start = max(now, free_at[k], turn_at[k][item])
        # its last token's work after the last input arrived: what is left once its last element is in
        # (element streaming), or the whole token
        tail = tails_s[sg][k]
        tail = per_token if tail is None or not streamed[sg][k] or p1 - p0 > 1 else min(tail, per_token)
        finish = max(start + cyc, last_in[k][item] + tail)
        running[k] = True
        t = times[k]
        t.busy += cyc
        t.roofline += c.roofline
        t.executed_flops += c.flops
        t.bounds[c.bound] += 1
        spans.append((k, *span_of[item], int(start), ceil(finish)))
        ready = finish + fills_s[sg][k]
        end = max(end, ready)
        if item < len(parts):
            first_sample_end = max(first_sample_end, ready)
        for r in outgoing[k]:
            arrive(prog.flows[r.flow].dst, item, *transfer(r, start + per_token + fills_s[sg][k], ready, item))
        push(finish, "done", k, item)

    for k in range(nk):
        try_start(k, 0)
    done = 0
    while heap:
        t, _, kind, k, item = heapq.heappop(heap)
        if kind == "arrive":
            pending[k][item] -= 1
            try_start(k, t)
            continue
        running[k], free_at[k], next_item[k] = False, t, item + 1
        try_start(k, t)
        for j in share[k]:  # the next kernel on these cores may start
            nxt = item if j > k else item + 1
            if nxt < n_items:
                turn_at[j][nxt] = max(turn_at[j][nxt], t + handover[j])
                pending[j][nxt] -= 1
                try_start(j, t)
        done += 1
        if progress and done % 4096 == 0:
            progress(done, nk * n_items)
    executed = sum(t.executed_flops for t in times)
    roofline = {
        "compute": executed / (2 * m.fmacs_per_cycle * m.cores),
        "kernel": max(t.roofline for t in times),
        "stream": stream_cycles,
    }
    return SimResult(chunk=min(chunk, prog.tokens), cycles=ceil(end), kernels=times, roofline=roofline, spans=spans,
                     latency=ceil(first_sample_end))
