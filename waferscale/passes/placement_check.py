"""The verifier's placement rules: every kernel inside the mesh, no core shared by two kernels
that run at the same time (all of them in layer-pipelined mode, a group's in weight streaming),
SRAM per core within capacity (with what the placement reserves besides the kernels'), one
rectangle per kernel, every kernel in one group."""

from __future__ import annotations

from ..backends.program import Placement, Program
from ..errors import VerifyError


def verify_placement(prog: Program, placement: Placement) -> Placement:
    m = placement.machine
    if len(placement.rects) != len(prog.kernels):
        raise VerifyError("placement-count", f"{len(prog.kernels)} kernels but {len(placement.rects)} rectangles")
    for k, r in zip(prog.kernels, placement.rects):
        if r.rows < 1 or r.cols < 1 or r.row < 0 or r.col < 0 or r.row + r.rows > m.rows or r.col + r.cols > m.cols:
            raise VerifyError("placement-bounds", f"kernel {k.name} at rows {r.row}..{r.row + r.rows - 1}, cols "
                              f"{r.col}..{r.col + r.cols - 1} leaves the {m.rows}x{m.cols} mesh of {m.name}")
        sram = dict(k.model.sram(r.rows, r.cols), **({"reserved": placement.reserved_bytes}
                                                     if placement.reserved_bytes else {}))
        if sum(sram.values()) > m.usable_sram_bytes:
            parts = ", ".join(f"{b} {n:,}" for b, n in sram.items())
            raise VerifyError("placement-sram", f"kernel {k.name} on {r.rows}x{r.cols} cores needs "
                              f"{sum(sram.values()):,} B of SRAM per core ({parts}) and {m.name} has "
                              f"{m.usable_sram_bytes:,} B usable per core")
    if placement.mode == "latency":  # cores shared in time: its own rules (latency.py)
        from .latency import verify_latency

        verify_latency(prog, placement)
        return placement
    together = ([g.kernels for g in placement.groups] if placement.is_streaming
                else [tuple(range(len(prog.kernels)))])
    grouped = sorted(k for ks in together for k in ks)
    if grouped != list(range(len(prog.kernels))):
        raise VerifyError("placement-groups", "the groups do not hold every kernel exactly once")
    for ks in together:
        _no_overlap(prog, placement, ks)
    return placement


def _no_overlap(prog: Program, placement: Placement, kernels: tuple[int, ...]) -> None:
    order = sorted(kernels, key=lambda i: (placement.rects[i].col, placement.rects[i].row))
    for a_i, a in enumerate(order):  # sweep by column: only rectangles whose columns meet can overlap
        ra = placement.rects[a]
        for b in order[a_i + 1:]:
            rb = placement.rects[b]
            if rb.col >= ra.col + ra.cols:
                break
            if ra.overlaps(rb):
                raise VerifyError("placement-overlap", f"kernels {prog.kernels[a].name} and {prog.kernels[b].name} "
                                  f"share cores ({ra.as_list()} and {rb.as_list()} as [row, col, rows, cols])")
