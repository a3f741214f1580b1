"""``mesh.png``: the placed mesh in three panels, drawn to scale straight from per-core arrays.
Left: each kernel's rectangle, coloured by its FLOP utilization, with its outline (in weight
streaming, the kernels of one layer: they have the whole mesh while the layer runs). Middle: SRAM
occupancy of every core in KiB, light to dark up to the fullest core (a dark-to-light scale up to
the capacity left the few KiB most cores hold nearly black). Right: fabric load, the bytes per sample crossing each
core's links, each XY route drawn as the bundle of parallel links it stands for (log scale). Each
panel has its colour bar beneath it, with its ends labelled in their units; a kernel's name is
written on its rectangle where it fits (across, or along a tall rectangle), left out where not.

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
MARGIN = 16
SRAM_CMAP = "magma_r"  # perceptual, light where a core holds little, dark where it is fullest


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
                                                           + pl.reserved_bytes)  # bytes per core
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


def _font(size: int):
    """Pillow's own scalable font (the same on every machine, so the PNG stays byte-identical);
    its fixed-size bitmap font where Pillow was built without FreeType."""
    from PIL import ImageFont, features

    return ImageFont.load_default(size=size) if features.check("freetype2") else ImageFont.load_default()


def _kib(b: float) -> str:
    return f"{b / 1024:.1f} KiB" if b < 10 * 1024 else f"{b / 1024:.0f} KiB"


def label_texts(name: str) -> list[str]:
    """What may be written on a kernel's rectangle, longest first: its name without the leading
    ``transformer.``/``model.``, then the module path alone, then the last part of it."""
    short = name.removeprefix("transformer.").removeprefix("model.")
    module = short.split("/")[0]
    return list(dict.fromkeys([short, module, module.split(".")[-1]]))


def kernel_labels(boxes: dict[int, tuple[int, int, int, int]], names: dict[int, str],
                  font) -> list[tuple[int, int, int, int, str, bool]]:
    """(x, y, w, h, text, vertical) for each kernel whose box (x, y, w, h in pixels of the panel)
    holds one of its ``label_texts`` across or, when it is tall, along it; kernels too small for
    any of them are left out."""
    out = []
    for kid, (x, y, w, h) in sorted(boxes.items()):
        for text in label_texts(names[kid]):
            left, top, right, bottom = font.getbbox(text)
            tw, th = right - left, bottom - top
            if tw + 6 <= w and th + 4 <= h:
                out.append((x, y, w, h, text, False))
                break
            if h > w and tw + 6 <= h and th + 4 <= w:
                out.append((x, y, w, h, text, True))
                break
    return out


def _box(r, px: int, step: int) -> tuple[int, int, int, int]:
    """A rectangle of cores in pixels of a panel sampled every ``step`` cores, ``px`` pixels each."""
    x0, y0 = -(-r.col // step) * px, -(-r.row // step) * px
    return x0, y0, -(-(r.col + r.cols) // step) * px - x0, -(-(r.row + r.rows) // step) * px - y0


def _write_label(canvas, x0: int, y0: int, label, rgb: np.ndarray, font) -> None:
    """One kernel's label centred on its rectangle, black on a light colour and white on a dark one."""
    from PIL import Image, ImageDraw

    x, y, w, h, text, vertical = label
    left, top, right, bottom = font.getbbox(text)
    mask = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(mask).text((-left, -top), text, fill=255, font=font)
    if vertical:
        mask = mask.transpose(Image.Transpose.ROTATE_90)
    r_, g_, b_ = (int(c) for c in rgb[y + h // 2, x + w // 2])
    ink = (0, 0, 0) if 0.299 * r_ + 0.587 * g_ + 0.114 * b_ > 140 else (255, 255, 255)
    canvas.paste(ink, (x0 + x + (w - mask.width) // 2, y0 + y + (h - mask.height) // 2), mask)


def mesh_png(s: CompileState) -> bytes:
    from matplotlib import colormaps
    from PIL import Image, ImageDraw

    m, pl = s.machine, s.placement
    util, sram, load, owner = _arrays(s)
    step = ceil(max(m.rows, m.cols) / MAX_PIXELS)
    px = max(1, min(12, 480 // max(m.rows, m.cols)))
    found = load[np.isfinite(load)]
    lo, hi = (float(found.min()), float(max(found.max(), found.min() * 1.0001))) if found.size else (1.0, 2.0)
    umax = max(float(np.nanmax(util)) if np.isfinite(util).any() else 0.0, 1e-9)
    smax = float(np.nanmax(sram)) if np.isfinite(sram).any() else float(m.sram_bytes)
    panels = [  # title, picture, colour map, (low end, middle, high end of the bar, what it measures)
        ("kernels: FLOP utilization", _colour(util, "viridis", 0, umax), "viridis",
         ("0%", f"{50 * umax:.1f}%", f"{100 * umax:.1f}%", "of the cores' peak FLOP/s")),
        ("SRAM used per core", _colour(sram, SRAM_CMAP, 0, smax), SRAM_CMAP,
         ("0 KiB", _kib(smax / 2), _kib(smax), f"of {_kib(m.sram_bytes)} per core (the fullest core: "
                                               f"{100 * smax / m.sram_bytes:.0f}%)")),
        ("fabric load per link", _colour(load, "inferno", lo, hi, log=True), "inferno",
         (f"{lo:.3g} B", f"{(lo * hi) ** 0.5:.3g} B", f"{hi:.3g} B", "per sample (log scale)")),
    ]
    owner_px = _scale(owner, px, step)  # kernel outlines, one pixel wide: where the next pixel is another kernel's
    edge = np.zeros_like(owner_px, dtype=bool)
    edge[:, :-1] |= owner_px[:, :-1] != owner_px[:, 1:]
    edge[:-1, :] |= owner_px[:-1, :] != owner_px[1:, :]
    edge &= owner_px >= 0
    images = [_scale(p[1], px, step) for p in panels]
    images[0][edge] = (images[0][edge] // 2 + 128).astype(np.uint8)  # halfway to white

    h, w = images[0].shape[:2]
    big, small = _font(max(16, min(30, w // 24))), _font(max(13, min(22, w // 36)))
    line_big, line_small = big.getbbox("Ag")[3] + 8, small.getbbox("Ag")[3] + 6
    bar_h = max(12, line_small)
    width = max(3 * w + 4 * MARGIN, 720)
    top = MARGIN + line_big + 6 + line_big  # the picture's title, then each panel's
    height = top + h + MARGIN + bar_h + 4 + 2 * line_small + MARGIN
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    group = shown_group(s)
    what = (f"{len(pl.rects)} kernels, {100 * pl.occupancy:.1f}% of the cores used" if group is None else
            f"weight streaming: layer {group.name} ({len(group.kernels)} kernels), one of {len(pl.groups)} groups")
    draw.text((MARGIN, MARGIN), f"{s.program.graph.name} on {m.name} ({m.rows}x{m.cols} cores), {what}"
              + (f" (every {step}th core shown)" if step > 1 else ""), fill="black", font=big)
    kernels = group.kernels if group is not None else range(len(pl.rects))
    labels = kernel_labels({k: _box(pl.rects[k], px, step) for k in kernels},
                           {k: s.program.kernels[k].name for k in kernels}, small)
    for i, ((title, _, cmap, (low, mid, high, unit)), image) in enumerate(zip(panels, images)):
        x = MARGIN + i * (w + MARGIN)
        draw.text((x, MARGIN + line_big + 6), title, fill="black", font=big)
        canvas.paste(Image.fromarray(np.ascontiguousarray(image)), (x, top))
        if i == 0:
            for label in labels:
                _write_label(canvas, x, top, label, image, small)
        bar = colormaps[cmap](np.linspace(0, 1, w), bytes=True)[:, :3]
        y = top + h + MARGIN
        canvas.paste(Image.fromarray(np.ascontiguousarray(np.repeat(bar[None], bar_h, 0))), (x, y))
        draw.rectangle((x, y, x + w - 1, y + bar_h - 1), outline=(120, 120, 120))
        draw.text((x, y + bar_h + 4), low, fill="black", font=small)
        draw.text((x + (w - draw.textlength(mid, font=small)) // 2, y + bar_h + 4), mid, fill="black", font=small)
        draw.text((x + w - draw.textlength(high, font=small), y + bar_h + 4), high, fill="black", font=small)
        draw.text((x, y + bar_h + 4 + line_small), unit, fill="black", font=small)
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", optimize=False)
    return buf.getvalue()
