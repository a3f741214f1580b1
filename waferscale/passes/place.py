"""place: every kernel gets its own rectangle of cores (layer-pipelined mode).

The mesh is cut into horizontal bands of equal height. Kernels, in program (topological)
order, fill the bands left to right, then right to left on the next band (a serpentine), so
each producer sits beside its consumer and a band's end turns the corner into the next band.
A kernel's width is the smallest that holds its SRAM and brings its stage time (cycles per
sample) down to a common target; the target is bisected to the smallest one whose widths still
pack into the bands, which balances the pipeline's stages. Every band height from a short list
is tried, and the placement with the fastest slowest stage wins.

The mode is an option: ``pipelined`` (above), ``streaming`` (each layer in turn on the whole
wafer, its weights streamed in: ``streaming.py``), or ``auto`` (the default): layer-pipelined when
the model fits, weight streaming otherwise. The placement records which and why.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

from ..backends.machine import Machine
from ..backends.program import Placement, Program, Rect
from ..errors import FitError, UsageError
from .base import PLACED, PROGRAM, CompileState, Pass, option, register
from .placement_check import verify_placement
from .streaming import choose_per_layer, place_streaming, use_streamed_gemm

# placement mode -> its name in reports
MODES = {"pipelined": "layer-pipelined", "streaming": "weight-streaming", "latency": "latency (cores shared in time)"}

__all__ = ["MODES", "FitError", "Place", "place"]


@register
@dataclass(frozen=True)
class Place(Pass):
    name = "place"
    stage = PROGRAM
    gives = PLACED
    needs_machine = True
    summary = "a rectangle of cores per kernel, in serpentine bands, stage times balanced"
    mode: str = option("auto", "execution mode: pipelined (every kernel on its own rectangle at once), "
                       "streaming (each layer on the whole wafer in turn, its weights streamed from MemoryX), or auto "
                       "(pipelined when the model fits, streaming otherwise)",
                       choices=("auto", "pipelined", "streaming"))
    streamed_gemm: str = option("auto", "in weight-streaming mode, the GEMMs that stream their weights through "
                                "resident activations (backends/kernels/streamed.py): auto (those of sparse weights, "
                                "and each dense one that is faster streamed on the whole wafer), those of sparse "
                                "weights, all weight GEMMs, or none (every GEMM weight-stationary)",
                                choices=("auto", "sparse", "all", "none"))

    def spec(self) -> str:
        """Every option but ``streamed_gemm`` at its default (added later: pipelines written before it
        read the same; their default was ``sparse`` until ``auto`` replaced it, docs/sparsity.md)."""
        text = super().spec()
        return text.replace(",streamed_gemm=auto", "") if self.streamed_gemm == "auto" else text

    def run(self, s: CompileState) -> CompileState:
        if s.machine is None:
            raise UsageError("pass 'place' needs a machine: give --target wse2, wse3 or mesh:RxC")
        prog, m = s.program, s.machine
        if self.mode == "streaming":
            s, placement = self._streaming(s)
            placement = replace(placement, reason="weight streaming: asked for (place{mode=streaming})")
        else:
            try:
                placement = place(prog, m, log=s.log)
            except FitError as e:
                if self.mode == "pipelined":
                    raise
                s, placement = self._streaming(s)
                placement = replace(placement, reason=f"weight streaming: layer-pipelined does not fit ({e})")
            else:
                need = sum(sum(k.model.sram(r.rows, r.cols).values()) * r.cores for k, r in zip(prog.kernels,
                                                                                               placement.rects))
                why = "asked for (place{mode=pipelined})" if self.mode == "pipelined" else (
                    f"it fits: its kernels take {need / 1e9:.2f} GB of SRAM on {placement.cores_used:,} cores, of "
                    f"{m.cores * m.usable_sram_bytes / 1e9:.2f} GB usable on {m.cores:,}")
                placement = replace(placement, reason=f"layer-pipelined: {why}")
        placement = verify_placement(s.program, placement)  # the streamed GEMMs, when streaming
        s.log(f"placed on {m.name} ({m.rows}x{m.cols}), {MODES[placement.mode]}, in bands of {placement.band_rows} "
              f"rows: {100 * placement.occupancy:.1f}% of the cores")
        return replace(s, placement=placement)

    def _streaming(self, s: CompileState) -> tuple[CompileState, Placement]:
        """The program with its streamed GEMMs (``streamed_gemm``), and its weight-streaming placement.
        ``auto`` chooses each layer's kernels on its placed time (``streaming.choose_per_layer``: the
        stationary kernels, or the GEMMs faster streamed with a block of A per core that fits beside the
        batch's resident activations), so a batch that fitted before ``auto`` fits with it."""
        if self.streamed_gemm == "auto":
            prog = choose_per_layer(s.program, s.machine, place, log=s.log)
        else:
            prog = use_streamed_gemm(s.program, self.streamed_gemm, log=s.log, machine=s.machine)
        return replace(s, program=prog), place_streaming(prog, s.machine, place, log=s.log)


