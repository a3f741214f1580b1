"""The tile-level time of the streamed-weight (activation-stationary) GEMM that weight-streaming mode
uses for sparse weights (``kernels/streamed.py``), and that the PE-level simulator
(``runtime/pe_streamed.py``) executes wavelet by wavelet.

The algorithm: ``C[M, N] = A[M, K] @ W[K, N]`` with A resident and W flowing through. K is cut into
``kp`` parts and the tokens M into ``mp`` parts (``blocks.split``); the core of K part i and M part
j holds ``A[M_j, K_i]`` (``kt x mt``, stored K-major so that a column of A is one vector). The
weights stream in output column by output column: for column n, part i's stream is one header
wavelet (the column's count of non-zeros: it starts the column's task) and then each non-zero of
``W[K_i, n]`` as one sparse wavelet (16-bit index, 16-bit value: ``assumptions.SPARSE_INDEX_BYTES``),
multicast along the M parts. A zero is never sent, stored or multiplied. Each arriving non-zero
``w[k, n]`` is one AXPY of the core's ``mt`` tokens, ``acc[0:mt] += w * A[M_j, k]`` (an indexed
read of A's column k, ``datapath.Datapath.axpy``, plus the instruction's issue cost). When a
column's non-zeros are done, its ``mt`` partial sums are reduced along the K parts in a chain, one
wavelet per cycle, as the weight-stationary GEMM reduces down a column (``gemm.py``), and the last
K part emits ``C[M_j, n]``. ``ACC_BUFFERS`` columns may be in flight on a core, so a core runs
ahead of the chain by that many columns.

So the work of a core over one pass is ``core_cycles``: per output column a task start and the
add-and-forward of ``mt`` partial sums, per non-zero one AXPY over ``mt`` tokens. The issue cost
of an AXPY is paid per non-zero and amortised over the core's tokens, so skipping zeros removes
work in proportion; the chain's ``mt`` cycles per column do not shrink with the density. The slowest
core (the K part with the most non-zeros) paces the mesh: the row multicast and the chain hold the
others to it.

The tokens of a pass are all resident: a core holds at most ``A_BLOCK_BYTES`` of A, so a bigger batch
takes several passes, each streaming the whole weight again (from the layer's weight buffer on the
wafer; the I/O streams it in once, ``runtime/stream_sim.py``).

Mapped onto a kernel's rectangle (``kernels/streamed.py``): the tokens over the rows and K over the
columns (the placer varies the widths of its bands, and K's parts are what the trade-off turns on).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import ceil, sqrt

import numpy as np

from .blocks import block, split
from .datapath import Datapath, as_datapath
from .machine import WSE2, Machine
from .sparse import expected_max_z

# Output columns whose partial sums a core keeps at once (its accumulators, mt each): our kernel's
# choice, not a machine figure. More lets a core run further ahead of the chain when the non-zeros of a
# column fall unevenly over the K parts. With four, the tile model (which takes the busiest K part's
# total as the pace) is within 1.1% of the PE level on the 24 random shapes of
# benchmarks/streamed_gemm.py, and within 3.2% on the shapes we tried by hand.
ACC_BUFFERS = 4
# The most bytes of A one core holds in a pass (a third of a WSE-2 core's 48 KB): our kernel's choice.
A_BLOCK_BYTES = 16 * 1024


def wavelet_cycles(mt: int, dp: Datapath) -> int:
    """Datapath cycles of one arriving non-zero: ``acc[0:mt] += w * a[0:mt]`` over the core's tokens
    (a scalar weight needs no dequantise), plus the vector instruction's issue cost."""
    return replace(dp, quant=0.0).axpy(mt) + dp.costs.vector_issue


def core_cycles(nnz, columns: int, mt: int, dp: Datapath):
    """The cost formula (one place, to be re-priced with the cost table): datapath cycles of a core
    over one pass that sees ``nnz`` non-zeros of ``columns`` output columns with ``mt`` tokens: per
    column a task start (its header wavelet) and the add-and-forward of its ``mt`` partial sums, per
    non-zero one AXPY (``wavelet_cycles``)."""
    return columns * (dp.costs.task_start + mt * dp.costs.psum_add) + np.asarray(nnz) * wavelet_cycles(mt, dp)


@dataclass(frozen=True)
class StreamedTime:
    passes: int
    pass_cycles: int  # one pass, its fill included
    tokens: int  # all of them (every sample's)

    @property
    def total(self) -> int:
        return self.passes * self.pass_cycles


