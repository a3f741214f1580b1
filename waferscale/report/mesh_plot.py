"""``mesh.png``: the placed mesh in three panels, drawn to scale straight from per-core arrays.
Left: each kernel's rectangle, coloured by its FLOP utilization, with its outline (in weight
streaming, the kernels of one layer: they have the whole mesh while the layer runs). Middle: SRAM
occupancy of every core (fraction of its capacity). Right: fabric load, the bytes per sample
crossing each core's links, each XY route drawn as the bundle of parallel links it stands for
(log scale). Each panel has its colour scale beneath it.

One pixel (or a square of them, for small meshes) per core; meshes wider than ``MAX_PIXELS``
cores are sampled. The picture is composed with NumPy and encoded by Pillow; matplotlib lends
only its colour maps, so a WSE-2 picture costs a fraction of a second, not a figure layout.
"""

from __future__ import annotations

import io
from math import ceil

import numpy as np

from ..passes.base import CompileState
from .wafer import utilization

MAX_PIXELS = 1200  # per side of a panel; bigger meshes are sampled
EMPTY = (235, 235, 235)
MARGIN, TITLE, LABEL, BAR = 12, 28, 18, 10


def shown_group(s: CompileState):
    """Weight streaming: the group the picture shows, the first transformer block (else the largest)."""
    groups = s.placement.groups
    if not s.placement.is_streaming:
        return None
    return next((g for g in groups if ".h." in g.name or g.name.startswith("h.")),
                max(groups, key=lambda g: len(g.kernels)))


def _arrays(s: CompileState) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    m, pl = s.machine, s.placement
    group = shown_group(s)
    kernels = group.kernels if group is not None else tuple(range(len(pl.rects)))
    util = np.full((m.rows, m.cols), np.nan)
    sram = np.full((m.rows, m.cols), np.nan)
    for kid in kernels:
        k, r = s.program.kernels[kid], pl.rects[kid]
        util[r.row:r.row + r.rows, r.col:r.col + r.cols] = utilization(s, k.id)
        sram[r.row:r.row + r.rows, r.col:r.col + r.cols] = (sum(k.model.sram(r.rows, r.cols).values())
                                                           + pl.reserved_bytes) / m.sram_bytes
    load = np.zeros((m.rows, m.cols))
    shown = set(kernels)
    for rt in s.routing.routes:  # each link of a route stands for a bundle of `lanes` parallel links
        if s.program.flows[rt.flow].dst not in shown:
            continue
        per_lane = rt.bytes_per_sample / rt.lanes
        for row, col, d in rt.links:
            if d in "EW":
                lo = min(max(row - rt.lanes // 2, 0), max(m.rows - rt.lanes, 0))
                load[lo:lo + rt.lanes, max(col, 0)] += per_lane
            else:
                lo = min(max(col - rt.lanes // 2, 0), max(m.cols - rt.lanes, 0))
                load[row, lo:lo + rt.lanes] += per_lane
    return util, sram, np.where(load > 0, load, np.nan), pl.owner(None if group is None else kernels)


def _colour(values: np.ndarray, cmap: str, lo: float, hi: float, log: bool = False) -> np.ndarray:
    from matplotlib import colormaps

    with np.errstate(divide="ignore", invalid="ignore"):
        x = (np.log(values) - np.log(lo)) / (np.log(hi) - np.log(lo)) if log else (values - lo) / (hi - lo)
    rgb = colormaps[cmap](np.nan_to_num(np.clip(x, 0, 1)), bytes=True)[..., :3]
    rgb[np.isnan(values)] = EMPTY
    return rgb


def _scale(img: np.ndarray, px: int, step: int) -> np.ndarray:
    img = img[::step, ::step]
    return img.repeat(px, 0).repeat(px, 1) if px > 1 else img


def mesh_png(s: CompileState) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    m, pl = s.machine, s.placement
    util, sram, load, owner = _arrays(s)
    step = ceil(max(m.rows, m.cols) / MAX_PIXELS)
    px = max(1, min(12, 480 // max(m.rows, m.cols)))
    found = load[np.isfinite(load)]
    lo, hi = (float(found.min()), float(max(found.max(), found.min() * 1.0001))) if found.size else (1.0, 2.0)
    umax = max(float(np.nanmax(util)) if np.isfinite(util).any() else 0.0, 1e-9)
    panels = [
        ("kernels: FLOP utilization", _colour(util, "viridis", 0, umax), "viridis", f"0 .. {100 * umax:.1f}%"),
        ("SRAM per core (fraction of capacity)", _colour(sram, "magma", 0, 1), "magma", "0 .. 100%"),
        ("fabric load (bytes/sample per link)", _colour(load, "inferno", lo, hi, log=True), "inferno",
         f"{lo:.3g} .. {hi:.3g} B (log)"),
    ]
    owner = _scale(owner, px, step)  # kernel outlines, one pixel wide: where the next pixel is another kernel's
    edge = np.zeros_like(owner, dtype=bool)
    edge[:, :-1] |= owner[:, :-1] != owner[:, 1:]
    edge[:-1, :] |= owner[:-1, :] != owner[1:, :]
    edge &= owner >= 0
    images = [_scale(p[1], px, step) for p in panels]
    images[0][edge] = (images[0][edge] // 2 + 128).astype(np.uint8)  # halfway to white

    h, w = images[0].shape[:2]
    width = 3 * w + 4 * MARGIN
    height = TITLE + LABEL + h + MARGIN + BAR + LABEL + MARGIN
    canvas = Image.new("RGB", (max(width, 480), height), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    group = shown_group(s)
    what = (f"{len(pl.rects)} kernels, {100 * pl.occupancy:.1f}% of the cores used" if group is None else
            f"weight streaming: layer {group.name} ({len(group.kernels)} kernels), one of {len(pl.groups)} groups")
    draw.text((MARGIN, 6), f"{s.program.graph.name} on {m.name} ({m.rows}x{m.cols} cores), {what}"
              + (f" (every {step}th core shown)" if step > 1 else ""), fill="black", font=font)
    from matplotlib import colormaps

    for i, ((title, _, cmap, scale), image) in enumerate(zip(panels, images)):
        x = MARGIN + i * (w + MARGIN)
        draw.text((x, TITLE), title, fill="black", font=font)
        canvas.paste(Image.fromarray(np.ascontiguousarray(image)), (x, TITLE + LABEL))
        bar_w = min(w, 256)
        bar = colormaps[cmap](np.linspace(0, 1, bar_w), bytes=True)[:, :3]
        y = TITLE + LABEL + h + MARGIN
        canvas.paste(Image.fromarray(np.ascontiguousarray(np.repeat(bar[None], BAR, 0))), (x, y))
        draw.text((x, y + BAR + 2), scale, fill="black", font=font)
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", optimize=False)
    return buf.getvalue()
