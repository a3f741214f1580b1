"""The tile-level time of the mesh GEMM that layer-pipelined kernels use, and that the PE-level
simulator (runtime/pe_sim.py) executes wavelet by wavelet.

The algorithm: weight-stationary, row-broadcast, column-reduce. ``C[m, n] = A[m, k] @ W[k, n]`` on
an ``rows x cols`` rectangle. K is split over rows and N over columns in contiguous blocks whose
sizes differ by at most one, so core (i, j) holds the tile ``W[K_i, N_j]`` (``kt x nt`` at most).
The rows of A (tokens) stream in one after another: ``A[m, K_i]`` enters at the west edge of
row i and is multicast east along the row, one element per wavelet. Each core multiplies each
arriving element into its ``nt`` partial sums (``ceil(nt / lanes)`` cycles per element). The
partial sums of a token then flow south down each column: core (i, j) adds the partial vector
arriving from the north to its own and forwards it; row ``rows - 1`` emits ``C[m, N_j]`` at the
south edge. A GEMV is the case m = 1.

Tokens pipeline through the rectangle, so the steady cost of a token is the slowest of its
per-core stages (compute, the row's input stream, the column's partial-sum stream), and the
first token also pays the fill: the multicast crossing the row and the partial sums crossing
the column.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from . import assumptions as A


@dataclass(frozen=True)
class GemmTime:
    step: int  # cycles per token in steady state
    fill: int  # extra cycles of the first token (latency through the rectangle)
    tokens: int

    @property
    def total(self) -> int:
        return self.fill + self.tokens * self.step


def block(size: int, parts: int) -> int:
    """The largest block when ``size`` is split into ``parts`` contiguous blocks."""
    return ceil(size / parts)


def gemm_time(m: int, k: int, n: int, rows: int, cols: int, lanes: float) -> GemmTime:
    rows, cols = min(rows, k), min(cols, n)  # a rectangle wider than the matrix idles its extra cores
    kt, nt = block(k, rows), block(n, cols)
    per_elem = ceil(nt / lanes)
    compute = kt * per_elem + per_elem + A.TASK_OVERHEAD_CYCLES  # FMACs, then the add of the partials
    in_stream = ceil(kt / A.ELEMENTS_PER_WAVELET)  # wavelets of A into each core per token
    out_stream = ceil(nt / A.ELEMENTS_PER_WAVELET)  # wavelets of partial sums per token per column
    step = max(compute, in_stream, out_stream)
    fill = (cols - 1 + rows - 1) * A.HOP_CYCLES + 2 * A.ROUTER_DELAY_CYCLES + (rows - 1) * per_elem
    return GemmTime(step=step, fill=fill, tokens=m)
