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
from math import ceil, lgamma, log, sqrt
from statistics import NormalDist

import numpy as np
from scipy.special import ndtr

from . import assumptions as A
from .blocks import offsets, split
from .datapath import Datapath


def row_cycles(nnz: np.ndarray, dp: Datapath) -> np.ndarray:
    """Datapath cycles to multiply one arriving element of A into a tile row holding ``nnz``
    non-zeros (vectorized ``Datapath.sparse_axpy``)."""
    nnz = np.asarray(nnz, dtype=np.int64)
    rate = np.maximum.reduce([np.ceil(nnz / dp.lanes), np.ceil(nnz * (dp.elem + A.SPARSE_INDEX_BYTES) / dp.port),
                              np.ceil(nnz * dp.acc / dp.port)]).astype(np.int64)
    return np.where(nnz == 0, A.SPARSE_SKIP_CYCLES, rate + A.VECTOR_OP_CYCLES)


def expected_max_z(cores: int) -> float:
    """The expected maximum of ``cores`` standard normal draws (Blom's approximation; 0 for one)."""
    return NormalDist().inv_cdf((cores - 0.375) / (cores + 0.25)) if cores > 1 else 0.0


def binomial_pmf(n: int, p: float) -> np.ndarray:
    x = np.arange(n + 1)
    if p >= 1.0:
        return (x == n).astype(float)
    if p <= 0.0:
        return (x == 0).astype(float)
    logs = np.array([lgamma(n + 1) - lgamma(i + 1) - lgamma(n - i + 1) for i in range(n + 1)])
    return np.exp(logs + x * log(p) + (n - x) * log(1 - p))


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
        """Bytes of the compressed weight: each non-zero's value and index, and each row's count (as
        one tile per row: the least; a tiling adds a row count per tile row, see ``tile``)."""
        return self.nnz * (elem + A.SPARSE_INDEX_BYTES) + self.k * A.SPARSE_ROW_BYTES

    def _row_prefix(self) -> np.ndarray:
        """Per row, the running count of non-zeros along N ([k, n + 1]), kept once."""
        if "p" not in self._prefix:
            dt = np.uint16 if self.n < 2 ** 16 else np.uint32
            p = np.zeros((self.k, self.n + 1), dtype=dt)
            np.cumsum(self.mask, axis=1, dtype=dt, out=p[:, 1:])
            self._prefix["p"] = p
        return self._prefix["p"]

    def tile(self, rows: int, cols: int, dp: Datapath, tail: int = 0, head: int = 0,
             tail_cycles: int = 0) -> tuple[int, int]:
        """(cycles per token of the slowest core, non-zeros of the fullest tile) on a ``rows x cols``
        rectangle (already cut to the matrix). The K split carries ``tail`` units of epilogue work on
        the last row (``tail_cycles`` each per token) and the N split ``head`` statistics columns on
        column 0, as the dense kernel's (``kernels/matmul.py``); the statistics count as non-zeros."""
        key = (rows, cols, dp, tail, head, tail_cycles)
        if key not in self._cache:
            self._cache[key] = (self._exact if self.exact else self._in_distribution)(rows, cols, dp, tail, head,
                                                                                       tail_cycles)
        return self._cache[key]

    def latest(self, m: int, rows: int, cols: int, dp: Datapath, col_lag: int, row_lag: int, tail: int = 0,
               head: int = 0, tail_cycles: int = 0) -> float:
        """The latest over the cores (i, j) of ``m`` times the core's cycles per token plus
        ``j * col_lag + (rows - 1 - i) * row_lag`` (``gemm.sparse_gemm_time``'s path through the
        core): from the mask, or in distribution its expected value, each core's work drawn apart
        (a normal approximation; the widest tile's draws for every core, as ``tile``)."""
        key = ("latest", m, rows, cols, dp, col_lag, row_lag, tail, head, tail_cycles)
        if key not in self._cache:
            lag_i, lag_j = (rows - 1 - np.arange(rows)) * row_lag, np.arange(cols) * col_lag
            self._cache[key] = self._latest(m, rows, cols, dp, lag_i, lag_j, tail, head, tail_cycles)
        return self._cache[key]

    def _latest(self, m, rows, cols, dp, lag_i, lag_j, tail, head, tail_cycles) -> float:
        if self.exact:
            step = self._steps(rows, cols, dp, tail, head, tail_cycles)[0]
            return float((m * step + lag_i[:, None] + lag_j[None, :]).max())
        ks = split(self.k, rows, tail)
        ws = split(self.n, cols, head)[::-1]
        outs = np.array(ws) + np.array([head] + [0] * (cols - 1))
        nt = max(ws)
        r = row_cycles(np.arange(nt + 1), dp).astype(float)
        pmf = binomial_pmf(nt, self.density)
        mean, var = float(pmf @ r), max(float(pmf @ r ** 2) - float(pmf @ r) ** 2, 0.0)
        extra = [0] * (rows - 1) + [tail * tail_cycles]
        # Core (i, j) draws m * (the sum of ks[i] rows) + m * (its fixed work) + lag[i, j]. The rows of
        # cores alike (rows of K, epilogue) and the columns alike (outputs) make a few kinds; within a
        # kind the cores differ by their lag only, counted per value (row lags + column lags).
        mu, sd, counts = [], [], []
        for kt, ex in sorted(set(zip(ks, extra))):
            li = lag_i[[i for i in range(rows) if (ks[i], extra[i]) == (kt, ex)]]
            for out in sorted(set(outs.tolist())):
                lj = lag_j[outs == out]
                hist = np.convolve(np.bincount(li - li.min()), np.bincount(lj - lj.min()))
                v = np.flatnonzero(hist)
                base = li.min() + lj.min()
                fixed = m * (A.TASK_OVERHEAD_CYCLES + out * A.PARTIAL_SUM_CYCLES + ex)
                mu.append(m * kt * mean + fixed + base + v)
                sd.append(np.full(len(v), m * sqrt(kt * var)))
                counts.append(hist[v])
        return expected_max_of_normals(np.concatenate(mu), np.concatenate(sd), np.concatenate(counts))

    def _steps(self, rows, cols, dp, tail, head, tail_cycles) -> tuple[np.ndarray, np.ndarray]:
        """[rows, cols] each core's cycles per token and its tile's non-zeros, from the mask."""
        key = ("steps", rows, cols, dp, tail, head, tail_cycles)
        if key not in self._cache:
            self._cache[key] = self._core_steps(rows, cols, dp, tail, head, tail_cycles)
        return self._cache[key]

    def _exact(self, rows, cols, dp, tail, head, tail_cycles):
        step, nnz = self._steps(rows, cols, dp, tail, head, tail_cycles)
        return int(step.max()), int(nnz.max())

    def _core_steps(self, rows, cols, dp, tail, head, tail_cycles):
        ks = split(self.k, rows, tail)
        ws = split(self.n, cols, head)[::-1]  # weight columns per column of cores (the short one first)
        outs = np.array(ws) + np.array([head] + [0] * (cols - 1))  # outputs per column of cores
        p = self._row_prefix()
        n_at = np.array(offsets(ws) + [self.n])
        counts = (p[:, n_at[1:]].astype(np.int64) - p[:, n_at[:-1]])  # [k, cols] non-zeros per tile row
        counts[:, 0] += head
        cyc = row_cycles(counts, dp)
        k_at = np.array(offsets(ks) + [self.k])
        csum = np.zeros((self.k + 1, cols), dtype=np.int64)
        np.cumsum(cyc, axis=0, out=csum[1:])
        nsum = np.zeros((self.k + 1, cols), dtype=np.int64)
        np.cumsum(counts, axis=0, out=nsum[1:])
        fmac = csum[k_at[1:]] - csum[k_at[:-1]]  # [rows, cols]
        nnz = nsum[k_at[1:]] - nsum[k_at[:-1]]
        fmac[-1] += tail * tail_cycles
        step = A.TASK_OVERHEAD_CYCLES + fmac + outs[None, :] * A.PARTIAL_SUM_CYCLES
        return step, nnz

    def _in_distribution(self, rows, cols, dp, tail, head, tail_cycles):
        ks = split(self.k, rows, tail)
        ws = split(self.n, cols, head)[::-1]
        nt, out_t = max(ws), max(w + (head if j == 0 else 0) for j, w in enumerate(ws))
        cores = rows * cols
        r = row_cycles(np.arange(nt + 1), dp)
        row = np.zeros(int(r.max()) + 1)
        np.add.at(row, r, binomial_pmf(nt, self.density))  # the cycles of one tile row, in distribution
        fixed = A.TASK_OVERHEAD_CYCLES + out_t * A.PARTIAL_SUM_CYCLES
        # the first row of cores has the most rows of K; the last carries the epilogue
        rows_work = [(ks[0], tail * tail_cycles if rows == 1 else 0), (ks[-1], tail * tail_cycles)]
        step = max(fixed + extra + expected_max(row, kt, cores) for kt, extra in rows_work)
        nnz = expected_max(binomial_pmf(nt, self.density), ks[0], cores)
        return ceil(step), min(ks[0] * nt, ceil(nnz))


