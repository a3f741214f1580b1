"""Where the operands of the mesh GEMM live before the first cycle: each core's SRAM tile of W,
each row's stream of A, and the per-core constants of its task.

K is split over the grid's rows and N over its columns in contiguous blocks whose sizes differ by
at most one, the larger blocks first (``backends/blocks.py``, the split every kernel uses), so core (i, j) holds
``W[K_i, N_j]``. Arrays are padded to the largest block with zeros; a core never reads past its
own ``kt`` x ``nt``. A grid wider than the matrix (more rows than K, more columns than N) is cut to
``min(rows, k) x min(cols, n)``: the extra cores would hold nothing and idle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backends import assumptions as A
from ..backends.blocks import offsets, split
from ..backends.datapath import Datapath, as_datapath
from ..backends.gemm import element_cycles


def blocks(size: int, parts: int) -> tuple[np.ndarray, np.ndarray]:
    """Sizes and offsets of ``size`` split into ``parts`` contiguous blocks (``backends/blocks.py``)."""
    sizes = split(size, parts)
    return np.array(sizes, np.int64), np.array(offsets(sizes), np.int64)


@dataclass(frozen=True)
class Layout:
    m: int
    k: int
    n: int
    rows: int  # grid actually used: min(mesh rows, k)
    cols: int  # min(mesh cols, n)
    lanes: Datapath
    kt: np.ndarray  # (rows, cols) elements of K held by each core
    nt: np.ndarray  # (rows, cols) outputs (partial sums) per token of each core
    fmac_cycles: np.ndarray  # (rows, cols) datapath cycles to FMAC one A element (gemm.element_cycles)
    first_cycles: np.ndarray  # (rows, cols) the first element of a token also pays the task start
    # (rows, ktmax, n + ntmax) float32: row i's cores' W tiles side by side, core (i, j)'s being
    # w_panels[i, :kt, n_offsets[j]:][:, :nt] (zero padding below kt and right of n)
    w_panels: np.ndarray
    a_stream: np.ndarray  # (rows, m, ktmax) float32: A[t, K_i], row i's stream in injection order
    n_offsets: np.ndarray  # (cols,) first output column of each grid column

    @property
    def ktmax(self) -> int:
        return int(self.kt.max())

    @property
    def ntmax(self) -> int:
        return int(self.nt.max())


def layout(a: np.ndarray, w: np.ndarray, rows: int, cols: int, lanes: Datapath | float) -> Layout:
    m, k = a.shape
    k2, n = w.shape
    if k != k2:
        raise ValueError(f"inner dimensions differ: A is {m}x{k}, W is {k2}x{n}")
    lanes = as_datapath(lanes)
    if min(m, k, n) < 1 or min(rows, cols) < 1 or lanes.lanes <= 0:
        raise ValueError("m, k, n, rows, cols and lanes must be positive")
    rows, cols = min(rows, k), min(cols, n)
    ks, koff = blocks(k, rows)
    ns, noff = blocks(n, cols)
    ktmax, ntmax = int(ks[0]), int(ns[0])
    kt = np.repeat(ks[:, None], cols, axis=1).astype(np.int32)
    nt = np.repeat(ns[None, :], rows, axis=0).astype(np.int32)
    per_col = np.array([element_cycles(int(x), lanes) for x in ns], np.int32)
    fmac = np.repeat(per_col[None, :], rows, axis=0)

    # K and N indices of every tile slot, with a validity mask for the padding.
    kidx = koff[:, None] + np.arange(ktmax)[None, :]  # (rows, ktmax)
    kval = np.arange(ktmax)[None, :] < ks[:, None]
    kidx_c = np.minimum(kidx, k - 1)
    w32 = np.asarray(w, np.float32)
    panels = np.zeros((rows, ktmax, n + ntmax), np.float32)
    panels[:, :, :n] = w32[kidx_c] * kval[:, :, None]
    a32 = np.asarray(a, np.float32)
    stream = (a32[:, kidx_c] * kval[None]).transpose(1, 0, 2)  # (rows, m, ktmax)
    return Layout(
        m=m, k=k, n=n, rows=rows, cols=cols, lanes=lanes, kt=kt, nt=nt, fmac_cycles=fmac,
        first_cycles=fmac + A.TASK_OVERHEAD_CYCLES,
        w_panels=panels, a_stream=np.ascontiguousarray(stream), n_offsets=noff,
    )
