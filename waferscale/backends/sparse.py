"""Unstructured weight sparsity on the mesh GEMM: the compressed format, and each core's work from
its own tile's non-zeros.

The GEMM (``gemm.py``) keeps ``W[K_i, N_j]`` on core (i, j). A sparse weight keeps, per tile, only
its non-zeros: each value with a 16-bit column index, and per tile row its count of non-zeros
(``assumptions.SPARSE_INDEX_BYTES``, ``SPARSE_ROW_BYTES``). When element ``k`` of a token's A
arrives, the core runs one indexed AXPY over the non-zeros of row ``k`` of its tile
(``Datapath.sparse_axpy``, plus the instruction's ``Costs.vector_issue``), or drops the element in
``SPARSE_SKIP_CYCLES`` when that row holds none. So a core's cycles per token are its own:

    task_start + sum over its tile rows of row_cycles(nnz of the row) + nt * psum_add (``costs.py``)

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
from scipy.special import ndtr

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
    dense, plus the instruction's ``Costs.vector_issue``. Never more than the dense loop's cycles."""
    nnz = np.asarray(nnz, dtype=np.int64)
    coded_dense = False if nt is None else dense_row(nnz, nt, dp.elem)  # nt None: every row stored sparse
    nt = np.broadcast_to(np.asarray(nnz if nt is None else nt, dtype=np.int64), nnz.shape)
    sparse = np.maximum.reduce([np.ceil(nnz / dp.rate), np.ceil(nnz * (dp.elem + A.SPARSE_INDEX_BYTES) / dp.port),
                                np.ceil(nnz * dp.acc / dp.port)])
    dense = np.maximum.reduce([np.ceil(nt / dp.rate), np.ceil(nt * dp.elem / dp.port), np.ceil(nt * dp.acc / dp.port)])
    run = np.where(coded_dense, dense, sparse).astype(np.int64) + dp.costs.vector_issue
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
        cache = self._memo()
        if key not in cache:
            cache[key] = ceil(dp.costs.task_start + self._slowest(
                rows, cols, 0, 0, lambda c, nt: row_cycles(c, dp, nt), np.zeros(cols), np.zeros(rows)))
        return cache[key]

    def _memo(self) -> dict:
        """Where this weight's worked-out figures are kept: its own, for a mask; shared by every
        weight of the same shape and density, in distribution (every layer of a model)."""
        return self._cache if self.exact else _SHARED.setdefault((self.k, self.n, self.density), {})

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
        cache = self._memo()
        if key not in cache:
            outs = np.array(split(self.n, cols, head)[::-1]) + np.array([head] + [0] * (cols - 1))
            units = np.array(split(self.k + tail, rows)) - np.array(split(self.k, rows, tail))
            cache[key] = ceil(dp.costs.task_start + self._slowest(
                rows, cols, tail, head, lambda c, nt: row_cycles(c, dp, nt), outs * dp.costs.psum_add,
                units * tail_cycles))
        return cache[key]

    def tile_bytes(self, rows: int, cols: int, elem: int, tail: int = 0, head: int = 0) -> int:
        """SRAM bytes of the fullest core's tile (``row_bytes`` over its rows)."""
        key = ("bytes", rows, cols, elem, tail, head)
        cache = self._memo()
        if key not in cache:
            cache[key] = ceil(self._slowest(rows, cols, tail, head, lambda c, nt: row_bytes(c, nt, elem),
                                            np.zeros(cols), np.zeros(rows)))
        return cache[key]

    def latest(self, m: int, rows: int, cols: int, dp: Datapath, col_lag: int, row_lag: int, tail: int = 0,
               head: int = 0, tail_cycles: int = 0) -> float:
        """The latest over the cores (i, j) of ``m`` times the core's cycles per token (``tile``'s,
        core by core) plus ``j * col_lag + (rows - 1 - i) * row_lag`` (``gemm.sparse_gemm_time``'s
        path through the core): from the mask, or in distribution its expected value, each core's
        work drawn apart (a normal approximation; the widest tile's draws for every core, as
        ``tile``)."""
        key = ("latest", m, rows, cols, dp, col_lag, row_lag, tail, head, tail_cycles)
        cache = self._memo()
        if key not in cache:
            outs = np.array(split(self.n, cols, head)[::-1]) + np.array([head] + [0] * (cols - 1))
            units = np.array(split(self.k + tail, rows)) - np.array(split(self.k, rows, tail))
            per_col = dp.costs.task_start + outs * dp.costs.psum_add + np.arange(cols) * col_lag / m
            per_rank = units * tail_cycles + (rows - 1 - np.arange(rows)) * row_lag / m
            cache[key] = m * self._slowest(rows, cols, tail, head, lambda c, nt: row_cycles(c, dp, nt),
                                           per_col, per_rank, spread=True)
        return cache[key]

    def _slowest(self, rows, cols, tail, head, per_row, per_col, per_rank, spread: bool = False) -> float:
        """The most, over the cores, of the sum over a core's tile rows of ``per_row(nnz, nt)``, plus
        ``per_col[j]`` on column j and ``per_rank[i]`` on row i: exact from the mask, or the
        expected maximum of the cores' draws (``spread``: each core's own ``per_col`` and
        ``per_rank``, by a normal approximation; else the largest of each for every core)."""
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
        if spread:
            return _expected_latest(pmf, ks, np.asarray(per_rank, float), np.asarray(per_col, float))
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
    total = sum_pmf(pmf, terms)
    if total is None:
        return terms * mean + expected_max_z(draws) * sqrt(max(terms * var, 0.0))
    cdf = np.clip(np.cumsum(total), 0.0, 1.0)
    top = cdf ** draws
    return float(np.arange(len(total)) @ np.diff(top, prepend=0.0))


