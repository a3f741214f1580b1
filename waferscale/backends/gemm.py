"""The tile-level time of the mesh GEMM that layer-pipelined kernels use, and that the PE-level
simulator (runtime/pe_sim.py) executes wavelet by wavelet.

The algorithm: weight-stationary, row-broadcast, column-reduce. ``C[m, n] = A[m, k] @ W[k, n]`` on
an ``rows x cols`` rectangle. K is split over rows and N over columns in contiguous blocks whose
sizes differ by at most one (larger blocks first; ``blocks.py``), so core (i, j) holds the tile ``W[K_i, N_j]``
(``kt x nt`` at most). The rows of A (tokens) stream in one after another: ``A[m, K_i]`` enters at
the west edge of row i and is multicast east along the row, one element per wavelet. Each core
multiplies each arriving element into its ``nt`` partial sums (``ceil(nt / lanes)`` cycles per
element; the first element of a token also pays the task start). The partial sums of a token then
flow south down each column, one wavelet per cycle: core (i, j) adds each partial sum arriving
from the north to its own and forwards it; row ``rows - 1`` emits ``C[m, N_j]`` at the south edge.
Partial sums are double buffered, so the next token's FMACs overlap the reduce, but both use the
core's datapath. A GEMV is the case m = 1.

The time, as the PE-level simulator measures it (benchmarks/results/fidelity.md holds the check):

- ``step``, the cycles per token in steady state: the busiest core's datapath, i.e. the task start,
  ``kt`` FMACs of ``ceil(nt / lanes)`` cycles, and ``nt`` add-and-forwards of one cycle each. The
  streams are never the bound: a row's input stream carries ``kt`` wavelets per token and a
  column's partial-sum stream ``nt``, each at one wavelet per cycle.
- ``fill``, the latency of the first token beyond its step: the A stream reaching the last column
  (one hop per column, plus the injector, ramp and sink stages) and the partial sums descending
  the column, three cycles per row (hop, ramp to the core, add-and-forward onto the ramp). When N
  does not divide evenly, the narrower last columns finish a little earlier per token, which the
  fill accounts for.

Fix against the PE level (issue 4): the first model charged the add of the partial sums as one
SIMD pass (``ceil(nt / lanes)`` cycles) and the column descent as one hop per row; the partial sums
arrive one wavelet per cycle, so the add-and-forward costs ``nt`` datapath cycles per token, and
each row of the descent costs a hop, a ramp and the add (3 cycles), not ``ceil(nt / lanes)``.
On the 26 cases of benchmarks/fidelity.py the old model was off by 27% on average: up to 25% low
on GEMMs (the missing ``nt`` per token) and up to 233% high on GEMVs down deep columns with wide
tiles (the fill); the model below is within 1.5%.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from . import assumptions as A
from .blocks import block
from .datapath import Datapath, as_datapath


@dataclass(frozen=True)
class GemmTime:
    step: int  # cycles per token in steady state
    fill: int  # extra cycles of the first token (latency through the rectangle)
    tokens: int

    @property
    def total(self) -> int:
        return self.fill + self.tokens * self.step


def element_cycles(nt: int, dp: Datapath) -> int:
    """Datapath cycles to multiply one arriving element of A into ``nt`` partial sums: one AXPY,
    at the slowest of the lanes and the SRAM ports (``datapath.py``), plus the vector
    instruction's own overhead (``VECTOR_OP_CYCLES``, calibrated)."""
    return dp.axpy(nt) + A.VECTOR_OP_CYCLES


def _core_step(kt: int, nt: int, dp: Datapath) -> int:
    """Datapath cycles per token of a core holding a ``kt x nt`` tile."""
    return A.TASK_OVERHEAD_CYCLES + kt * element_cycles(nt, dp) + nt * A.PARTIAL_SUM_CYCLES


def gemm_time(m: int, k: int, n: int, rows: int, cols: int, lanes: Datapath | float) -> GemmTime:
    """``lanes``: the core's datapath for the dtype (``Machine.datapath``), or a bare lane rate
    with f16 operands and accumulators."""
    lanes = as_datapath(lanes)
    rows, cols = min(rows, k), min(cols, n)  # a rectangle wider than the matrix idles its extra cores
    kt, nt = block(k, rows), block(n, cols)
    step = max(_core_step(kt, nt, lanes),
               ceil(kt / A.ELEMENTS_PER_WAVELET),  # wavelets of A into each core per token
               ceil(nt / A.ELEMENTS_PER_WAVELET))  # wavelets of partial sums per token per column
    # The last column is the latest to see A; if N splits unevenly its narrower tiles finish
    # earlier per token, and the last wide column (index n % cols - 1) may be the later one.
    wide = n % cols or cols
    lag = cols - 1 - m * (step - _core_step(kt, n // cols, lanes)) if wide < cols else cols - 1
    last = max(wide - 1, lag) * A.HOP_CYCLES
    edges = 2 * A.HOP_CYCLES + A.RAMP_CYCLES  # injector -> first router -> core; last router -> south edge
    descent = (rows - 1) * (A.HOP_CYCLES + A.RAMP_CYCLES + A.PARTIAL_SUM_CYCLES)
    fill = last + edges + descent
    return GemmTime(step=step, fill=fill, tokens=m)