EXACT_SUPPORT = 1 << 20  # sums with at most this many values are convolved exactly


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


def expected_max_of_normals(mu, sd, counts, points: int = 1024) -> float:
    """The expected maximum of independent normal draws, ``counts[g]`` of them with mean ``mu[g]``
    and deviation ``sd[g]`` (0: a constant): ``lo`` plus the integral of ``1 - P(max <= x)`` over a
    grid from ``lo`` (where the maximum is certainly above: 8 deviations below some draw's mean, or
    a constant) to 8 deviations above the highest mean. Draws that cannot come near ``lo`` (8
    deviations below it) are left out, and the rest merged where their means are within 1/64 of
    a deviation, so that a wafer's 745,000 cores cost a few thousand terms."""
    mu, sd, counts = (np.asarray(x, dtype=float) for x in (mu, sd, counts))
    const = sd <= 0
    floor = float(mu[const].max()) if const.any() else -np.inf
    live = ~const
    if not live.any():
        return floor
    lo = max(float((mu[live] - 8 * sd[live]).max()), floor)
    hi = float((mu[live] + 8 * sd[live]).max())
    if hi <= lo:
        return lo
    keep = live & (mu > lo - 8 * sd)
    mu, sd, counts = mu[keep], sd[keep], counts[keep]
    res = float(sd.min()) / 64
    (sd, q), inverse = np.unique(np.stack([sd, np.round(mu / res)]), axis=1, return_inverse=True)
    counts = np.bincount(inverse.ravel(), weights=counts)
    x = np.linspace(lo, hi, points)
    z = (x[:, None] - q[None, :] * res) / sd[None, :]
    p = np.exp(np.log(np.clip(ndtr(z), 1e-300, 1.0)) @ counts)
    return float(lo + np.trapezoid(1.0 - p, x))
