"""How a dimension is cut into contiguous blocks over the rows or columns of a rectangle: one
rule for the kernels' costs, the PE-level simulator's layout and the placed numerics.

``size`` elements over ``parts`` blocks: sizes differ by at most one, the larger blocks first (as
``numpy.array_split``), so 13 over 3 is [5, 4, 4]. A block may also carry ``tail`` units of other
work that its last block does (a fused kernel's epilogue, done by the row that holds the finished
sums): the split is then that of ``size + tail``, with the last block short by ``tail`` (and any
shortfall beyond it taken from the blocks before), so every block's work stays balanced.
"""

from __future__ import annotations

from math import ceil


def split(size: int, parts: int, tail: int = 0) -> list[int]:
    if parts < 1 or size < 0 or tail < 0:
        raise ValueError(f"cannot split {size} (+{tail}) into {parts} blocks")
    total = size + tail
    sizes = [total // parts + (1 if i < total % parts else 0) for i in range(parts)]
    short, i = tail, parts - 1
    while short > 0:
        take = min(sizes[i], short)
        sizes[i] -= take
        short -= take
        i -= 1
    return sizes


def offsets(sizes: list[int]) -> list[int]:
    out, at = [], 0
    for s in sizes:
        out.append(at)
        at += s
    return out


def slices(size: int, parts: int, tail: int = 0) -> list[slice]:
    """The blocks of ``split`` as slices, empty ones dropped."""
    sizes = split(size, parts, tail)
    return [slice(o, o + s) for o, s in zip(offsets(sizes), sizes) if s > 0]


def block(size: int, parts: int) -> int:
    """The largest block when ``size`` is split into ``parts``."""
    return ceil(size / parts)
