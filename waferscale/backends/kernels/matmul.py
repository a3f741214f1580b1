"""``y = x @ W (+ b)`` with W resident in SRAM: the weight-stationary mesh GEMM of ``gemm.py``
(K over rows, N over columns, tokens streamed in from the west, partial sums reduced down each
column), alone or as the anchor of a fused region.

Fused, the GEMM takes on two more jobs, and both are costed as a slightly larger plain GEMM:

- **an epilogue** (bias, GELU, residual add, scaling) on the outputs, done by the last row of
  cores as each output is finished. Its cycles per token would make that row the slowest, so the
  K split gives the last row fewer rows of W: the epilogue's cycles, in units of one K element's
  FMACs (``ceil(nt / lanes)`` cycles), are ``tail`` extra K elements that the split balances
  (``blocks.split``). A residual arrives on the last row as one more stream of ``nt`` wavelets.
- **a layernorm prologue**, folded into the weights: ``LN(x) @ W = rstd * (x @ W' - mean * s) + c``
  with ``W' = diag(gamma) W``, ``s`` the column sums of ``W'`` and ``c = beta @ W + b``, all made
  from the weights once. Each row's cores also produce its K slice's count, mean and sum of
  squared deviations (two more outputs of column 0's cores, so column 0 gets two fewer columns
  of W), combined down column 0 with the partial sums (Chan's parallel variance) and
  multicast along the last row, which finishes each output with two FMAs and one rsqrt per
  token. The standalone layernorm kernel, its rectangle and its two fabric hops are gone.
- **an RMSNorm prologue** (Llama, Mistral, Qwen2), folded the same way with one statistic:
  ``RMS(x) @ W = rrms * (x @ W')`` with ``W' = diag(gamma) W`` and ``rrms = 1 / sqrt(sum(x^2) / K +
  eps)``. Each row's cores add their K slice's sum of squares (one more output of column 0's cores),
  summed down column 0 with the partial sums and multicast along the last row, which finishes each
  output with one multiply and one rsqrt per token. A norm that feeds several GEMMs (q, k, v; gate,
  up) is folded into each: each computes the statistic of the raw activation it receives.

A **sparse weight** (``sparsify``; ``backends/sparse.py``) is held per tile in its compressed form,
and each core's cycles come from its own tile's non-zeros: the slowest core paces the rectangle.
It always takes the chain reduce (the tree with a sparse weight is not modelled).

A **quantised weight** (``quantize``; ``ir/ops/quant.py``) is held as its codes (1 or half a byte
each) and its f16 scales, and dequantised as it is read: one more vector instruction per element
of A (``datapath.Datapath.dequant``; the assumption of ``assumptions.DEQUANTIZE_IN_DATAPATH``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import ceil

import numpy as np

from ...errors import UnsupportedError
from ...ir import registry
from ...ir.graph import Op
from ...ir.ops.quant import groups
from ...ir.types import DTYPES
from .. import assumptions as A
from ..blocks import block, slices, split
from ..column_reduce import CHAIN, TREE
from ..datapath import accumulator_bytes
from ..gemm import element_cycles, fastest, sparse_gemm_time
from ..sparse import SparseWeight
from .base import PARAM, Kernel, LowerCtx, Work, f32, lowers
from .fusion import Epilogue, Region, apply_epilogue, region

STATS = 2  # the layernorm statistics a row's cores add to their outputs: mean and sum of squared deviations
RMS_STATS = 1  # an RMSNorm's: the sum of squares
TREE_EXTRA_COLORS = 4  # the tree reduce takes six colors (column_reduce.py), the chain two


@dataclass(frozen=True)
class Gemm(Kernel):
    k: int
    n: int
    bias: bool
    flops_per_token: float  # the registry's FLOPs of the op (a fused region: all its ops), per token
    epilogue: Epilogue | None = None
    norm: bool = False  # a layernorm (or, with rms, an RMSNorm) prologue folded in
    sparse: SparseWeight | None = None  # the weight's mask, when it is sparse (backends/sparse.py)
    rms: bool = False  # the folded norm is an RMSNorm: one statistic, no shift
    quant: float = 0.0  # bytes of a quantised weight's code (passes/quantize.py); 0: the weight is in ``dtype``
    group: int = 0  # elements along K that share a quantised weight's scale (0: one per output column)
    decomposition = "K over rows, N over columns; tokens stream in from the west"

    @property
    def colors(self) -> int:  # A along rows, partial sums down columns (two, alternating); + streams
        return 2 + (1 if self.norm else 0) + (self.epilogue.streams if self.epilogue else 0)

    def max_rows(self) -> int:
        return self.dims()[0]

    def max_cols(self) -> int:
        return self._n()

    def _n(self) -> int:
        return self.n + self._head()

    def _head(self) -> int:
        return (RMS_STATS if self.rms else STATS) if self.norm else 0

    def tail(self) -> int:
        """The last row's extra work per token, in K elements. One K element costs the row's cores
        ``ceil(nt / lanes)`` cycles, as does one elementwise op over their ``nt`` outputs at the lane
        rate: an epilogue op of c cycles per element is c elements. A folded layernorm adds two FMAs
        per output and one rsqrt per token (counted as one element: exact when ``nt >= lanes *
        TRANSCENDENTAL_CYCLES``, a little under for narrower tiles); a folded RMSNorm one multiply
        per output and the rsqrt."""
        t = 0
        if self.epilogue is not None:
            t += ceil(self.epilogue.cycles_per_element / A.ELEMENTWISE_LANE_FRACTION)
        if self.norm:
            t += (1 if self.rms else 2) + 1
        return t

    def dims(self) -> tuple[int, int]:
        """(K, N) of the plain GEMM this kernel costs as (module docstring)."""
        return self.k + self.tail(), self._n()

    def reduce(self, rows, cols, machine) -> str:
        """The column reduce lowering picks on this rectangle (``gemm.fastest``): the chain, or
        WaferLLM's two-level tree where a sample has so few tokens that its latency wins."""
        if self.sparse is not None:  # the tree with a sparse weight is not modelled: the chain
            return CHAIN
        return fastest(self.tokens, *self.dims(), rows, cols, self.datapath(machine), machine=machine)[0]

    def algorithm(self, rows, cols, machine) -> str:
        return f"{self.reduce(rows, cols, machine)} reduce" + (", sparse weights" if self.sparse is not None else "")

    def colors_at(self, rows, cols, machine) -> int:
        return self.colors + (TREE_EXTRA_COLORS if self.reduce(rows, cols, machine) == TREE else 0)

    def _time(self, rows, cols, machine):
        if self.sparse is not None:
            dp = self.datapath(machine)
            n = self._n()
            return sparse_gemm_time(self.tokens, self.sparse, rows, cols, dp, tail=self.tail(), head=self._head(),
                                    tail_cycles=element_cycles(block(n, min(cols, n)), dp), machine=machine)
        return fastest(self.tokens, *self.dims(), rows, cols, self.datapath(machine), machine=machine)[1]

    def datapath(self, machine):
        """The machine's datapath for ``dtype``, dequantising the weights as it reads them if they are quantised."""
        dp = machine.datapath(self.dtype)
        return replace(dp, quant=self.quant) if self.quant else dp

    def sram(self, rows, cols):
        k, n = self.dims()
        kt, nt = block(k, min(rows, k)), block(n, min(cols, n))
        epi = self.epilogue
        # vectors of one value per output column: the bias (folded with the layernorm's shift into
        # c = beta @ W + b), the column sums s of a folded layernorm, an epilogue's weight vectors;
        # a folded RMSNorm has neither shift nor mean, so only the bias
        layernorm = self.norm and not self.rms
        vectors = (self.bias or layernorm) + layernorm + (epi.params if epi else 0)
        if self.sparse is not None:
            w = self.sparse.tile_bytes(min(rows, k), min(cols, n), self.elem, self.tail(), self._head())
        elif self.quant:  # the codes, and one f16 scale per output column and group of K
            w = ceil(kt * nt * self.quant) + nt * groups(kt, self.group) * self.elem
        else:
            w = kt * nt * self.elem
        return {
            "weights": w + vectors * nt * self.elem,
            "activations_in": 2 * kt * self.elem + (2 * epi.streams * nt * self.elem if epi else 0),
            "activations_out": nt * self.elem,
            "partial_sums": 2 * nt * accumulator_bytes(self.dtype),  # own and incoming
            # the queues of the tree's colors, whichever reduce the rectangle picks (a bound: sram
            # does not know the machine the choice depends on)
            "fabric_queues": self.queues() + TREE_EXTRA_COLORS * self.queue_bytes_per_color,
        }

    def work(self, p0, p1):
        c = p1 - p0
        macs = c * (self.sparse.nnz if self.sparse is not None else self.k * self.n)  # a sparse weight: its non-zeros
        streams = self.epilogue.streams if self.epilogue else 0
        # Each MAC is a lane of an AXPY: it reads its weight and its partial sum and writes the
        # partial sum back (a core has no vector registers); an epilogue reads its streams. The
        # add-and-forward of the column reduce (n x rows reads per token) is left out: a lower bound.
        acc = accumulator_bytes(self.dtype)
        # a quantised weight is dequantised first: its code and scale read, the f16 weight written and read back
        dq_read, dq_write = (self.quant + self.elem, self.elem) if self.quant else (0, 0)
        return Work(flops=c * self.flops_per_token,
                    sram_read=macs * (self.elem + acc + dq_read) + c * streams * self.n * self.elem,
                    sram_write=macs * (acc + dq_write),
                    delivered=c * (self.k + streams * self.n) * 1.0, edge=c * (self.k + self.n * (1 + streams)))

    def model_cycles(self, rows, cols, p0, p1, machine):
        step = self._time(rows, cols, machine).step
        if self.epilogue is not None and self.epilogue.streams:  # a residual enters the last row
            step = max(step, self.epilogue.streams * block(self._n(), min(cols, self._n())))
        return (p1 - p0) * step

    def emit(self, rows, cols):
        """Each column's last row sends its ``nt`` outputs south one wavelet per cycle, the columns at once."""
        n = self._n()
        return block(n, min(cols, n))

    def stream_tail(self, rows, cols, machine):
        """After the last element of A reaches a row: its FMACs into the ``nt`` partial sums and the rest
        of the token's step (the sums' add-and-forward), the step less the task start and the earlier
        elements' FMACs (and, with quantised weights, their dequantises: the step counts them); the descent
        and the hops are the fill."""
        if self.sparse is not None:
            return None
        k, n = self.dims()
        dp = self.datapath(machine)
        kt, nt = block(k, min(rows, k)), block(n, min(cols, n))
        step = self._time(rows, cols, machine).step
        return max(step - dp.costs.task_start - (kt - 1) * element_cycles(nt, dp), 0)

    def fill(self, rows, cols, machine):
        fill = self._time(rows, cols, machine).fill
        return fill + (min(cols, self._n()) - 1) * machine.hop_cycles if self.norm else fill

    def run(self, op, args, rows, cols):
        if op.kind != "fused":
            a = registry.with_defaults(op.kind, op.attr)
            w = args[1].T if a.get("transpose_w") else args[1]
            return gemm(args[0], w, args[2] if len(args) > 2 else None, rows, cols, sparse=self.sparse is not None)
        body = op.attr["body"]
        reg = region(body)
        env = {v.name: x for v, x in zip(body.inputs, args)}
        ln = reg.norm
        # the prologue is a layernorm and reshapes that keep the last axis (which commute with it)
        first = reg.prologue[0] if reg.prologue else reg.anchor
        x = env[first.operands[0].name].reshape(reg.anchor.operands[0].type.shape)
        a = registry.with_defaults(reg.anchor.kind, reg.anchor.attr)
        w = env[reg.anchor.operands[1].name]
        w = w.T if a.get("transpose_w") else w
        b = env[reg.anchor.operands[2].name] if len(reg.anchor.operands) > 2 else None
        norm = None
        if ln is not None:
            scale_shift = [env[p.name] for p in ln.operands[1:]] + [None, None]
            norm = (ln.kind, scale_shift[0], scale_shift[1], registry.with_defaults(ln.kind, ln.attr)["eps"])
        y = gemm(x, w, b, rows, cols, norm=norm, tail=self.tail(), sparse=self.sparse is not None)
        y = y.astype(reg.anchor.type.np_dtype, copy=False)
        blocks = _n_blocks(self.n, self._head(), min(cols, self._n()))
        return apply_epilogue(reg.epilogue, env, y, reg.anchor.result.name, blocks)


