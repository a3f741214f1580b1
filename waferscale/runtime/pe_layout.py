"""Where the operands of the mesh GEMM live before the first cycle: each core's SRAM tile of W,
each row's stream of A, and the per-core constants of its task.

K is split over the grid's rows and N over its columns in contiguous blocks whose sizes differ by
at most one, the larger blocks first (``backends/blocks.py``, the split every kernel uses), so core (i, j) holds
``W[K_i, N_j]``. Arrays are padded to the largest block with zeros; a core never reads past its
own ``kt`` x ``nt``. A grid wider than the matrix (more rows than K, more columns than N) is cut to
``min(rows, k) x min(cols, n)``: the extra cores would hold nothing and idle.

A sparse weight (``mask``) is held as ``backends/sparse.py`` stores it: per core tile, only its
non-zeros. The cost of an A element is then per core and per element: ``sparse.row_cycles`` of the
non-zeros in that row of the core's tile (``element_cycles``: an indexed AXPY over them, the dense
AXPY where the row is too full to be worth its indices, ``sparse.dense_row``, or the skip of an
empty row), where a dense core pays the same ``gemm.element_cycles(nt)`` for every element
(``fmac_cycles``). The tiles keep the masked values
(zeros where the mask is off): a product with a zero adds nothing to a sum, so C is the product of
the non-zeros only, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backends import assumptions as A
from ..backends.blocks import offsets, split
from ..backends.datapath import Datapath, as_datapath
from ..backends.gemm import element_cycles
from ..backends.sparse import dense_row, row_cycles


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
    # (rows, ktmax, n) float32: row i's cores' W tiles side by side, core (i, j)'s being
    # w_panels[i, :kt, n_offsets[j]:][:, :nt] (zero padding below kt; a view of W where K splits evenly)
    w_panels: np.ndarray
    a_stream: np.ndarray  # (rows, m, ktmax) float32: A[t, K_i], row i's stream in injection order
    n_offsets: np.ndarray  # (cols,) first output column of each grid column
    # sparse only: (rows, cols, ktmax) datapath cycles of each element of each core's tile
    # (``sparse.row_cycles`` of its row's non-zeros; 0 past kt); (rows, cols) non-zeros per tile and
    # the tile's SRAM bytes (as ``sparse.row_bytes``, in f32 words as the rest of the PE level)
    element_cycles: np.ndarray | None = None
    nnz: np.ndarray | None = None
    tile_bytes: np.ndarray | None = None

    @property
    def sparse(self) -> bool:
        return self.element_cycles is not None

    @property
    def peak_cycles(self) -> int:
        """The most datapath cycles one A element can take, the task start included."""
        top = self.element_cycles.max() if self.sparse else self.fmac_cycles.max()
        return int(top) + self.lanes.costs.task_start

    @property
    def ktmax(self) -> int:
        return int(self.kt.max())

    @property
    def ntmax(self) -> int:
        return int(self.nt.max())


def layout(a: np.ndarray, w: np.ndarray, rows: int, cols: int, lanes: Datapath | float,
           mask: np.ndarray | None = None) -> Layout:
    """``mask``: bool, W's shape: the weight is sparse, its non-zeros where ``mask`` is set."""
    m, k = a.shape
    k2, n = w.shape
    if k != k2:
        raise ValueError(f"inner dimensions differ: A is {m}x{k}, W is {k2}x{n}")
    if mask is not None and np.shape(mask) != (k, n):
        raise ValueError(f"the mask is {'x'.join(map(str, np.shape(mask)))} and W is {k}x{n}: give one of W's shape")
    lanes = as_datapath(lanes)
    if min(m, k, n) < 1 or min(rows, cols) < 1 or lanes.lanes <= 0:
        raise ValueError("m, k, n, rows, cols and lanes must be positive")
    rows, cols = min(rows, k), min(cols, n)
    ks, koff = blocks(k, rows)
    ns, noff = blocks(n, cols)
    ktmax = int(ks[0])
    kt = np.repeat(ks[:, None], cols, axis=1).astype(np.int32)
    nt = np.repeat(ns[None, :], rows, axis=0).astype(np.int32)
    per_col = np.select([ns == x for x in np.unique(ns)], [element_cycles(int(x), lanes) for x in np.unique(ns)])
    fmac = np.repeat(per_col.astype(np.int32)[None, :], rows, axis=0)  # sparse: unused but for a dense core's report

    w32 = np.asarray(w, np.float32)
    sparse = {}
    if mask is not None:
        # K and N indices of every tile slot, with a validity mask for the padding.
        kidx = np.minimum(koff[:, None] + np.arange(ktmax)[None, :], k - 1)  # (rows, ktmax)
        kval = np.arange(ktmax)[None, :] < ks[:, None]
        mask = np.asarray(mask, bool)
        w32 = np.where(mask, w32, np.float32(0))
        sparse = tile_costs(mask, kidx, kval, np.append(noff, n), ns, lanes)
    panels, stream = _by_rows(w32, ks), _by_rows(np.asarray(a, np.float32).T, ks).transpose(0, 2, 1)
    first = sparse["element_cycles"][:, :, 0] if sparse else fmac
    return Layout(
        m=m, k=k, n=n, rows=rows, cols=cols, lanes=lanes, kt=kt, nt=nt, fmac_cycles=fmac,
        first_cycles=first + lanes.costs.task_start,
        w_panels=panels, a_stream=np.ascontiguousarray(stream), n_offsets=noff, **sparse,
    )


