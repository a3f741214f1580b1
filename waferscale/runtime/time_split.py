"""Where a run's time goes: its cycles split into compute, fabric, fill and wait along the chain of
kernels that set its end (a decode step at small batch is such a chain).

Walking back from the kernel that finished last: each kernel on the chain adds its busy cycles
(**compute**: its FMACs and datapath work, from its cost model) and, where its output was what the
next one waited for, its rectangle's **fill** (the first token's latency through it: the row
broadcast's and the column reduce's hops and adds). What then set its start is either an input (the
gap from that producer's output being ready to this kernel's start is **fabric**: the flow's
wavelets and hops between the rectangles) or its turn on cores it shares with an earlier kernel
(the gap from that kernel's end is **wait**). The chain's first kernel waited for the graph's input
(**fabric**, over the system I/O). The four parts add up to the run's cycles, to the rounding of
each kernel's span: where a kernel started on its input's first elements before its producer had
finished (element streaming, pipelined chunks), the cycles they overlap are counted once, as the
producer's compute (they once were counted in both: llama-3.1-70b's split on four WSE-3s added up to
7% more than its step).
"""

from __future__ import annotations

from ..backends.program import Placement, Program
from .tile_sim import SimResult, sharing

PARTS = ("compute", "fabric", "fill", "wait")


def time_split(prog: Program, placement: Placement, sim: SimResult) -> dict[str, float]:
    """Cycles of the run's first item (sample 0, chunk 0) by part, along the chain that set its end."""
    m = placement.machine
    span = {k: (a, b) for k, s, c, a, b in sim.spans if s == 0 and c == 0}
    fill = {k: n.model.fill(r.rows, r.cols, m) for k, (n, r) in enumerate(zip(prog.kernels, placement.rects))}
    into: dict[int, set[int]] = {k: set() for k in span}
    for f in prog.flows:
        if f.src >= 0:
            into[f.dst].add(f.src)
    share = sharing(placement)
    out = dict.fromkeys(PARTS, 0.0)
    k = max(span, key=lambda i: (span[i][1] + fill[i], -i))
    out["fill"] += fill[k]
    while True:
        start, finish = span[k]
        cands = [(span[p][1] + fill[p], "fabric", p) for p in into[k]]
        cands += [(span[j][1], "wait", j) for j in share[k] if j < k]
        if not cands:
            out["compute"] += finish - start
            out["fabric"] += start
            break
        t, part, p = max(cands, key=lambda c: (c[0], c[1] == "fabric", -c[2]))
        done = span[p][1]  # the walk goes on from the end of p's own busy span
        # k's busy cycles before p was done were p's time too (element streaming): counted once, as p's
        out["compute"] += finish - max(start, min(done, finish))
        if part == "fabric":  # a start on the input's first elements, before all was ready, overlaps its fill
            out["fill"] += min(max(start - done, 0), fill[p])
        out[part] += max(start - t, 0)
        k = p
    return out