def _first(lo: int, hi: int, ok) -> int | None:
    """The least x in [lo, hi] with ok(x), for ok monotone (false, then true), or None if ok(hi) fails."""
    if not ok(hi):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid + 1, hi)
    return lo


class _Sizer:
    """Widths of each kernel in a band of a given height, with memoized stage times."""

    def __init__(self, prog: Program, machine: Machine, band: int):
        self.prog, self.machine, self.band = prog, machine, band
        self.heights = [min(band, k.model.max_rows()) for k in prog.kernels]
        self.max_w = [min(machine.cols, k.model.max_cols()) for k in prog.kernels]
        self.time = lru_cache(maxsize=None)(self._time)

    def _time(self, i: int, w: int) -> int:
        m = self.prog.kernels[i].model
        return m.cycles(self.heights[i], w, 0, self.prog.tokens, self.machine)[0]

    def sram(self, i: int, w: int) -> int:
        return sum(self.prog.kernels[i].model.sram(self.heights[i], w).values())

    def min_width(self, i: int) -> int | None:
        """The narrowest width whose cores hold the kernel's buffers, or None."""
        cap = self.machine.usable_sram_bytes
        return _first(1, self.max_w[i], lambda w: self.sram(i, w) <= cap)

    def width_for(self, i: int, lo: int, target: int) -> int | None:
        """The narrowest width >= lo whose stage time is within target, or None. The bisection takes
        the time to fall with the width; where it does not (a kernel of one token, whose reduce's
        latency grows with the width), lo is taken whenever it meets the target, so the narrowest widths
        always pack at the slowest narrowest stage's time."""
        if self.time(i, lo) <= target:
            return lo
        w = _first(lo, self.max_w[i], lambda w: self.time(i, w) <= target)
        return w if w is None else self.holding(i, w)

    def holding(self, i: int, w: int) -> int | None:
        """The narrowest width from w whose cores hold the kernel's buffers: SRAM per core need not fall
        with the width (grouped-query attention: a column of 3 query heads may read 2 key/value heads
        where one of 4 reads 1), so a width chosen for its time is checked again."""
        cap = self.machine.usable_sram_bytes
        return next((x for x in range(w, self.max_w[i] + 1) if self.sram(i, x) <= cap), None)


def _pack(widths: list[int], heights: list[int], band: int, machine: Machine) -> list[Rect] | None:
    rects, b, x = [], 0, 0
    for w, h in zip(widths, heights):
        if x + w > machine.cols:
            b, x = b + 1, 0
        if (b + 1) * band > machine.rows or w > machine.cols:
            return None
        col = x if b % 2 == 0 else machine.cols - x - w
        rects.append(Rect(b * band, col, h, w))
        x += w
    return rects


