"""``y = x @ W (+ b)`` with the activations resident and the weights streamed through: the
streamed-weight (activation-stationary) GEMM of ``backends/streamed.py``, which weight-streaming mode
uses for the GEMMs of sparse weights and for the dense ones it runs faster, where that makes their
layer faster (``passes/streaming.choose_per_layer``: ``place{streamed_gemm=auto}``, the default;
``sparse`` takes it for sparse weights only, ``all`` for every weight GEMM of a streamed layer, ``none``
for none).

On a ``rows x cols`` rectangle the tokens of every sample of the run go over the rows and K over
the columns: the core holds ``A[M_i, K_j]``; each output column's non-zeros enter K part j's column of
cores from its north edge and are multicast south, and each non-zero is one AXPY over the core's
tokens; a column's partial sums are reduced east along the row, and the east edge emits it. A zero
is never streamed, stored or multiplied, so the work and the traffic go with the density (plus a
task and the chain's add-and-forward per output column, which do not).

What the rest of the compiler sees, against the weight-stationary ``Gemm`` it replaces:

- ``model_cycles``: a run's tokens take the passes of ``streamed_time`` whatever chunks they come
  in, charged to each token at the average (a pass's tokens must all be there before its weights
  flow, and its outputs are whole only when the last column is done: a latency per pass that the
  chunked tile simulation does not see; a streamed layer runs its kernels one after another on the
  whole wafer in this mode, which the pipelined packing of a layer's kernels approximates);
- ``sram``: A's block, ``ACC_BUFFERS`` columns of accumulators, the layer's weights spread over the
  rectangle (in the weight buffer they stream from: ``stream_sim`` streams them in once);
- a fused epilogue is done by the last K part as each column leaves (``tail`` AXPYs per column), a
  folded norm's statistics are ``head`` more columns of dense K; the numbers (``run``) are the
  weight-stationary kernel's with K over ``cols`` parts and N whole, which is the same sum in the
  same order: each K part's non-zeros, in K order, added part by part.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from ..datapath import accumulator_bytes
from ..streamed import A_BLOCK_BYTES, ACC_BUFFERS, epilogue_split, passes_for, streamed_time
from .matmul import Gemm


@dataclass(frozen=True)
class StreamedGemm(Gemm):
    samples: int = 1
    a_block: int = A_BLOCK_BYTES  # the most bytes of A a core holds in a pass (``streamed.passes_for``)
    decomposition = "tokens over rows, K over columns; the weights' non-zeros stream through, A stays"

    @classmethod
    def of(cls, g: Gemm, samples: int, a_block: int = A_BLOCK_BYTES) -> StreamedGemm:
        return cls(**{f: getattr(g, f) for f in g.__dataclass_fields__}, samples=samples, a_block=a_block)

    def _m(self) -> int:
        return self.tokens * self.samples

    def max_rows(self) -> int:
        return self._m()

    def max_cols(self) -> int:
        return self.k + self.tail()

    def reduce(self, rows, cols, machine) -> str:
        return "chain"

    def algorithm(self, rows, cols, machine) -> str:
        return "streamed weights, chain reduce" + (", sparse weights" if self.sparse is not None else "")

    def colors_at(self, rows, cols, machine) -> int:
        return self.colors

    def _time(self, rows, cols, machine):
        return streamed_time(self._m(), self.k, self.n, cols, rows, machine.datapath(self.dtype), self.sparse,
                             tail=self.tail(), head=self._head(), machine=machine, a_block=self.a_block)

    def model_cycles(self, rows, cols, p0, p1, machine):
        return (p1 - p0) * self._time(rows, cols, machine).total / self._m()

    def fill(self, rows, cols, machine):
        return 0  # in the passes' cycles (``streamed_time``), charged per token

    def stream_tail(self, rows, cols, machine):
        return None

    def emit(self, rows, cols):
        return 0

    def sram(self, rows, cols):
        kp, mp = min(cols, self.k + self.tail()), min(rows, self._m())
        kt = max(epilogue_split(self.k, kp, self.tail(), self.sparse.density if self.sparse is not None else 1.0)[0])
        _, mt = passes_for(self._m(), mp, kt, self.elem, self.a_block)
        stored = self.sparse.stored_bytes(self.elem) if self.sparse is not None else self.k * self.n * self.elem
        epi = self.epilogue
        vectors = (self.bias or self.norm) + (self.norm and not self.rms) + (epi.params if epi else 0)
        return {
            # the layer's weights, spread over the rectangle, and the vectors per output column with them
            "weights": ceil((stored + vectors * self.n * self.elem) / (kp * mp)),
            "activations_in": kt * mt * self.elem + (2 * epi.streams * mt * self.elem if epi else 0),
            "activations_out": mt * self.elem,
            "partial_sums": ACC_BUFFERS * mt * accumulator_bytes(self.dtype),
            "fabric_queues": self.queues(),
        }

    def run(self, op, args, rows, cols):
        # K over ``cols`` parts, every output column on each: Gemm's numbers with that split
        return super().run(op, args, min(cols, self.k + self.tail()), 1)
