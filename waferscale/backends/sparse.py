"""Unstructured weight sparsity on the mesh GEMM: the compressed format, and each core's work from
its own tile's non-zeros.

The GEMM (``gemm.py``) keeps ``W[K_i, N_j]`` on core (i, j). A sparse weight keeps, per tile, only
its non-zeros: each value with a 16-bit column index, and per tile row its count of non-zeros
(``assumptions.SPARSE_INDEX_BYTES``, ``SPARSE_ROW_BYTES``). When element ``k`` of a token's A
arrives, the core runs one indexed AXPY over the non-zeros of row ``k`` of its tile
(``Datapath.sparse_axpy``, plus the instruction's ``VECTOR_OP_CYCLES``), or drops the element in
``SPARSE_SKIP_CYCLES`` when that row holds none. So a core's cycles per token are its own:

    TASK_OVERHEAD_CYCLES + sum over its tile rows of row_cycles(nnz of the row) + nt * PARTIAL_SUM_CYCLES

and the slowest core (the one with the most work, not the most weights) paces the rectangle: load
imbalance appears by itself. A rectangle whose tiles are too full to gain (an f16 non-zero costs
twice a dense weight's port time, for its index) runs the dense loop instead: the kernel picks
the faster per rectangle (``kernels/matmul.py``), so sparsity never slows a kernel down.

Where the mask comes from (``SparseWeight``): a weight with data is pruned by magnitude
(``passes/sparsify.py``) and its mask is exact; a meta-device weight up to
``SPARSE_DRAW_LIMIT`` elements has its seeded random mask drawn here; a bigger one is drawn only in
distribution (each tile row's count is binomial, and the slowest of C cores is taken at the
expected maximum of C draws of a core's work: a normal approximation). The two are held to each
other in ``benchmarks/fidelity.py``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from math import ceil, log, sqrt
from statistics import NormalDist

import numpy as np

from . import assumptions as A
from .blocks import offsets, split
from .datapath import Datapath


def dense_row(nnz, nt: int, elem: int) -> np.ndarray:
    """Whether a tile row of ``nt`` weights holding ``nnz`` non-zeros is stored dense: when its
    values and indices would take no fewer bytes than its ``nt`` values (a rule of bytes alone, so
    it needs no machine; a row stored sparse is then never slower either, ``row_cycles``)."""
    return np.asarray(nnz) * (elem + A.SPARSE_INDEX_BYTES) >= nt * elem


def row_cycles(nnz, dp: Datapath, nt=None) -> np.ndarray:
    """Datapath cycles to multiply one arriving element of A into a tile row of ``nt`` weights
    holding ``nnz`` non-zeros: dropped if it has none, else one AXPY, indexed
    (``Datapath.sparse_axpy``) where the row is stored sparse, over all ``nt`` where it is stored
    dense, plus the instruction's ``VECTOR_OP_CYCLES``. Never more than the dense loop's cycles."""
    nnz = np.asarray(nnz, dtype=np.int64)
    coded_dense = False if nt is None else dense_row(nnz, nt, dp.elem)  # nt None: every row stored sparse
    nt = np.broadcast_to(np.asarray(nnz if nt is None else nt, dtype=np.int64), nnz.shape)
    sparse = np.maximum.reduce([np.ceil(nnz / dp.lanes), np.ceil(nnz * (dp.elem + A.SPARSE_INDEX_BYTES) / dp.port),
                                np.ceil(nnz * dp.acc / dp.port)])
    dense = np.maximum.reduce([np.ceil(nt / dp.lanes), np.ceil(nt * dp.elem / dp.port), np.ceil(nt * dp.acc / dp.port)])
    run = np.where(coded_dense, dense, sparse).astype(np.int64) + A.VECTOR_OP_CYCLES
    return np.where(nnz == 0, A.SPARSE_SKIP_CYCLES, run)


def row_bytes(nnz, nt: int, elem: int) -> np.ndarray:
    """SRAM bytes of a tile row: its count of non-zeros, and its values (with their indices where
    it is stored sparse)."""
    nnz = np.asarray(nnz, dtype=np.int64)
    values = np.where(dense_row(nnz, nt, elem), nt * elem, nnz * (elem + A.SPARSE_INDEX_BYTES))
    return A.SPARSE_ROW_BYTES + values


def row_index_bytes(nnz, nt: int, elem: int) -> np.ndarray:
    """Bytes of a tile row's structure alone (its count, and its indices where it is stored sparse):
    what a sparse weight's gradient kernel needs of the weight to make only the kept entries."""
    nnz = np.asarray(nnz, dtype=np.int64)
    return A.SPARSE_ROW_BYTES + np.where(dense_row(nnz, nt, elem), 0, nnz * A.SPARSE_INDEX_BYTES)