def _band_heights(machine: Machine) -> list[int]:
    counts = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]
    return sorted({machine.rows // n for n in counts if machine.rows // n >= 1}, reverse=True)


def place(prog: Program, machine: Machine, log=lambda msg: None, what: str | None = None) -> Placement:
    """The pipelined placement of the program. ``what`` names it in a fit error when it is a part
    of a bigger program (a streamed layer)."""
    best = None
    shortfall = None
    unfit = None  # a kernel that no rectangle of the tallest band holds
    for band in _band_heights(machine):
        s = _Sizer(prog, machine, band)
        mins = [s.min_width(i) for i in range(len(prog.kernels))]
        if None in mins:
            if unfit is None:
                i = mins.index(None)
                unfit = (prog.kernels[i], s.heights[i], s.max_w[i])
            continue
        if _pack(mins, s.heights, band, machine) is None:
            need = sum(s.heights[i] * mins[i] for i in range(len(mins)))
            shortfall = need if shortfall is None else min(shortfall, need)
            continue
        def packs(target: int) -> bool:
            ws = [s.width_for(i, mins[i], target) for i in range(len(mins))]
            return None not in ws and _pack(ws, s.heights, band, machine) is not None

        # the smallest stage-time target whose widths still pack (the slowest narrowest stage always does)
        target = _first(1, max(s.time(i, mins[i]) for i in range(len(mins))), packs)
        widths = [s.width_for(i, mins[i], target) for i in range(len(mins))]
        rects = _pack(widths, s.heights, band, machine)
        times = tuple(s.time(i, w) for i, w in enumerate(widths))
        key = (max(times), -sum(r.cores for r in rects))
        log(f"band height {band}: slowest stage {max(times):,} cycles/sample")
        if best is None or key < best[0]:
            best = (key, Placement(machine, "pipelined", tuple(rects), band, times))
    if best is None:
        if shortfall is None and unfit is not None:
            raise _kernel_fit_error(machine, *unfit)
        raise _fit_error(prog, machine, shortfall, what)
    return best[1]


def _kernel_fit_error(machine: Machine, kernel, rows: int, cols: int) -> FitError:
    sram = kernel.model.sram(rows, cols)
    parts = ", ".join(f"{b} {n:,} B" for b, n in sram.items())
    return FitError(
        f"kernel {kernel.name} does not fit on {machine.name}: even on {rows}x{cols} cores each core needs "
        f"{sum(sram.values()):,} B of SRAM ({parts}) and has {machine.usable_sram_bytes:,} B usable; use a "
        "bigger --target (wse3, or mesh:RxC with more cores or sram_kib), or a shorter --seq")


def _size(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.2f} MB"


def _fit_error(prog: Program, machine: Machine, cores_needed: int | None, what: str | None = None) -> FitError:
    avail = machine.cores * machine.usable_sram_bytes
    need = sum(k.weight_bytes for k in prog.kernels)
    if cores_needed is None:
        acts = ""
    elif cores_needed > machine.cores:
        acts = (f"; with activations, KV caches and queues its kernels need at least {cores_needed:,} cores "
                f"({_size(cores_needed * machine.usable_sram_bytes)} of SRAM)")
    else:
        acts = (f"; with activations, KV caches and queues its kernels take {cores_needed:,} cores at their "
                f"narrowest ({_size(cores_needed * machine.usable_sram_bytes)} of SRAM), which do not pack "
                "into the mesh's bands (a kernel cannot span two bands)")
    subject = what or f"{prog.graph.name} does not fit on {machine.name} in layer-pipelined mode"
    advice = ("use weight streaming (--mode streaming or auto), a bigger --target (wse3, or mesh:RxC), a shorter "
              "--seq, or a smaller model" if what is None else "use a bigger --target or a shorter --seq")
    return FitError(
        f"{subject}: its weights alone take {_size(need)}{acts}, and the mesh has {_size(avail)} usable "
        f"({machine.cores:,} cores x {machine.usable_sram_bytes:,} B); {advice}")
