"""Weight-streaming placement: a layer at a time on the whole wafer.

The kernels are grouped by the transformer block they belong to (their module path up to
``.h.N``, as GPT-2 names its blocks, or ``.layers.N``, as Llama, GPT-NeoX, OPT and Phi do); the
kernels before the first block and after the last form groups of their own (``embeddings``,
``head``), and a model with no blocks is one group, named after it. Each group in turn has the
whole mesh: its kernels are placed as in layer-pipelined mode (``place.py``), but on all the
cores, and the batch flows through them. Its weights stream in from MemoryX over the system I/O
into one of ``WEIGHT_BUFFERS`` buffers, so the next group's weights arrive while this one
computes (``runtime/stream_sim.py`` times it).

What stays in SRAM besides a group's own kernels, on every core (``backends/assumptions.py``):
the prefetch buffer of the next group's weights, and the batch's activations that cross from one
group to the next (the residual stream), held twice while a group reads one copy and writes the
other, both spread evenly over the mesh. The batch's activations grow with the batch; when they
leave the kernels too little room, the error gives the largest batch that fits.

Groups of the same shape (every block of a GPT) are placed once.
"""

from __future__ import annotations

import re
from dataclasses import replace
from math import ceil

from ..backends import assumptions as A
from ..backends.machine import Machine
from ..backends.program import Group, Placement, Program, Rect, signature, sub_program
from ..errors import FitError, WaferError

_BLOCK = re.compile(r"^(.*?\b(?:h|layers)\.\d+)(?:[./]|$)")


def groups_of(prog: Program) -> list[tuple[str, tuple[int, ...]]]:
    """(name, kernel ids) of each group, in program order (module docstring)."""
    keys = []
    for k in prog.kernels:
        m = _BLOCK.match(prog.graph.loc(k.op.result) or "")
        keys.append(m.group(1) if m else None)
    runs: list[tuple[str | None, list[int]]] = []
    for k, key in zip(prog.kernels, keys):
        if runs and runs[-1][0] == key:
            runs[-1][1].append(k.id)
        else:
            runs.append((key, [k.id]))
    if len(runs) == 1:  # no transformer blocks: the whole model is one group
        return [(runs[0][0] or prog.graph.name, tuple(runs[0][1]))]
    out = []
    for i, (key, ids) in enumerate(runs):
        name = key or ("embeddings" if i == 0 else "head" if i == len(runs) - 1 else f"between {runs[i - 1][0]}")
        out.append((name, tuple(ids)))
    return out


def resident_bytes_per_token(prog: Program, groups: list[tuple[str, tuple[int, ...]]]) -> float:
    """The most bytes per token that cross one boundary between consecutive groups (each value once)."""
    group_of = {k: i for i, (_, ks) in enumerate(groups) for k in ks}
    most = 0.0
    for b in range(len(groups) - 1):
        crossing = {(f.src, f.value): f.bytes_per_token for f in prog.flows
                    if f.src >= 0 and group_of[f.src] <= b < group_of[f.dst]}
        most = max(most, sum(crossing.values()))
    return most


def place_streaming(prog: Program, machine: Machine, place_group, log=lambda msg: None) -> Placement:
    """``place_group(sub_program, machine, what=...)`` places one group (the pipelined algorithm)."""
    if prog.weight_bytes > machine.memoryx_bytes:
        raise FitError(f"{prog.graph.name}'s weights ({prog.weight_bytes / 1e12:.2f} TB) do not fit in "
                       f"{machine.name}'s MemoryX ({machine.memoryx_bytes / 1e12:.1f} TB, its smallest configuration)")
    groups = groups_of(prog)
    subs = [sub_program(prog, ks) for _, ks in groups]
    weights = [sum(prog.kernels[k].weight_bytes for k in ks) for _, ks in groups]
    per_token = resident_bytes_per_token(prog, groups)

    def reserve(samples: int) -> tuple[int, int]:
        """(prefetch, resident activations) bytes per core at this batch."""
        prefetch = ceil((A.WEIGHT_BUFFERS - 1) * max(weights) / machine.cores)
        resident = ceil(A.RESIDENT_ACTIVATION_COPIES * samples * prog.tokens * per_token / machine.cores)
        return prefetch, resident

    cache: dict[tuple, Placement] = {}

    def place_all(samples: int) -> list[Placement] | WaferError:
        prefetch, resident = reserve(samples)
        left = machine.sram_bytes - prefetch - resident
        if left - A.RESERVED_SRAM_BYTES <= 0:
            return WaferError(f"no SRAM left for the kernels (of {machine.sram_bytes:,} B per core, the next layer's "
                              f"weights take {prefetch:,} B and the batch's activations {resident:,} B)")
        small = replace(machine, sram_bytes=left)
        out = []
        for (name, _), sub in zip(groups, subs):
            key = (signature(sub), left)
            if key not in cache:
                try:
                    cache[key] = place_group(sub, small, what=f"its layer {name}, alone on the mesh with "
                                             f"{small.usable_sram_bytes:,} B of SRAM per core left for its kernels, "
                                             "does not fit")
                except WaferError as e:
                    return e
            out.append(cache[key])
        return out

    placed = place_all(prog.samples)
    if isinstance(placed, WaferError):
        raise _batch_error(prog, machine, placed, reserve, lambda b: not isinstance(place_all(b), WaferError))
    rects: list[Rect | None] = [None] * len(prog.kernels)
    stages: list[int] = [0] * len(prog.kernels)
    for (_, ks), p in zip(groups, placed):
        for i, k in enumerate(ks):
            rects[k], stages[k] = p.rects[i], p.stage_cycles[i]
    prefetch, resident = reserve(prog.samples)
    out = Placement(machine, "streaming", tuple(rects), max(p.band_rows for p in placed), tuple(stages),
                    tuple(Group(name, ks, p.band_rows, w) for (name, ks), p, w in zip(groups, placed, weights)),
                    reserved_bytes=prefetch + resident)
    log(f"weight streaming: {len(groups)} groups, {len({signature(s) for s in subs})} of them distinct; "
        f"{prefetch:,} B per core for the next weights, {resident:,} B for the batch's activations")
    return out


def _batch_error(prog: Program, machine: Machine, why: WaferError, reserve, fits) -> FitError:
    prefetch, resident = reserve(prog.samples)
    lo, hi = 0, prog.samples  # the largest batch that fits, by bisection (fitting shrinks as the batch grows)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if mid >= 1 and fits(mid) else (lo, mid - 1)
    name, usable = prog.graph.name, machine.usable_sram_bytes
    if lo == 0:
        return FitError(f"{name} does not fit on {machine.name} in weight-streaming mode even at batch 1: {why}")
    return FitError(
        f"{name} at batch {prog.samples} does not fit on {machine.name} in weight-streaming mode: the batch's "
        f"activations between layers take {resident:,} B per core and the next layer's weights {prefetch:,} B, of "
        f"{usable:,} B usable, leaving too little for a layer's kernels; the largest batch that fits is {lo} "
        f"(use --batch {lo} or less, a shorter --seq, or a bigger --target)")
