"""``mesh.png``: the placed mesh in three panels. Left: each kernel's rectangle, coloured by its
FLOP utilization. Middle: SRAM occupancy of every core (fraction of its 48 KiB). Right: fabric
load, the bytes per sample crossing each core's links, each XY route drawn as the bundle of
parallel links it stands for (log scale)."""

from __future__ import annotations

import io

import numpy as np

from ..passes.base import CompileState
from .wafer import utilization


def mesh_png(p: CompileState) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Rectangle

    m, pl = p.machine, p.placement
    util = np.full((m.rows, m.cols), np.nan)
    sram = np.zeros((m.rows, m.cols))
    for k, r in zip(p.program.kernels, pl.rects):
        util[r.row:r.row + r.rows, r.col:r.col + r.cols] = utilization(p, k.id)
        sram[r.row:r.row + r.rows, r.col:r.col + r.cols] = sum(k.model.sram(r.rows, r.cols).values()) / m.sram_bytes
    load = np.zeros((m.rows, m.cols))
    for rt in p.routing.routes:  # each link of a route stands for a bundle of `lanes` parallel links
        per_lane = rt.bytes_per_sample / rt.lanes
        for row, col, d in rt.links:
            if d in "EW":
                lo = min(max(row - rt.lanes // 2, 0), max(m.rows - rt.lanes, 0))
                load[lo:lo + rt.lanes, max(col, 0)] += per_lane
            else:
                lo = min(max(col - rt.lanes // 2, 0), max(m.cols - rt.lanes, 0))
                load[row, lo:lo + rt.lanes] += per_lane

    aspect = m.rows / m.cols
    fig, axes = plt.subplots(1, 3, figsize=(16, max(3.5, 5 * aspect)), dpi=100, constrained_layout=True)
    fig.suptitle(f"{p.program.graph.name} on {m.name} ({m.rows}x{m.cols} cores), {len(pl.rects)} kernels, "
                 f"{100 * pl.occupancy:.1f}% of the cores used", fontsize=11)
    kw = {"origin": "upper", "interpolation": "nearest", "extent": (0, m.cols, m.rows, 0)}
    im = axes[0].imshow(util, cmap="viridis", vmin=0, vmax=max(np.nanmax(util), 1e-9), **kw)
    for r in pl.rects:
        axes[0].add_patch(Rectangle((r.col, r.row), r.cols, r.rows, fill=False, lw=0.3, ec="white"))
    axes[0].set_title("kernels: FLOP utilization")
    fig.colorbar(im, ax=axes[0], shrink=0.8)
    im = axes[1].imshow(sram, cmap="magma", vmin=0, vmax=1, **kw)
    axes[1].set_title("SRAM per core (fraction of capacity)")
    fig.colorbar(im, ax=axes[1], shrink=0.8)
    shown = np.where(load > 0, load, np.nan)
    lo = np.nanmin(shown) if np.isfinite(shown).any() else 1.0
    im = axes[2].imshow(shown, cmap="inferno", norm=LogNorm(vmin=lo, vmax=max(np.nanmax(shown) if
                        np.isfinite(shown).any() else 1.0, lo * 1.0001)), **kw)
    axes[2].set_title("fabric load (bytes per sample per link, routes drawn as bundles)")
    fig.colorbar(im, ax=axes[2], shrink=0.8)
    for ax in axes:
        ax.set_xlabel("column")
        ax.set_ylabel("row")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()