def expected_max_z(cores: int) -> float:
    """The expected maximum of ``cores`` standard normal draws (Blom's approximation; 0 for one)."""
    return NormalDist().inv_cdf((cores - 0.375) / (cores + 0.25)) if cores > 1 else 0.0


@lru_cache(maxsize=1024)
def binomial_pmf(n: int, p: float) -> np.ndarray:
    x = np.arange(n + 1)
    if p >= 1.0:
        return (x == n).astype(float)
    if p <= 0.0:
        return (x == 0).astype(float)
    # log C(n, x) by its ratios: C(n, x + 1) / C(n, x) = (n - x) / (x + 1)
    logc = np.concatenate([[0.0], np.cumsum(np.log((n - x[:-1]) / (x[:-1] + 1.0)))])
    return np.exp(logc + x * log(p) + (n - x) * log(1 - p))


def draw_mask(k: int, n: int, density: float, seed: int, name: str) -> np.ndarray:
    """A seeded random mask with exactly ``round(density * k * n)`` non-zeros, the same for the same
    (seed, weight name, shape)."""
    total = k * n
    nnz = min(total, max(0, round(density * total)))
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    mask = np.zeros(total, dtype=bool)
    if nnz:
        mask[rng.permutation(total)[:nnz]] = True
    return mask.reshape(k, n)


@dataclass(frozen=True, eq=False)
class SparseWeight:
    """One sparse weight, in the kernel's orientation (``k x n``: K over rows, N over columns)."""

    name: str
    k: int
    n: int
    density: float  # non-zeros / (k * n)
    mask: np.ndarray | None = None  # bool [k, n]; None: drawn in distribution only
    _prefix: dict = field(default_factory=dict, repr=False)
    _cache: dict = field(default_factory=dict, repr=False)

    def __eq__(self, other):  # a mask is compared by identity; a distribution by its parameters
        if not isinstance(other, SparseWeight):
            return NotImplemented
        if self.mask is None and other.mask is None:
            return (self.k, self.n, self.density) == (other.k, other.n, other.density)
        return self is other

    def __hash__(self):
        return hash((self.k, self.n, self.density)) if self.mask is None else id(self)

    @property
    def exact(self) -> bool:
        return self.mask is not None

    @property
    def nnz(self) -> int:
        return int(self.mask.sum()) if self.mask is not None else round(self.density * self.k * self.n)

    def stored_bytes(self, elem: int) -> int:
        """Bytes of the compressed weight as it streams in: each row of K encoded whole (``row_bytes``
        over all ``n``; a tiling encodes each tile row apart, which is never more)."""
        if self.exact:
            return int(row_bytes(self.mask.sum(axis=1), self.n, elem).sum())
        per_row = binomial_pmf(self.n, self.density) @ row_bytes(np.arange(self.n + 1), self.n, elem)
        return round(self.k * float(per_row))

    def index_bytes(self, elem: int) -> int:
        """Bytes of the compressed weight's structure without its values (``row_index_bytes``)."""
        if self.exact:
            return int(row_index_bytes(self.mask.sum(axis=1), self.n, elem).sum())
        per_row = binomial_pmf(self.n, self.density) @ row_index_bytes(np.arange(self.n + 1), self.n, elem)
        return round(self.k * float(per_row))

    def accumulate(self, rows: int, cols: int, dp: Datapath) -> int:
        """Cycles per token of the slowest core of a weight gradient's kernel (``kernels/grads.py``
        Accumulate) on a ``rows x cols`` rectangle: per tile row, one AXPY into the row's kept
        accumulators, its ``dy`` elements gathered by the weight's indices (the forward's
        ``row_cycles``: a row with none is skipped), plus the task's overhead."""
        key = ("accumulate", rows, cols, dp)
        cache = self._cache if self.exact else _SHARED.setdefault((self.k, self.n, self.density), {})
        if key not in cache:
            cache[key] = ceil(A.TASK_OVERHEAD_CYCLES + self._slowest(
                rows, cols, 0, 0, lambda c, nt: row_cycles(c, dp, nt), np.zeros(cols), np.zeros(rows)))
        return cache[key]

    def _row_prefix(self) -> np.ndarray:
        """Per row, the running count of non-zeros along N ([k, n + 1]), kept once."""
        if "p" not in self._prefix:
            dt = np.uint16 if self.n < 2 ** 16 else np.uint32
            p = np.zeros((self.k, self.n + 1), dtype=dt)
            np.cumsum(self.mask, axis=1, dtype=dt, out=p[:, 1:])
            self._prefix["p"] = p
        return self._prefix["p"]

    def tile(self, rows: int, cols: int, dp: Datapath, tail: int = 0, head: int = 0, tail_cycles: int = 0) -> int:
        """Cycles per token of the slowest core on a ``rows x cols`` rectangle (already cut to the
        matrix). As in the dense kernel (``kernels/matmul.py``), the N split carries ``head``
        statistics columns on column 0, which count as non-zeros, and the K split ``tail`` units of
        epilogue work of ``tail_cycles`` each per token, charged as the dense model charges them: to
        the rows the split leaves short of K, one unit for each element they lack."""
        key = ("cycles", rows, cols, dp, tail, head, tail_cycles)
        cache = self._cache if self.exact else _SHARED.setdefault((self.k, self.n, self.density), {})
        if key not in cache:
            outs = np.array(split(self.n, cols, head)[::-1]) + np.array([head] + [0] * (cols - 1))
            units = np.array(split(self.k + tail, rows)) - np.array(split(self.k, rows, tail))
            cache[key] = ceil(A.TASK_OVERHEAD_CYCLES + self._slowest(
                rows, cols, tail, head, lambda c, nt: row_cycles(c, dp, nt), outs * A.PARTIAL_SUM_CYCLES,
                units * tail_cycles))
        return cache[key]

    def tile_bytes(self, rows: int, cols: int, elem: int, tail: int = 0, head: int = 0) -> int:
        """SRAM bytes of the fullest core's tile (``row_bytes`` over its rows)."""
        key = ("bytes", rows, cols, elem, tail, head)
        cache = self._cache if self.exact else _SHARED.setdefault((self.k, self.n, self.density), {})
        if key not in cache:
            cache[key] = ceil(self._slowest(rows, cols, tail, head, lambda c, nt: row_bytes(c, nt, elem),
                                            np.zeros(cols), np.zeros(rows)))
        return cache[key]

    def _slowest(self, rows, cols, tail, head, per_row, per_col, per_rank) -> float:
        """The most, over the cores, of the sum over a core's tile rows of ``per_row(nnz, nt)``, plus
        ``per_col[j]`` on column j and ``per_rank[i]`` on row i: exact from the mask, or the
        expected maximum of the cores' draws."""
        ks = split(self.k, rows, tail)
        ws = split(self.n, cols, head)[::-1]  # weight columns per column of cores (the short one first)
        if self.exact:
            p = self._row_prefix()
            n_at = np.array(offsets(ws) + [self.n])
            counts = p[:, n_at[1:]].astype(np.int64) - p[:, n_at[:-1]]  # [k, cols] non-zeros per tile row
            nts = np.array(ws)
            counts[:, 0] += head
            nts[0] += head
            val = np.empty(counts.shape, dtype=np.int64)
            for nt in np.unique(nts):  # a table per tile width, looked up per tile row
                on = nts == nt
                val[:, on] = np.asarray(per_row(np.arange(nt + 1), int(nt)), dtype=np.int64)[counts[:, on]]
            k_at = np.array(offsets(ks) + [self.k])
            csum = np.zeros((self.k + 1, cols), dtype=np.int64)
            np.cumsum(val, axis=0, out=csum[1:])
            core = csum[k_at[1:]] - csum[k_at[:-1]] + np.asarray(per_col)[None, :] + np.asarray(per_rank)[:, None]
            return float(core.max())
        nt = max(ws[0] + head, max(ws))  # the widest tile
        vals = per_row(np.arange(nt + 1), nt).astype(np.int64)
        pmf = np.zeros(int(vals.max()) + 1)
        np.add.at(pmf, vals, binomial_pmf(nt, self.density))  # one tile row's value, in distribution
        cores = rows * cols
        kinds = sorted(set(zip(ks, np.asarray(per_rank).tolist())))  # rows of cores alike: (rows of K, extra)
        return max(extra + expected_max(pmf, kt, cores) for kt, extra in kinds) + max(per_col)


