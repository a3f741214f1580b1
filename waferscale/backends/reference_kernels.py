"""Published WSE kernels that are not kernels of a GPT, written as the instruction streams one PE
issues, so that ``benchmarks/calibrate.py`` can price them by the same cost table (``costs.py``)
as the model's own kernels and hold them against their measurements (issue 27).

Each function returns a ``Stream``: what the busiest PE issues (``InstructionCount``) and the
cycles it waits on the fabric beyond them (latency, links), which ``cycles(dp)`` adds. The loop
structures are the sources' where they give them (docs/calibration-sources.md) and ours where
they do not, each said below.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil, log2

from .costs import InstructionCount
from .datapath import Datapath
from .machine import WSE2


@dataclass
class Stream:
    core: InstructionCount  # what the PE issues
    fabric: float = 0.0  # cycles the PE waits on the fabric, not overlapped with its own work

    def cycles(self, dp: Datapath) -> float:
        return self.core.cycles(dp) + self.fabric


def summa_sgemm(n: int, p: int) -> Stream:
    """The SDK's SUMMA SGEMM (csl-examples ``gemm-collectives_2d/pe.csl``, task ``compute``) of an
    ``n x n x n`` product on ``p x p`` PEs, tiles ``t = ceil(n / p)``: ``p`` steps, each broadcasting
    the A tile along the row and the B tile along the column (``t * t`` wavelets each into every PE,
    through its ramp, after the broadcast's ``p - 1`` hops; not overlapped with compute), then
    ``for k in Kt: for j in Nt: b = Bp[..]; @fmacs(C[Mt], C[Mt], A[Mt], b); C_dsd += Mt``: per call a
    loop iteration, a scalar load, a descriptor moved, and an f32 AXPY of length ``t``. (Miyajima et
    al.'s own loop is not in their abstract: this is the closest published CSL SGEMM.)"""
    t = ceil(n / p)
    core = InstructionCount().add("task", p).add("recv", 2 * t * t * p)
    core.call("fmac", t, t * t * p).add("loop", t * t * p).add("scalar_load", t * t * p).add("dsd_setup", t * t * p)
    return Stream(core, fabric=p * (p - 1) * WSE2.hop_cycles)


# Jacquelin et al., arXiv 2204.03775, Sec. VI: per cell and time step 17 FMUL on a fabric operand,
# 17 FADD, 8 FMAC (the Z neighbours, in memory) and 1 FSUB.
STENCIL_OPS = {"fmul_fabric": 17, "fadd": 17 + 1, "fmac": 8}
STENCIL_RADIUS = 4  # a 25-point stencil reaches 4 cells each way


def stencil_25pt(nz: int, block: int) -> Stream:
    """One time step of Jacquelin et al.'s 25-point stencil on the PE that holds a column of ``nz``
    cells (Z in its memory, X and Y on the PE grid), in blocks of ``block`` cells: per block, one
    vector instruction of the block's length per op of ``STENCIL_OPS`` (the fabric FMULs take the
    neighbours' values from the ramp, at most one wavelet per cycle, so their receive is counted in
    them), one task per block. The sends of the PE's own block to its neighbours are fabric-output
    DSD ops that the source runs asynchronously (our reading: a microthread, overlapped with the
    arithmetic), so not counted on the datapath. The halo's first values arrive ``STENCIL_RADIUS``
    hops and a ramp after the step starts."""
    core = InstructionCount()
    for b in _blocks(nz, block):
        core.add("task")
        for kind, calls in STENCIL_OPS.items():
            core.call(kind, b, calls)
    return Stream(core, fabric=STENCIL_RADIUS * WSE2.hop_cycles + WSE2.ramp_cycles)


def _blocks(n: int, b: int) -> list[int]:
    k = ceil(n / b)
    return [n // k + (i < n % k) for i in range(k)]


def fft_pencil(n: int) -> InstructionCount:
    """One PE's radix-2 decimation-in-time FFT of a pencil of ``n`` complex f32 values, as the Cerebras
    SDK's published CSL FFT issues it (csl-examples ``benchmarks/FFT/fft.csl``, function ``fft``: the
    1D/2D FFT of wsFFT's authors' group, 2022; its README: "Cooley-Tukey, Decimation in Time, radix 2,
    ... iteration instead of recursion"). The pencil is ``2n`` reals (re, im interleaved), its halves
    ``n`` reals each; ``log2 n`` stages, stage ``s`` with ``h = n / 2^(s+1)`` complex values per
    sub-problem:

    - stage setup: 13 descriptor moves (``@set_dsd_*``, ``@increment_dsd_offset``);
    - the twiddle loop, ``2^s`` groups (``n - 1`` in all): a loop iteration, 2 scalar loads (the
      twiddle's re and im), an FMUL of ``2h`` reals by the re part, 2 FMACs of ``h`` (the cross terms
      by the im part, stride 2), 6 descriptor moves;
    - the butterfly: an FSUB and an FADD over the half (``n`` reals each);
    - the bit-reversal, done stage by stage (even / odd elements made contiguous: the README), all but
      the last stage: an FMOV of ``n`` reals, then 4 ``reshape`` loops of ``2^s`` iterations each, an
      FMOV of ``h`` and 2 descriptor moves per iteration (4 descriptor moves of setup each).

    The moves (FMOV) are priced as ``elementwise`` (the lanes, f32 at the table's rate)."""
    core = InstructionCount()
    stages = int(log2(n))
    for s in range(stages):
        groups, h = 2 ** s, n // 2 ** (s + 1)
        core.add("dsd_setup", 13)
        core.add("loop", groups).add("scalar_load", 2 * groups).add("dsd_setup", 6 * groups)
        core.call("fmul", 2 * h, groups).call("fmac", h, 2 * groups)
        core.call("fadd", n, 2)
        if h > 1:
            core.call("elementwise", n).add("dsd_setup", 4 * 4)
            core.add("loop", 4 * groups).add("dsd_setup", 2 * 4 * groups).call("elementwise", h, 4 * groups)
    return core


def fft_3d(n: int, p: int) -> Stream:
    """wsFFT (Orenes-Vera et al., ICS 2023, arXiv 2209.15040) of an ``n^3`` complex f32 array on ``p x p``
    PEs (n = p). From the abstract: three supersteps, each a 1D FFT of the PE's one pencil, with a
    redistribution (transpose) between them, an all-to-all along one mesh dimension with messages down
    to one word, that "achieves nearly peak bandwidth" (two transposes). The paper's body was not
    readable here: each superstep's FFT is the SDK's published loop (``fft_pencil``), one task each. A
    transpose sends each of the ``p - 1`` others one complex value (2 wavelets) and is bound by the
    row's middle link, which carries ``(p / 2)^2`` values each way (peak bandwidth: that link busy every
    cycle); the PE's own sends and receives ride its ramp; as in the SDK's 2D transpose
    (``ucode_2d.csl``) the values land in a second buffer, copied back by 2 FMOVs of ``2 (p - 1)``
    reals in all, after 6 tasks (the two directions' send, switch-advance and sync tasks)."""
    core = fft_pencil(n).times(3).add("task", 3)
    transposes = 2
    core.add("send", transposes * 2 * (p - 1)).add("recv", transposes * 2 * (p - 1))
    core.add("task", 6 * transposes).call("elementwise", p - 1, 2 * transposes)
    bisection = 2 * (p // 2) ** 2  # wavelets over the middle link, each way
    return Stream(core, fabric=transposes * (bisection + (p - 1) * WSE2.hop_cycles))
