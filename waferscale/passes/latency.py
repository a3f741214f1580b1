"""The latency placement: every kernel on the region of cores that finishes it soonest, regions shared
in time (WaferLLM's MeshGEMV mapping for decode at small batch).

In layer-pipelined placement every kernel owns a rectangle sized so that the pipeline's stages are
balanced: at batch 1 a token crosses ~200 small rectangles one after another and most of the wafer
idles. Here every kernel gets the rectangle whose latency for the run (its busy cycles plus its fill,
from the kernel's own cost model: for a GEMV, ``kt * ceil(nt / lanes)`` FMAC cycles against the
row broadcast's and the column reduce's hops) is the least, wherever on the mesh it fits:

- **weights of every layer stay resident**, each kernel's tiles on its own rectangle; rectangles of
  kernels that never run at the same time may share cores. A shared core holds the weights (and
  KV caches, tables) of all its kernels, and one set of the transient buffers (activations in and
  out, partial sums, fabric queues): only one of its kernels runs at a time, so they are reused
  (``TRANSIENT``);
- **independent kernels** (q / k / v; gate / up; neither an ancestor of the other in the dataflow)
  may run at the same time, so their rectangles never share a core;
- kernels that share cores run one after another (``runtime/tile_sim.py`` serialises them, item by
  item, in program order).

Each kernel's rectangle is chosen greedily in program order: its shapes by increasing latency, and
for each every position on the mesh (the fullest core of every window at once, a sliding maximum),
taking the position whose cores end least full; the first shape that fits without a concurrent
overlap wins. Two rules keep a nearly full wafer packable (llama-3.1-70b's quarter fills 86% of a
WSE-3's SRAM):

- a side longer than the kernel's extent needs is never tried, and a kernel's sides are those that
  split its extent evenly (``sizes``: ``ceil(dim / t)`` for a tile count t), so no core holds a
  part-filled tile (spanning a WSE-3's 1,170 rows with 8,192 rows of weights would round every
  core up to 8 and waste 12% of the SRAM);
- a **budget**: a rectangle may fill its cores only so far that every core keeps room for its even
  share of the resident bytes of the kernels still to place. Where the fastest shapes break it,
  every shape is tried; where all do, the budget is dropped (only the capacity holds).

Where program order still does not pack (at a WSE-3's 2-cycle hop, three of llama-3.1-70b's four
parts: the first kernels' fastest rectangles leave no room for the last), the kernels are placed
again largest first (``pack``), and the placement's ``reason`` says so.
"""

from __future__ import annotations

from math import ceil

import numpy as np
from scipy.ndimage import maximum_filter1d

from ..backends.kernels.matmul import Gemm
from ..backends.machine import Machine
from ..backends.program import Placement, Program, Rect
from ..errors import FitError, VerifyError

# Buffers a core reuses between the kernels that share it (one of them runs at a time); every other
# buffer (weights, KV cache, tables) is resident, one per kernel.
TRANSIENT = frozenset({"activations_in", "activations_out", "partial_sums", "fabric_queues", "accumulators"})
SHAPES = 12  # shapes tried per kernel, by increasing latency, before giving up


def ancestors(prog: Program) -> list[int]:
    """Per kernel, the bit set of the kernels it depends on (directly or not)."""
    anc = [0] * len(prog.kernels)
    into: list[list[int]] = [[] for _ in prog.kernels]
    for f in prog.flows:
        if f.src >= 0:
            into[f.dst].append(f.src)
    for k in range(len(prog.kernels)):  # kernels are in topological order
        for s in into[k]:
            anc[k] |= anc[s] | (1 << s)
    return anc


def concurrent(anc: list[int], i: int, j: int) -> bool:
    """May kernels i and j run at the same time (neither depends on the other)?"""
    return not (anc[j] >> i) & 1 and not (anc[i] >> j) & 1


def sizes(limit: int, dim: int | None = None) -> list[int]:
    """Rectangle sides tried: about 1.4x apart, up to ``limit``. With ``dim`` (the kernel's extent on that
    axis), the sides that split it evenly instead: the least side for each tile count (``ceil(dim / t)``
    for tile counts t about 1.4x apart, and the least t that fits ``limit``), so that a rectangle wastes no
    core on a partly filled tile."""
    if dim is None or dim <= limit:
        out, s = {limit}, 1
        while s < limit:
            out.add(s)
            s = max(s + 1, round(s * 1.41))
        return sorted(out)
    least = ceil(dim / limit)  # the fewest tiles per core that the axis fits in
    return sorted({ceil(dim / t) for t in [least, *sizes(dim)] if t >= least})