# What the weights in distribution have worked out, by (k, n, density): every layer of a model has the
# same, and the placer asks for many rectangles.
_SHARED: dict[tuple, dict] = {}
EXACT_SUPPORT = 1 << 17  # sums with at most this many values are convolved exactly


def expected_max(pmf: np.ndarray, terms: int, draws: int) -> float:
    """The expected maximum over ``draws`` cores of the sum of ``terms`` independent values of
    distribution ``pmf`` (over 0, 1, ...): exact by convolution where the sum's support is small,
    else a normal approximation."""
    values = np.arange(len(pmf))
    mean, var = float(pmf @ values), float(pmf @ values ** 2) - float(pmf @ values) ** 2
    if terms * (len(pmf) - 1) + 1 > EXACT_SUPPORT:
        return terms * mean + expected_max_z(draws) * sqrt(max(terms * var, 0.0))
    size = terms * (len(pmf) - 1) + 1
    fft = 1 << (size - 1).bit_length()
    total = np.clip(np.fft.irfft(np.fft.rfft(pmf, fft) ** terms, fft)[:size], 0.0, None)  # pmf of the sum
    cdf = np.clip(np.cumsum(total), 0.0, 1.0)
    top = cdf ** draws
    return float(np.arange(len(total)) @ np.diff(top, prepend=0.0))
