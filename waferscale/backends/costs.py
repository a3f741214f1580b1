"""What each class of instruction a core issues costs, in cycles: one table that every kernel's
instruction stream is priced by (issue 27).

A kernel's cycles on a core are counted from its loop structure as an ``InstructionCount`` (how
many calls of each class, and for a vector instruction of what length), then priced here. So the
GEMV, the GEMM, the row-wise kernels and attention share one table, and a cost changes every
kernel that issues its class by exactly as many times as it issues it (tests/test_costs.py).

The classes:

- **vector** (a DSD operation: FMAC / FMUL / FADD / dot / copy over ``n`` elements): a per-call
  ``vector_issue`` plus ``n`` elements at the slowest of the lanes, the SRAM ports (``datapath.py``)
  and, for f32 operands, ``f32_elem_cycles`` per element; a vector op whose operand streams in from
  the fabric (``fmul_fabric``) takes at least one cycle per wavelet (the ramp's rate);
- **task start** (a task activated: one token's work on one core), **loop iteration** (a software
  loop's back edge around a vector call), **scalar load** (a scalar operand read from SRAM into a
  register), **DSD setup** (a descriptor rebuilt or moved by software between calls);
- **fabric receive / send** per wavelet at the core's ramp;
- **partial-sum add** per wavelet: the add-and-forward of a partial sum arriving from the fabric.
  On the hardware this is a DSD FADD whose one source and whose destination are fabric DSDs: it
  is issued by the core and runs on its datapath (so it is charged there, and is not hidden behind
  the FMACs), but its rate is the ramp's, one wavelet per cycle, not the lanes'. Its per-call
  issue is not charged (one call per token's stream; the PE-level simulator models it the same way).

Router hops, ramp stages and colour switches are the fabric's, not the core's: the machine file
(``Machine.hop_cycles``, ``ramp_cycles``) and ``runtime/switching.py`` own them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import ceil


@dataclass(frozen=True)
class Costs:
    # Per vector instruction (DSD op), before its first element. FITTED: `python benchmarks/calibrate.py
    # --fit` on the fit half of benchmarks/calibration/published_kernels.json (WaferLLM's MeshGEMV 16K and
    # 32K, whose loop is one f16 @fmach per element of x under @map, and the SGEMM). For comparison (not
    # used): a WSE-3 silicon fit gives 15-17 cycles of setup per DSD op ('WSE-3 Characterization', UNREVIEWED).
    vector_issue: int = 18
    # Per task activation (one token's work on one core). ASSUMED: no source separates it from the
    # vector issue on the published GEMVs (one task each).
    task_start: int = 8
    # Per iteration of a software loop around a vector call (the back edge, the branch, the loop
    # counter), as the SDK's SUMMA SGEMM has one per AXPY (`for j in Nt { b = Bp[..]; @fmacs(..) }`).
    # FITTED on the SGEMM of the fit half (Miyajima et al.), the only fit case with that loop. For
    # comparison (not used): a WSE-3 simulator gives a loop back edge 9-10 cycles ('WSE-3
    # Characterization', UNREVIEWED); the fitted value also holds what that loop does beyond the
    # calls we count (the paper's own loop is not in its abstract).
    loop_iteration: int = 44
    # A scalar operand read from SRAM. Cerebras SDK Technical Overview (2022) p. 3: "single-cycle
    # read/write access latency".
    scalar_load: int = 1
    # A descriptor moved by software between calls (`C_dsd += Mt`, `@increment_dsd_offset`).
    # ASSUMED from 'WSE-3 Characterization' (UNREVIEWED, simulator): a DSD op loads 3 DSRs.
    dsd_setup: int = 3
    # f32 arithmetic (FMAC, FMUL, FADD, dot), cycles per element at least. 'WSE-3 Characterization'
    # (UNREVIEWED): FMA f32 0.50 elements/cycle on a CS-3, 0.50 in the SDK's simulator too; ASSUMED the
    # same on a WSE-2 and for FMUL/FADD. WaferLLM Sec. 7 and Lie (Hot Chips 34) give one f32 FMAC per
    # cycle: with 1.0 here the held-out stencils come out ~45% fast (docs/fidelity.md).
    f32_elem_cycles: float = 2.0
    # Fabric receive / send per wavelet at the core: the ramp moves one 32-bit wavelet per cycle each
    # way (Jacquelin et al., arXiv 2204.03775, Sec. IV-A; Cerebras SDK docs).
    fabric_recv: float = 1.0
    fabric_send: float = 1.0
    # The add-and-forward of one partial sum arriving from the fabric: one wavelet per cycle through
    # the ramp (the same sources), on the core's datapath (module docstring).
    psum_add: int = 1

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


DEFAULT = Costs()
FITTED = ("vector_issue", "loop_iteration")  # the fields `calibrate.py --fit` searches

# Vector classes: what one element reads and writes, for the port bound (``Datapath.vector``).
VECTOR_KINDS = ("fmac", "fmul", "fadd", "fmul_fabric", "dot", "elementwise", "dequant", "sparse_fmac")
# ``lane``: datapath cycles a kernel counts itself (a row-wise op's transcendentals), priced 1 each.
SCALAR_KINDS = ("task", "loop", "scalar_load", "dsd_setup", "recv", "send", "psum", "lane")


@dataclass
class InstructionCount:
    """The instructions one core issues for a piece of work: vector calls by (class, length), and
    counts of the scalar classes. ``cycles(dp)`` prices them by ``dp.costs``."""

    vector: dict[tuple[str, int], float] = field(default_factory=dict)
    scalar: dict[str, float] = field(default_factory=dict)

    def call(self, kind: str, length: int, calls: float = 1) -> InstructionCount:
        assert kind in VECTOR_KINDS, kind
        if calls:
            self.vector[kind, int(length)] = self.vector.get((kind, int(length)), 0) + calls
        return self

    def add(self, kind: str, n: float = 1) -> InstructionCount:
        assert kind in SCALAR_KINDS, kind
        if n:
            self.scalar[kind] = self.scalar.get(kind, 0) + n
        return self

    def __iadd__(self, other: InstructionCount) -> InstructionCount:
        for (k, n), c in other.vector.items():
            self.call(k, n, c)
        for k, c in other.scalar.items():
            self.add(k, c)
        return self

    def times(self, m: float) -> InstructionCount:
        return InstructionCount({k: c * m for k, c in self.vector.items()}, {k: c * m for k, c in self.scalar.items()})

    def calls(self, kind: str) -> float:
        """Vector calls of ``kind`` (all lengths), or the count of a scalar class."""
        if kind in SCALAR_KINDS:
            return self.scalar.get(kind, 0)
        return sum(c for (k, _), c in self.vector.items() if k == kind)

    def elements(self, kind: str) -> float:
        return sum(c * n for (k, n), c in self.vector.items() if k == kind)

    def breakdown(self, dp) -> dict[str, float]:
        """Cycles by class: each vector class's elements, ``issue`` for all vector calls, and each
        scalar class."""
        c: Costs = dp.costs
        out = {"issue": c.vector_issue * sum(self.vector.values())}
        for (k, n), calls in self.vector.items():
            out[k] = out.get(k, 0) + calls * dp.vector(k, n)
        price = {"task": c.task_start, "loop": c.loop_iteration, "scalar_load": c.scalar_load,
                 "dsd_setup": c.dsd_setup, "recv": c.fabric_recv, "send": c.fabric_send, "psum": c.psum_add,
                 "lane": 1}
        for k, n in self.scalar.items():
            out[k] = n * price[k]
        return out

    def cycles(self, dp) -> float:
        return sum(self.breakdown(dp).values())


def lane_cycles(n: float, lanes: float, elem: int, costs: Costs) -> int:
    """Cycles of ``n`` elements through the lanes: ``n / lanes``, and for f32 operands (``elem`` >= 4)
    at least ``costs.f32_elem_cycles`` each."""
    if elem >= 4 and costs.f32_elem_cycles * lanes > 1:
        return ceil(n * costs.f32_elem_cycles)
    return ceil(n / lanes)
