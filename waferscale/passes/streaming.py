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

Training (``autodiff``'s graph): the backward ops carry their layer's loc behind ``backward:``, so
each layer is a group twice, forward then backward, and its weights stream in for both; the weight
gradients a backward group makes (graph outputs) stream out to MemoryX after it (``grad_bytes``;
a sparse weight's compressed, ``grads_out``).
``largest_batch`` is the most samples whose activations between groups (for training, every
activation the backward reads) leave room for the kernels: the micro-batch of a training step.
"""

from __future__ import annotations

import re
from dataclasses import replace
from math import ceil

from ..backends import assumptions as A
from ..backends.kernels.matmul import Gemm
from ..backends.kernels.streamed import StreamedGemm
from ..backends.machine import Machine
from ..backends.program import Group, Placement, Program, Rect, signature, sub_program
from ..backends.streamed import A_BLOCK_BYTES
from ..errors import FitError, WaferError
from .autodiff import BACKWARD

_BLOCK = re.compile(r"^(.*?\b(?:h|layers)\.\d+)(?:[./]|$)")


def groups_of(prog: Program) -> list[tuple[str, tuple[int, ...]]]:
    """(name, kernel ids) of each group, in program order (module docstring)."""
    return group_by_block([prog.graph.loc(k.op.result) for k in prog.kernels], prog.graph.name)


def group_by_block(locs: list[str | None], model: str) -> list[tuple[str, tuple[int, ...]]]:
    """The grouping of ``groups_of`` from each kernel's module path (``loc``) alone, so that a report
    can name a pipelined kernel's layer from placement.json."""
    keys = []
    for loc in locs:
        m = _BLOCK.match(loc or "")
        keys.append(m.group(1) if m else None)
    runs: list[tuple[str | None, list[int]]] = []
    for kid, key in enumerate(keys):
        if runs and runs[-1][0] == key:
            runs[-1][1].append(kid)
        else:
            runs.append((key, [kid]))
    if len(runs) == 1:  # no transformer blocks: the whole model is one group
        return [(runs[0][0] or model, tuple(runs[0][1]))]
    out = []
    for i, (key, ids) in enumerate(runs):
        # forward blocks after this run (a training graph's backward blocks follow its head)
        later = any(k and not k.startswith(BACKWARD) for k, _ in runs[i + 1:])
        backward = all((locs[k] or "").startswith(BACKWARD) for k in ids)
        name = key or ("embeddings" if i == 0 else BACKWARD + "embeddings" if backward and not later
                       else "head" if not later else f"between {runs[i - 1][0]}")
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


def grads_out(prog: Program, kernels: tuple[int, ...]) -> tuple[int, int]:
    """(bytes, parameters) of the weight gradients these kernels make: backward kernels whose results
    are graph outputs. A sparse weight's gradient is its kept entries, streamed with their indices
    (the weight's compressed format, ``backends/sparse.py``)."""
    outs = set(prog.outputs)
    nbytes = params = 0
    for k in kernels:
        node = prog.kernels[k]
        if k not in outs or not (prog.graph.loc(node.op.result) or "").startswith(BACKWARD):
            continue
        sw = getattr(node.model, "sparse", None)
        nbytes += node.op.type.nbytes if sw is None else sw.stored_bytes(node.model.elem)
        params += node.op.type.numel if sw is None else sw.nnz
    return nbytes, params


def use_streamed_gemm(prog: Program, which: str, log=lambda msg: None, machine: Machine | None = None,
                      a_block: int = A_BLOCK_BYTES) -> Program:
    """The program with the GEMMs that stream their weights through resident activations
    (``kernels/streamed.py``) in place of weight-stationary ones: ``sparse``, those of sparse weights
    (a quantised weight's stay stationary); ``all``, every weight GEMM; ``none``, none; ``auto`` (the
    default), those of sparse weights and each dense one that ``streams_faster`` on ``machine``; each
    holding at most ``a_block`` bytes of A per core in a pass."""
    if which == "none":
        return prog
    nodes = []
    for node in prog.kernels:
        g = node.model
        if type(g) is Gemm and not g.quant:
            s = StreamedGemm.of(g, prog.samples, a_block)
            if which == "all" or g.sparse is not None or (which == "auto" and streams_faster(g, s, machine)):
                node = replace(node, model=s)
        nodes.append(node)
    count = sum(isinstance(n.model, StreamedGemm) for n in nodes)
    if count:
        log(f"weight streaming: {count} GEMMs stream their weights through resident activations ({which})")
    return replace(prog, kernels=tuple(nodes))


def streams_faster(g: Gemm, s: StreamedGemm, machine: Machine | None) -> bool:
    """Whether the streamed kernel ``s`` runs the batch's tokens in fewer cycles than the
    weight-stationary ``g``, both on the whole wafer (in weight-streaming mode a layer has the whole
    wafer, each kernel a share of it that the placer chooses later: the whole is the estimate). The
    stationary kernel pays a vector instruction's issue per token and element of A over a tile row of a
    few columns, the streamed one per weight over the core's tokens, so the streamed one wins once a
    core holds enough tokens (docs/sparsity.md: at batch 16 and more for cerebras-gpt-13b on a WSE-2)."""
    if machine is None:
        return False
    m = s.tokens * s.samples
    rows, cols = machine.rows, machine.cols
    return s.cycles(rows, cols, 0, m, machine)[0] < g.cycles(rows, cols, 0, m, machine)[0]


# The blocks of A per core a streamed GEMM may hold in a pass, largest first: a smaller one takes more passes
# (each streaming the layer's weights through the wafer again) and leaves more SRAM to the layer's kernels.
A_BLOCKS = (A_BLOCK_BYTES, A_BLOCK_BYTES // 2, A_BLOCK_BYTES // 4, A_BLOCK_BYTES // 8)


def choose_per_layer(prog: Program, machine: Machine, place_group, log=lambda msg: None) -> Program:
    """``streamed_gemm=auto``: each layer (group) with the kernels that make it fastest placed. The
    candidates are the stationary kernels (``sparse``: only sparse weights stream) and, for each block of
    A in ``A_BLOCKS``, the GEMMs that ``streams_faster`` alone on the whole wafer; each is placed as the
    layer runs, its kernels sharing the wafer and the SRAM left beside the next layer's weights and the
    batch's activations, and the one whose slowest stage is the fastest wins (a tie keeps the stationary
    kernels). Everything else a layer pays in the step (its weights' stream in, its gradients' out) is
    the same bytes whichever kernel computes it, and a layer's time only enters the step through ``max``
    and ``+`` (``runtime/stream_sim.py``), so no layer and no step is slower than with ``sparse`` (as far
    as the slowest stage orders two placements of a layer as the tile simulation does). Choosing each
    GEMM alone was not: in cerebras-gpt-13b's training step a backward layer's eight streamed GEMMs need
    more columns than the wafer has at 16 KB of A a core, so every layer fell back to 4 KB (four times
    the passes) and the backward layer to two bands of half the rows, 54% slower (docs/sparsity.md).

    A batch whose stationary kernels do not fit a layer is not placed (``place_streaming`` says why), as
    with ``sparse``: streamed GEMMs with small blocks of A may fit it, but so slowly that a smaller batch
    is faster (13B training on one WSE-2 took micro-batches of 16 so, 1,211 s a step, against 83 s at 15
    with the stationary kernels)."""
    base = use_streamed_gemm(prog, "sparse")
    options, seen = [("the stationary kernels", base)], {tuple(k.model for k in base.kernels)}
    for block in A_BLOCKS:
        p = use_streamed_gemm(prog, "auto", machine=machine, a_block=block)
        models = tuple(k.model for k in p.kernels)
        if models not in seen:
            options.append((f"streamed GEMMs holding {block:,} B of A a core", p))
            seen.add(models)
    if len(options) == 1:
        return base
    fits = [_Fit(p, machine, place_group) for _, p in options]
    prefetch, resident = fits[0].reserve(prog.samples)
    left = machine.sram_bytes - prefetch - resident
    if left - machine.reserved_sram_bytes <= 0:
        return base  # place_streaming says why
    small = replace(machine, sram_bytes=left)
    cache: dict[tuple, float | None] = {}

    def slowest(sub: Program) -> float | None:
        key = signature(sub)
        if key not in cache:
            try:
                cache[key] = max(place_group(sub, small, what="").stage_cycles, default=0)
            except WaferError:
                cache[key] = None
        return cache[key]

    nodes = list(base.kernels)
    picked: dict[str, int] = {}
    for gi, (_, ks) in enumerate(fits[0].groups):
        times = [(t, i) for i, t in enumerate(slowest(f.subs[gi]) for f in fits) if t is not None]
        if not times or times[0][1] != 0:
            return base  # the stationary kernels do not fit this layer: place_streaming says why
        best = min(times)[1]
        for k in ks:
            nodes[k] = options[best][1].kernels[k]
        picked[options[best][0]] = picked.get(options[best][0], 0) + 1
    log("weight streaming (auto): each layer with the kernels that place it fastest: "
        + "; ".join(f"{n} layer(s) with {what}" for what, n in picked.items()))
    return replace(prog, kernels=tuple(nodes))


def largest_batch(prog: Program, machine: Machine, place_group, upto: int) -> int:
    """The most samples (at most ``upto``) that fit in weight-streaming mode; 0 if not even one."""
    fit = _Fit(prog, machine, place_group)
    lo, hi = 0, upto
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if not isinstance(fit.place_all(mid), WaferError) else (lo, mid - 1)
    return lo


class _Fit:
    """The groups of a program and their placement at a given batch (module docstring)."""

    def __init__(self, prog: Program, machine: Machine, place_group):
        self.prog, self.machine, self.place_group = prog, machine, place_group
        self.groups = groups_of(prog)
        self.subs = [sub_program(prog, ks) for _, ks in self.groups]
        self.weights = [sum(prog.kernels[k].weight_bytes for k in ks) for _, ks in self.groups]
        self.per_token = resident_bytes_per_token(prog, self.groups)
        self.cache: dict[tuple, Placement] = {}

    def _subs(self, samples: int) -> list[Program]:
        """The groups' programs at this batch: a streamed GEMM holds its batch's tokens, so its SRAM goes
        with the batch tried (the search for the largest batch that fits), not the one asked for."""
        if samples == self.prog.samples or not any(isinstance(k.model, StreamedGemm) for k in self.prog.kernels):
            return self.subs
        nodes = tuple(replace(k, model=replace(k.model, samples=samples)) if isinstance(k.model, StreamedGemm) else k
                      for k in self.prog.kernels)
        prog = replace(self.prog, kernels=nodes)
        return [sub_program(prog, ks) for _, ks in self.groups]

    def reserve(self, samples: int) -> tuple[int, int]:
        """(prefetch, resident activations) bytes per core at this batch."""
        m = self.machine
        prefetch = ceil((A.WEIGHT_BUFFERS - 1) * max(self.weights) / m.cores)
        resident = ceil(A.RESIDENT_ACTIVATION_COPIES * samples * self.prog.tokens * self.per_token / m.cores)
        return prefetch, resident

    def place_all(self, samples: int) -> list[Placement] | WaferError:
        prefetch, resident = self.reserve(samples)
        left = self.machine.sram_bytes - prefetch - resident
        if left - self.machine.reserved_sram_bytes <= 0:
            return WaferError(f"no SRAM left for the kernels (of {self.machine.sram_bytes:,} B per core, the next "
                              f"layer's weights take {prefetch:,} B and the batch's activations {resident:,} B)")
        small = replace(self.machine, sram_bytes=left)
        out = []
        for (name, _), sub in zip(self.groups, self._subs(samples)):
            key = (signature(sub), left)
            if key not in self.cache:
                try:
                    self.cache[key] = self.place_group(
                        sub, small, what=f"its layer {name}, alone on the mesh with {small.usable_sram_bytes:,} B of "
                        "SRAM per core left for its kernels, does not fit")
                except WaferError as e:
                    return e
            out.append(self.cache[key])
        return out


def place_streaming(prog: Program, machine: Machine, place_group, log=lambda msg: None) -> Placement:
    """``place_group(sub_program, machine, what=...)`` places one group (the pipelined algorithm)."""
    if prog.weight_bytes > machine.memoryx_bytes:
        raise FitError(f"{prog.graph.name}'s weights ({prog.weight_bytes / 1e12:.2f} TB) do not fit in "
                       f"{machine.name}'s MemoryX ({machine.memoryx_bytes / 1e12:.1f} TB, its smallest configuration)")
    fit = _Fit(prog, machine, place_group)
    groups, subs, weights, reserve, place_all = fit.groups, fit.subs, fit.weights, fit.reserve, fit.place_all
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
                    tuple(Group(name, ks, p.band_rows, w, *grads_out(prog, ks))
                          for (name, ks), p, w in zip(groups, placed, weights)),
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