def split_sram(sram: dict[str, int]) -> tuple[int, int]:
    """(resident, transient) bytes per core of a kernel's buffers."""
    tr = sum(v for b, v in sram.items() if b in TRANSIENT)
    return sum(sram.values()) - tr, tr


def latency(model, rows: int, cols: int, prog: Program, machine: Machine) -> int:
    """Cycles of one run of the kernel on a rows x cols rectangle: every sample's tokens, then its fill."""
    return prog.samples * model.cycles(rows, cols, 0, prog.tokens, machine)[0] + model.fill(rows, cols, machine)


def place_latency(prog: Program, machine: Machine, log=lambda msg: None, spread: bool = False) -> Placement:
    """``spread``: WaferLLM's mapping instead (a study, ``benchmarks/waferllm_mesh.py``): every GEMM on the
    whole mesh (as far as its extent reaches), the other kernels where they finish soonest, and every
    kernel free to share cores with any other, so that independent kernels (q / k / v) run one after
    another on the same cores, in program order, as WaferLLM's decode does.

    Kernels are placed in program order; where that packing fails (a nearly full wafer at a slow hop:
    the fastest rectangles of the early kernels leave no room for the late ones), they are placed again
    largest first (``pack``'s ``largest_first``), and the placement's ``reason`` says so."""
    try:
        return pack(prog, machine, log, spread)
    except FitError as first:
        if spread:
            raise
        try:
            placement = pack(prog, machine, log, largest_first=True)
        except FitError:
            raise first from None
        log("latency placement: program order did not pack; largest first did")
        return placement


def pack(prog: Program, machine: Machine, log=lambda msg: None, spread: bool = False,
         largest_first: bool = False) -> Placement:
    """One packing of the latency placement: each kernel, in turn, on its fastest shape that fits beside
    those placed before it. In program order, or (``largest_first``) by decreasing resident bytes, so that
    the kernels hardest to fit take their rectangles while the mesh is emptiest."""
    anc = ancestors(prog)
    cap = machine.usable_sram_bytes
    resident = np.zeros((machine.rows, machine.cols), dtype=np.int64)
    transient = np.zeros((machine.rows, machine.cols), dtype=np.int64)
    n = len(prog.kernels)
    rects: list[Rect | None] = [None] * n
    times = [0] * n
    cache: dict = {}
    # every kernel's resident bytes (its buffers on a single core), and per turn those of the kernels after it
    total = [split_sram(node.model.sram(1, 1))[0] for node in prog.kernels]
    order = sorted(range(n), key=lambda k: (-total[k], k)) if largest_first else list(range(n))
    after = np.cumsum([total[k] for k in order][::-1])[::-1].tolist()[1:] + [0]
    for turn, k in enumerate(order):
        node = prog.kernels[k]
        m = node.model
        key = repr(m)
        if key not in cache:
            hs = sizes(min(machine.rows, m.max_rows()), m.max_rows())
            ws = sizes(min(machine.cols, m.max_cols()), m.max_cols())
            cands = []
            for h in hs:
                for w in ws:
                    res, tr = split_sram(m.sram(h, w))
                    if res + tr <= cap:
                        cands.append((latency(m, h, w, prog, machine), h * w, h, w, res, tr))
            cache[key] = sorted(cands)
        blocked = [] if spread else [r for j, r in enumerate(rects) if r is not None and concurrent(anc, j, k)]
        # leave room on every core for the kernels still to place, their resident bytes spread evenly
        budget = cap - ceil(after[turn] / machine.cores)
        least = int(resident.min())  # no core of any rectangle ends below its shape's res + tr + this
        best = _whole(m, prog, machine, resident, transient) if spread and isinstance(m, Gemm) else None
        tries = [] if best is not None else [(cache[key][:SHAPES], budget), (cache[key], budget), (cache[key], cap)]
        for shapes, limit in tries:
            for lat, _, h, w, res, tr in shapes:
                if res + tr + least > limit:
                    continue
                rect = _least_full(resident, transient, blocked, h, w, res, tr, limit)
                if rect is not None:
                    best = (rect, lat, res, tr)
                    break
            if best is not None:
                break
        if best is None:
            raise FitError(f"latency placement: kernel {node.name} finds no rectangle on {machine.name} whose cores "
                           f"have room for it beside the kernels placed before it")
        rect, lat, res, tr = best
        resident[rect.row:rect.row + rect.rows, rect.col:rect.col + rect.cols] += res
        t = transient[rect.row:rect.row + rect.rows, rect.col:rect.col + rect.cols]
        np.maximum(t, tr, out=t)
        rects[k] = rect
        times[k] = lat
    how = "largest first" if largest_first else "in program order"
    log(f"latency placement ({how}): {n} kernels, sum of their latencies {sum(times):,} cycles, fullest core "
        f"{int((resident + transient).max()):,} B of {cap:,}")
    reason = ("packed largest first (in program order the fastest rectangles of the first kernels left "
              "no room for the last)") if largest_first else ""
    return Placement(machine, "latency", tuple(rects), 0, tuple(times), serial=spread, reason=reason)