def sum_pmf(pmf: np.ndarray, terms: int) -> np.ndarray | None:
    """The distribution of the sum of ``terms`` independent values of ``pmf`` (by FFT), or None
    where its support is beyond ``EXACT_SUPPORT``."""
    size = terms * (len(pmf) - 1) + 1
    if size > EXACT_SUPPORT:
        return None
    fft = 1 << (size - 1).bit_length()
    return np.clip(np.fft.irfft(np.fft.rfft(pmf, fft) ** terms, fft)[:size], 0.0, None)


TINY = 1e-15  # a probability below this is taken as nothing


def _expected_latest(pmf: np.ndarray, ks: list[int], per_rank: np.ndarray, per_col: np.ndarray) -> float:
    """The expected maximum over the cores (i, j) of the sum of ``ks[i]`` independent draws of
    ``pmf`` plus ``per_rank[i] + per_col[j]``: the integral of ``1 - P(max <= x)``, where ``P`` is
    the product over the cores of their sums' distribution (exact by convolution, as
    ``expected_max``; normal beyond ``EXACT_SUPPORT``) at ``x`` less their extra work. The cores are
    grouped by their rows of K, and within a group counted per value of their extra work (rounded to
    1/64 of a deviation, or 1/8,192 of the extras' range: a wafer's 745,000 cores make a few
    thousand terms). Against Monte Carlo draws of whole meshes (4 x 4 to 994 x 750, the extras a
    GEMV's path lags) it is within 2 cycles. The sums are spread evenly over each unit, which
    blurs ties: with ``m`` tokens the extras (the path's lag) are ``1/m`` of a unit, so among
    cores of equal work the latest path is not singled out, and a kernel's fill is then low by up
    to its lag (never more than the dense fill; a small part of ``m`` steps)."""
    values = np.arange(len(pmf))
    mean = float(pmf @ values)
    var = max(float(pmf @ values ** 2) - mean ** 2, 0.0)
    if var == 0:  # every core's work is known: the most of them
        return max(kt * mean + per_rank[np.array(ks) == kt].max() for kt in set(ks)) + float(per_col.max())
    kinds = []  # per group: its sums' cdf (a function), where it starts and ends, the extras and their counts
    for kt in sorted(set(ks)):
        rank = per_rank[np.array(ks) == kt]
        sd = sqrt(kt * var)
        # at most 8,192 values per group (any positive step where every core of the group is alike: a
        # group of no rows of K, whose sums are all zero, with equal extras)
        step = max(sd / 64, float(np.ptp(rank) + np.ptp(per_col)) / 8192) or 1.0
        lo_r, lo_c = rank.min(), per_col.min()
        hist = np.convolve(np.bincount(np.round((rank - lo_r) / step).astype(np.int64)),
                           np.bincount(np.round((per_col - lo_c) / step).astype(np.int64)))
        at = np.flatnonzero(hist)
        extra, counts = lo_r + lo_c + at * step, hist[at].astype(float)
        total = sum_pmf(pmf, kt)
        if total is None:
            mu = kt * mean
            kinds.append((lambda x, mu=mu, sd=sd: ndtr((x - mu) / sd), mu - 8 * sd, mu + 8 * sd, extra, counts))
        else:
            # the sum's cdf, spread evenly over each unit (the sum plus a uniform draw in [0, 1), whose
            # half is taken off below): a step function sampled on a grid would err by up to the
            # grid's spacing, and ``m`` times that in a kernel's total
            cdf = np.concatenate([[0.0], np.cumsum(total)])
            cdf = np.clip(cdf / cdf[-1], 0.0, 1.0)  # (the FFT's rounding leaves its sum a hair off 1)
            at_x = lambda x, cdf=cdf: np.interp(x, np.arange(len(cdf), dtype=float), cdf, left=0.0, right=1.0)
            first = int(np.argmax(cdf > TINY)) - 1
            last = int(np.argmax(cdf >= 1 - TINY)) + 1
            kinds.append((at_x, float(first), float(last), extra - 0.5, counts))
    lo = max(first + float(extra.max()) for _, first, _, extra, _ in kinds)  # below: the max is above for sure
    hi = max(last + float(extra.max()) for _, _, last, extra, _ in kinds)  # above: below for sure
    if hi <= lo:
        return lo
    x = np.linspace(lo, hi, 2048)
    log_p = np.zeros(len(x))
    for cdf, _, last, extra, counts in kinds:
        live = extra > lo - last  # a core that cannot reach lo leaves P as it is
        f = cdf(x[:, None] - extra[None, live])
        log_p += np.log(np.clip(f, 1e-300, 1.0)) @ counts[live]
    return float(lo + np.trapezoid(1.0 - np.exp(log_p), x))
