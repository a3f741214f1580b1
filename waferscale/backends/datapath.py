"""What one core's datapath and SRAM ports allow per cycle: the rate of the vector loops that every
kernel is made of.

A WSE core has no register file for vectors: a vector instruction (a DSD operation) reads its
operands from SRAM and writes its result back, through two 64-bit read ports and one 64-bit
write port per cycle (Lie, Hot Chips 34 / IEEE Micro 2023; ``machine.py``). So the loop of the
weight-stationary GEMM, ``acc[0:n] += a * w[0:n]`` with the scalar ``a`` arriving from the fabric
(an AXPY), reads ``n`` weights and ``n`` accumulators and writes ``n`` accumulators, and runs at
the slowest of

- the FMAC lanes: ``lanes`` per cycle for the dtype (4 f16 or 1 f32 on a WSE-2);
- the read ports: the weights through one, the accumulators through the other, 8 bytes each;
- the write port: the accumulators, 8 bytes.

f16 operands with f16 accumulators (the FMACH instruction) fill the ports exactly at 4 lanes; f32
accumulators (mixed precision, FMACHS) halve that by the write port; a WSE-3 core's 8 f16 lanes
are held to 4 by its ports when its ports are a WSE-2's (not published; an assumption). A
dot product (``q . k`` in attention) reads two operand vectors and writes nothing per element.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from . import assumptions as A
from .costs import DEFAULT, Costs, lane_cycles


@dataclass(frozen=True)
class Datapath:
    """A core's vector rate for one dtype."""

    lanes: float  # FMACs per cycle
    elem: int = 2  # bytes of an operand
    acc: int = 2  # bytes of an accumulator
    port: int = 8  # bytes per SRAM port per cycle
    # bytes of a quantised weight (passes/quantize.py; 0: weights in the operand dtype). The datapath has
    # no published int8/fp8 FMAC rate (assumptions.DEQUANTIZE_IN_DATAPATH): each weight is dequantised
    # first, one more vector instruction per AXPY (``dequant``), then multiplied at the f16 rate.
    quant: float = 0.0
    costs: Costs = DEFAULT  # what each instruction class costs (``costs.py``): the vector issue, f32's rate

    def lane(self, n: float) -> int:
        """Cycles of ``n`` elements through the lanes (f32: at least ``costs.f32_elem_cycles`` each)."""
        return lane_cycles(n, self.lanes, self.elem, self.costs)

    @property
    def rate(self) -> float:
        """Elements per cycle through the lanes."""
        if self.elem >= 4 and self.costs.f32_elem_cycles * self.lanes > 1:
            return 1 / self.costs.f32_elem_cycles
        return self.lanes

    def vector(self, kind: str, n: int) -> int:
        """Cycles of the elements of one vector instruction of ``kind`` (``costs.VECTOR_KINDS``) over
        ``n`` elements, without its issue: ``fmac`` an AXPY, ``fmul``/``fadd`` two SRAM operands and a
        result, ``fmul_fabric`` one operand from the fabric (one wavelet per cycle at most), ``dot`` a
        dot product, ``elementwise`` the lanes only, ``dequant`` and ``sparse_fmac`` as below."""
        if kind == "fmac":
            return self.axpy(n, dequant=False)
        if kind in ("fmul", "fadd"):
            return max(self.lane(n), ceil(n * self.elem / self.port))
        if kind == "fmul_fabric":
            return max(self.lane(n), ceil(n * self.costs.fabric_recv))
        if kind == "dot":
            return self.dot(n)
        if kind == "dequant":
            return self.dequant(n)
        if kind == "sparse_fmac":
            return self.sparse_axpy(n)
        return self.lane(n)

    def axpy(self, n: int, dequant: bool = True) -> int:
        """Cycles of ``acc[0:n] += a * x[0:n]`` (x and acc in SRAM, a a scalar); with quantised weights,
        plus the dequantise of x before it (``dequant``)."""
        fma = max(self.lane(n), ceil(n * self.elem / self.port), ceil(n * self.acc / self.port))
        return fma + (self.dequant(n) if self.quant and dequant else 0)

    def dequant(self, n: int) -> int:
        """Cycles of ``x[0:n] = q[0:n] * s[0:n]``: the codes through one read port, their f16 scales
        (one per output column of the tile row) through the other, x written back in the operand dtype."""
        return max(self.lane(n), ceil(n * self.quant / self.port), ceil(n * self.elem / self.port))

    @property
    def instructions(self) -> int:
        """Vector instructions per AXPY: the dequantise makes two."""
        return 2 if self.quant else 1

    def sparse_axpy(self, n: int, index: int = A.SPARSE_INDEX_BYTES) -> int:
        """Cycles of ``acc[idx[0:n]] += a * x[0:n]``: each non-zero's value and ``index`` bytes of
        column index through one read port, the gathered accumulators through the other
        (``assumptions.SPARSE_INDEX_BYTES``)."""
        return max(self.lane(n), ceil(n * (self.elem + index) / self.port), ceil(n * self.acc / self.port))

    def dot(self, n: int) -> int:
        """Cycles of ``sum(x[0:n] * y[0:n])`` (both in SRAM, the sum in the accumulator)."""
        return max(self.lane(n), ceil(n * self.elem / self.port))

    def axpy_traffic(self, n: int) -> tuple[int, int]:
        """(bytes read, bytes written) of one AXPY of length n."""
        return n * (self.elem + self.acc), n * self.acc


def as_datapath(x: Datapath | float) -> Datapath:
    """A number is a lane rate with f16 operands and accumulators (the PE-level tests' shorthand)."""
    return x if isinstance(x, Datapath) else Datapath(lanes=float(x))


def accumulator_bytes(dtype: str) -> int:
    return {"f16": 2, "bf16": 2, "f32": 4, "f64": 8}.get(A.ACCUMULATOR.get(dtype, dtype), 4)