def _whole(m, prog: Program, machine: Machine, resident: np.ndarray, transient: np.ndarray):
    """(rect, latency, resident, transient bytes) of a GEMM on the whole mesh from its corner, as far as its
    extent reaches (``spread``); None where its cores would overflow."""
    h, w = min(machine.rows, m.max_rows()), min(machine.cols, m.max_cols())
    res, tr = split_sram(m.sram(h, w))
    full = resident[:h, :w] + np.maximum(transient[:h, :w], tr) + res
    if full.max() > machine.usable_sram_bytes:
        return None
    return Rect(0, 0, h, w), latency(m, h, w, prog, machine), res, tr


def _least_full(resident: np.ndarray, transient: np.ndarray, blocked: list[Rect], h: int, w: int, res: int,
                tr: int, limit: int) -> Rect | None:
    """The h x w position, clear of ``blocked``, whose fullest core ends least full and within ``limit``
    (the first such in row-major order); None if there is none."""
    rows, cols = resident.shape
    full = resident + np.maximum(transient, tr)
    # the fullest core of the h x w window whose top-left corner is (r, c), for every (r, c)
    win = maximum_filter1d(maximum_filter1d(full, w, axis=1, origin=-(w // 2)), h, axis=0, origin=-(h // 2))
    win = win[:rows - h + 1, :cols - w + 1] + res
    for b in blocked:
        win[max(0, b.row - h + 1):b.row + b.rows, max(0, b.col - w + 1):b.col + b.cols] = limit + 1
    r, c = divmod(int(win.argmin()), win.shape[1])
    return Rect(r, c, h, w) if win[r, c] <= limit else None


def sram_map(prog: Program, placement: Placement) -> np.ndarray:
    """Bytes per core of a latency placement: every kernel's resident buffers, the largest transient set."""
    m = placement.machine
    resident = np.zeros((m.rows, m.cols), dtype=np.int64)
    transient = np.zeros((m.rows, m.cols), dtype=np.int64)
    for node, r in zip(prog.kernels, placement.rects):
        res, tr = split_sram(node.model.sram(r.rows, r.cols))
        resident[r.row:r.row + r.rows, r.col:r.col + r.cols] += res
        t = transient[r.row:r.row + r.rows, r.col:r.col + r.cols]
        np.maximum(t, tr, out=t)
    return resident + transient + placement.reserved_bytes


def verify_latency(prog: Program, placement: Placement) -> None:
    """A latency placement's rules: cores shared only by kernels that never run at the same time, and
    every core's SRAM (resident buffers summed, transient ones reused) within capacity."""
    m = placement.machine
    anc = ancestors(prog)
    rects = placement.rects
    order = sorted(range(len(rects)), key=lambda i: (rects[i].col, rects[i].row))
    for a_i, a in enumerate(order):
        for b in order[a_i + 1:]:
            if rects[b].col >= rects[a].col + rects[a].cols:
                break
            if rects[a].overlaps(rects[b]) and concurrent(anc, a, b) and not placement.serial:
                raise VerifyError("placement-overlap", f"kernels {prog.kernels[a].name} and {prog.kernels[b].name} "
                                  "may run at the same time and share cores")
    full = sram_map(prog, placement)
    if full.max() > m.usable_sram_bytes:
        r, c = np.unravel_index(int(full.argmax()), full.shape)
        raise VerifyError("placement-sram", f"core ({r},{c}) needs {int(full.max()):,} B of SRAM for the kernels "
                          f"that share it and {m.name} has {m.usable_sram_bytes:,} B usable per core")