def _n_blocks(n: int, head: int, parts: int) -> list[slice]:
    """The output columns of each column of cores; column 0 also computes ``head`` statistics."""
    sizes = split(n, parts, tail=head)[::-1]  # the short block first
    out, at = [], 0
    for s in sizes:
        if s:
            out.append(slice(at, at + s))
        at += s
    return out


def sparse_tile_product(x: np.ndarray, tile: np.ndarray) -> np.ndarray:
    """``x @ tile`` from the tile's compressed form, as a core with a sparse tile computes it: each
    non-zero (value, row, column index) multiplies its row's element of each token into that
    column's partial sum; the zeros are never touched."""
    r, c = np.nonzero(tile)
    out = np.zeros((x.shape[0], tile.shape[1]), dtype=np.result_type(x, tile))
    np.add.at(out.T, c, (x[:, r] * tile[r, c]).T)
    return out


def gemm(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, rows: int, cols: int, *,
         norm: tuple | None = None, tail: int = 0, sparse: bool = False) -> np.ndarray:
    """x @ w (+ b) tile by tile: the partial sums of each column flow south, each row adding its
    own. With ``norm = ("layernorm", gamma, beta, eps)`` it is layernorm(x) @ w (+ b), folded as in
    the module docstring: the rows' statistics are combined down the column with Chan's parallel
    variance; with ``norm = ("rmsnorm", gamma, None, eps)`` it is rmsnorm(x) @ w (+ b), the rows'
    sums of squares added down the column. ``sparse``: each tile is used in its compressed form
    (``sparse_tile_product``)."""
    product = sparse_tile_product if sparse else np.matmul
    k, n = w.shape
    x2 = f32(x).reshape(-1, k)
    w32 = f32(w)
    k_blocks = slices(k, min(rows, k + tail), tail)
    out = np.zeros((x2.shape[0], n), dtype=np.result_type(x2, w32))
    head = 0
    if norm is not None and norm[0] == "rmsnorm":
        _, gamma, _, eps = norm
        head = RMS_STATS
        gamma = np.ones(k, w32.dtype) if gamma is None else f32(gamma)
        ss = 0.0
        for ki in k_blocks:  # each row's sum of squares, added going south
            ss = ss + (x2[:, ki] ** 2).sum(-1, keepdims=True)
        rrms = 1.0 / np.sqrt(ss / k + eps)
        w_scaled = gamma[:, None] * w32  # W' = diag(gamma) W, made once from the weights
    elif norm is not None:
        _, gamma, beta, eps = norm
        head = STATS
        gamma = np.ones(k, w32.dtype) if gamma is None else f32(gamma)
        count, mean, m2 = 0, 0.0, 0.0
        for ki in k_blocks:  # each row's count, mean and squared deviations, combined going south
            xb = x2[:, ki]
            nb = ki.stop - ki.start
            mb = xb.mean(-1, keepdims=True)
            m2b = ((xb - mb) ** 2).sum(-1, keepdims=True)
            delta = mb - mean
            total = count + nb
            mean = mean + delta * nb / total
            m2 = m2 + m2b + delta ** 2 * count * nb / total
            count = total
        rstd = 1.0 / np.sqrt(m2 / k + eps)
        w_scaled = gamma[:, None] * w32  # W' = diag(gamma) W, made once from the weights
    for nj in _n_blocks(n, head, min(cols, n + head)):
        if norm is None or norm[0] == "rmsnorm":
            acc = 0
            for ki in k_blocks:
                acc = acc + product(x2[:, ki], (w32 if norm is None else w_scaled)[ki, nj])
            out[:, nj] = acc if norm is None else acc * rrms
            continue
        acc, colsum, c = 0, 0, 0
        for ki in k_blocks:
            acc = acc + product(x2[:, ki], w_scaled[ki, nj])
            colsum = colsum + w_scaled[ki, nj].sum(0)
            if beta is not None:
                c = c + f32(beta)[ki] @ w32[ki, nj]
        out[:, nj] = (acc - mean * colsum) * rstd + c
    if b is not None:
        out = out + b
    return out.reshape(*x.shape[:-1], n)