def _by_rows(x: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """(rows, ktmax, ...): the K blocks of ``x`` (K first), zero padded below a shorter block; a
    view of ``x`` where the blocks are all as long (the larger blocks come first)."""
    ktmax, r1 = int(ks[0]), int(np.count_nonzero(ks == ks[0]))
    if r1 == len(ks):
        return np.ascontiguousarray(x).reshape(r1, ktmax, *x.shape[1:])
    out = np.zeros((len(ks), ktmax, *x.shape[1:]), x.dtype)
    out[:r1] = x[:r1 * ktmax].reshape(r1, ktmax, *x.shape[1:])
    out[r1:, :ktmax - 1] = x[r1 * ktmax:].reshape(len(ks) - r1, ktmax - 1, *x.shape[1:])
    return out


def tile_costs(mask: np.ndarray, kidx: np.ndarray, kval: np.ndarray, n_at: np.ndarray, ns: np.ndarray,
               dp: Datapath) -> dict:
    """Per core, the cycles of each element of its tile (``sparse.row_cycles`` of the non-zeros of
    that row of the tile, ``ns[j]`` wide; 0 in the padding past ``kt``), the tile's non-zeros and its
    bytes. ``kidx``, ``kval``: (rows, ktmax) the K index of each tile row and whether it is one;
    ``n_at``: the columns' bounds."""
    prefix = np.zeros((mask.shape[0], mask.shape[1] + 1), np.int64)
    np.cumsum(mask, axis=1, out=prefix[:, 1:])
    per_row = prefix[:, n_at[1:]] - prefix[:, n_at[:-1]]  # (k, cols) non-zeros of each tile row
    counts = per_row[kidx] * kval[:, :, None]  # (rows, ktmax, cols)
    nt = ns[None, None, :]
    cyc = np.where(kval[:, :, None], row_cycles(counts, dp, nt), 0)
    cyc = cyc.transpose(0, 2, 1).astype(np.uint32 if int(cyc.max()) >> 16 else np.uint16)
    # in f32 words, as the PE level counts every tile; a row is stored dense as ``row_cycles`` costs it
    words = np.where(dense_row(counts, nt, dp.elem), 4 * nt, counts * (4 + A.SPARSE_INDEX_BYTES))
    tile = np.where(kval[:, :, None], words + A.SPARSE_ROW_BYTES, 0).sum(axis=1)
    return {"element_cycles": np.ascontiguousarray(cyc), "nnz": counts.sum(axis=1), "tile_bytes": tile}