def part_nonzeros(sw, ks: list[int], n: int) -> np.ndarray | tuple[float, float]:
    """Non-zeros of each K part's rows of W (``ks`` rows each): exact from a mask (an array), or in
    distribution (``(mean, deviation)`` of the part with the most rows); a dense weight: all."""
    if sw is None:
        return np.array(ks, dtype=np.int64) * n
    if sw.exact:
        per_row = np.concatenate([[0], np.cumsum(sw.mask.sum(axis=1))])
        at = np.concatenate([[0], np.cumsum(ks)])
        return per_row[at[1:]] - per_row[at[:-1]]
    cells = max(ks) * n
    return cells * sw.density, sqrt(cells * sw.density * (1 - sw.density))


def passes_for(m: int, mp: int, kt: int, elem: int, a_block: int = A_BLOCK_BYTES) -> tuple[int, int]:
    """(passes, tokens per core per pass) of ``m`` tokens over ``mp`` parts when a core holds at most
    ``a_block`` bytes (``A_BLOCK_BYTES`` unless the placement needs less) of its ``kt``-element slices of A."""
    cap = max(1, a_block // max(1, kt * elem))
    full = block(m, mp)
    passes = ceil(full / cap)
    return passes, ceil(full / passes)


def epilogue_split(k: int, kp: int, tail: int, density: float) -> tuple[list[int], np.ndarray]:
    """K's rows per part, and each part's AXPYs of epilogue work per column: ``tail`` AXPYs per column
    weigh ``tail / density`` rows of K (a row of K is ``density`` AXPYs per column), which the split
    balances as the weight-stationary kernel does (``blocks.split``), charged to the parts it leaves
    short, ``density`` AXPYs per row they lack."""
    weight = ceil(tail / density) if tail else 0
    ks = split(k, kp, weight)
    return ks, (np.array(split(k + weight, kp)) - np.array(ks)) * density


def streamed_time(m: int, k: int, n: int, kp: int, mp: int, dp: Datapath | float, sw=None, *, tail: int = 0,
                  head: int = 0, machine: Machine = WSE2, a_block: int = A_BLOCK_BYTES) -> StreamedTime:
    """The time of ``m`` tokens on ``kp`` K parts by ``mp`` M parts (cut to the matrix). ``sw``: the
    sparse weight (``sparse.SparseWeight``, ``k x n``), None when dense; ``tail`` units of epilogue work
    on the last K part per column (each an AXPY, as the weight-stationary kernel counts them),
    ``machine`` the fabric's hop and ramp cycles,
    ``head`` statistics columns (a folded norm: dense columns of K). A pass ends when the latest core's
    last column has been reduced down the K parts below it: its work (``core_cycles``), ``j`` hops for
    the weights to reach M part j, 3 cycles per K part below (hop, ramp, add), and the edges' stages."""
    dp = as_datapath(dp)
    kp, mp = max(1, min(kp, k + tail)), max(1, min(mp, m))
    ks, units = epilogue_split(k, kp, tail, 1.0 if sw is None else sw.density)
    passes, mt = passes_for(m, mp, max(ks), dp.elem, a_block)
    cols = n + head
    extra = units * n + head * np.array(ks)  # dense work per K part: the epilogue and the statistics
    below = (kp - 1 - np.arange(kp)) * (machine.hop_cycles + machine.ramp_cycles + dp.costs.psum_add)
    nz = part_nonzeros(sw, ks, n)
    if isinstance(nz, tuple):  # in distribution: the expected most of the parts' draws
        mean, sd = nz
        busiest = mean + expected_max_z(kp) * sd + float(extra.max())
        work = core_cycles(busiest, cols, mt, dp) + float(below.max())
        stream = busiest + cols
    else:
        work = float(np.ceil(core_cycles(nz + extra, cols, mt, dp) + below).max())
        stream = float((nz + extra).max() + cols)  # wavelets into a K part, one per cycle
    edges = 2 * machine.hop_cycles + machine.ramp_cycles
    per_pass = max(work + (mp - 1) * machine.hop_cycles, stream, cols * mt) + edges
    return StreamedTime(passes=passes, pass_cycles=ceil(per_pass), tokens=m)


__all__ = ["ACC_BUFFERS", "A_BLOCK_BYTES", "StreamedTime", "core_cycles", "epilogue_split", "part_nonzeros",
           "passes_for", "streamed_time", "wavelet_cycles"]