@lowers("linear", "matmul")
def lower_gemm(op: Op, ctx: LowerCtx, epilogue: Epilogue | None = None, norm: bool = False,
               flops_per_token: float | None = None, rms: bool = False) -> Gemm:
    w = op.operands[1].type
    if ctx.sources[1] != PARAM or w.rank != 2:
        raise UnsupportedError(f"lowering {ctx.where} to the mesh: only products with a resident "
                               "2-D weight are lowered (a product of two activations is not yet)")
    k, n = (w.shape[::-1] if op.attr.get("transpose_w") else w.shape)
    t = op.type
    return Gemm(tokens=ctx.tokens, dtype=t.dtype, elem=DTYPES[t.dtype][1], k=k, n=n, bias=len(op.operands) > 2,
                flops_per_token=ctx.flops_per_token(op) if flops_per_token is None else flops_per_token,
                epilogue=epilogue, norm=norm, rms=rms)


def fused_gemm(reg: Region, ctx: LowerCtx, epilogue: Epilogue | None, flops_per_token: float) -> Gemm:
    """The GEMM of a fused region: its anchor, with the region's prologue and epilogue."""
    norm = reg.norm
    return lower_gemm(reg.anchor, ctx, epilogue=epilogue, norm=norm is not None, flops_per_token=flops_per_token,
                      rms=norm is not None and norm.kind == "rmsnorm")

