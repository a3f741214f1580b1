"""The time of a weight-streamed program: each group (a layer) runs on the whole wafer in turn,
its weights streamed in first.

Each group is simulated at tile level on its own (``tile_sim.py``: its kernels on their
rectangles, the batch flowing through them; its inputs already in SRAM), groups of the same
shape once. The groups' weights come over the one system I/O link, one after another, at its
rate (``io_bytes_per_s``), into ``WEIGHT_BUFFERS`` buffers: a group's stream starts when the link
is free and a buffer is (the group that last used it has finished); the group runs when its
weights have arrived and the previous group has finished. So with two buffers a layer's weights
arrive while the layer before computes, and a layer is stream-bound when its weights take longer
to arrive than its compute takes.

Training: a group's weight gradients (``Group.grad_bytes``) stream out to MemoryX over the same
link's other direction (``assumptions.IO_FULL_DUPLEX``) once the group has run, one group's after
another; the run ends when the last gradient is out. ``stream_latency`` cycles are added to every
stream in and out: on a cluster, the levels of SwarmX's tree they cross (``runtime/train_time.py``).
"""

from __future__ import annotations

from dataclasses import replace
from math import ceil

from ..backends import assumptions as A
from ..backends.program import Placement, Program, Routing, flows_into, signature, sub_program
from .tile_sim import GroupTime, KernelTime, SimResult, simulate


def _sub(prog: Program, placement: Placement, routing: Routing, kernels: tuple[int, ...], band_rows: int):
    sub = sub_program(prog, kernels)
    flows = flows_into(prog, kernels)
    by_flow = {r.flow: r for r in routing.routes}
    routes = tuple(replace(by_flow[j], flow=i) for i, j in enumerate(flows))
    sub_pl = Placement(placement.machine, "pipelined", tuple(placement.rects[k] for k in kernels), band_rows,
                       tuple(placement.stage_cycles[k] for k in kernels))
    return sub, sub_pl, Routing(routes, {}, {})


def simulate_streaming(prog: Program, placement: Placement, routing: Routing, chunk: int = A.CHUNK_TOKENS,
                       progress=None, stream_latency: int = 0) -> SimResult:
    m = placement.machine
    io_per_cycle = m.io_bytes_per_s / m.clock_hz
    cache: dict[tuple, SimResult] = {}
    times: list[KernelTime] = [KernelTime() for _ in prog.kernels]
    spans, groups = [], []
    link_free = out_free = 0.0
    ends: list[int] = []
    for gi, g in enumerate(placement.groups):
        sub, sub_pl, sub_rt = _sub(prog, placement, routing, g.kernels, g.band_rows)
        key = (signature(sub), sub_pl.rects)
        if key not in cache:
            cache[key] = simulate(sub, sub_pl, sub_rt, chunk=chunk)
        r = cache[key]
        buffer_free = ends[gi - A.WEIGHT_BUFFERS] if gi >= A.WEIGHT_BUFFERS else 0
        s0 = max(link_free, buffer_free)
        s1 = ceil(s0 + g.weight_bytes / io_per_cycle) + (stream_latency if g.weight_bytes else 0)
        link_free = s1
        start = max(s1, ends[-1] if ends else 0)
        ends.append(start + r.cycles)
        out_end = 0
        if g.grad_bytes:  # its gradients leave once it has run, behind earlier groups' on the outward link
            out_free = out_end = ceil(max(out_free, ends[-1]) + g.grad_bytes / io_per_cycle) + stream_latency
        groups.append(GroupTime(g.name, g.weight_bytes, int(s0), s1, start, start + r.cycles, g.grad_bytes, out_end,
                                g.grad_params))
        for i, k in enumerate(g.kernels):
            t, u = times[k], r.kernels[i]
            t.busy, t.roofline, t.executed_flops = u.busy, u.roofline, u.executed_flops
            t.bounds.update(u.bounds)
        spans += [(g.kernels[k], sample, c, start + t0, start + t1) for k, sample, c, t0, t1 in r.spans]
        if progress:
            progress(gi + 1, len(placement.groups))
    executed = sum(t.executed_flops for t in times)
    roofline = {
        "compute": executed / (2 * m.fmacs_per_cycle * m.cores),
        # a group takes at least its slowest rectangle's roofline, and the groups run one after another
        "kernel": sum(max(times[k].roofline for k in g.kernels) for g in placement.groups),
        "stream": max(sum(g.weight_bytes for g in placement.groups),  # every weight over the one link, each
                      sum(g.grad_bytes for g in placement.groups)) / io_per_cycle,  # gradient the other way
    }
    total = max(ends[-1] if ends else 0, int(out_free))  # every sample leaves with the last layer (and gradient)
    return SimResult(chunk=min(chunk, prog.tokens), cycles=total, kernels=times, roofline=roofline, spans=spans,
                     groups=groups, latency=total)
