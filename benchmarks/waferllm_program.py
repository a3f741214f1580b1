"""WaferLLM's own decode layer, priced instruction by instruction with our cost table (issue 26).

``benchmarks/waferllm_mesh.py`` simulates the *computation* of WaferLLM's LLaMA3-8B layer with our
kernels; this module instead walks WaferLLM's *program* (github.com/MeshInfra/WaferLLM at 2cd13b5,
``Decode/WSE-2/src/decode.csl`` ``decode_struct`` and ``comm_lib/comm_pe.csl``) call by call, prices
every call with our own figures (``backends/costs.py``: vector issue, DSD setup, loop iteration;
``backends/datapath.py``: element rates; the machine's hop and ramp; ``assumptions.TRANSCENDENTAL_
CYCLES`` for a scalar divide or square root), and adds up one layer's critical path. Nothing here is
fitted to the decode figures. It answers where the ~1,300 cycles a layer that WaferLLM measures beyond
our simulated layer go: into code their program runs that our mapping does not.

What the program does, per layer, on every core of the P x P mesh in program order (a core blocks on
each fabric DSD op, so every allreduce is on the path):

- **GEMV** (``vecmat_computation``, L269): ``@fmovh`` zeroes the output, ``@map`` issues one
  ``@fmach`` of ``Nt`` per element of the local input (``Kt`` of them); 3 DSR loads and 3 descriptor
  edits around it.
- **allreduce** (``two_tree_allreduce_*``, comm_pe.csl L229-L1190): phase 1 a chain of cores to each
  group's root (``group_num`` groups of ``P / group_num``, root at the group's middle), phase 2 the
  roots' chain to the centre root, then the centre root sends the sums back along the whole line
  (``@fmovh`` to each side, one after the other). Each core on a chain adds and forwards (hop, ramp,
  one add per wavelet); a root adds its two incoming streams one after the other (a second DSD op:
  its issue and its ``n`` wavelets are on the path). Ten a layer: the two RMSNorms' and the softmax's
  max and sum (one wavelet each), q/k/v fused, the scores, the attention output, o, up/gate fused, down.
- **glue**: RMSNorm unfused (square, local sum, scale by ``W``, then a scalar ``@map`` with two f16
  divides and a square root: L293, L557), RoPE on q and k (six vector ops each, L373, L415), the
  score scale (L477), the softmax's local max, subtract, a scalar ``fast_exp`` per score (``@map`` with a
  scalar callback, L498), local sum and a divide (L480-L514), two residual adds (L550, L657), SiLU as a
  scalar ``for`` loop (L626: ``dim_p_pe`` iterations, each an exp and a divide) and the gate product
  (L633).

Assumed (no source gives them): an ``@map`` iteration over a scalar callback costs one vector issue
(the fitted per-element cost of MeshGEMV's ``@map`` over ``@fmach``) plus its scalar operations at one
cycle each (``TRANSCENDENTAL_CYCLES`` for a divide or square root); a ``for`` iteration costs a loop
iteration (``costs.loop_iteration``) plus its scalar operations.
"""

from __future__ import annotations

from math import ceil

from waferscale.backends import assumptions as A
from waferscale.backends.costs import InstructionCount

T = A.TRANSCENDENTAL_CYCLES


def _vec(ic: InstructionCount, kind: str, n: int, setups: int = 0) -> InstructionCount:
    return ic.call(kind, n).add("dsd_setup", setups)


def allreduce(n: int, p: int, groups: int, machine) -> dict:
    """Critical-path cycles of one ``two_tree_allreduce`` of ``n`` wavelets along a line of ``p`` cores
    in ``groups`` groups: ``fabric`` (the hops, ramps and adds of the chains and the broadcast, and
    the streams' lengths) and ``issue`` (the DSD ops a root issues after its data arrived)."""
    g = p // groups
    r1 = g // 2  # root_1st_phase (run_wse2.sh)
    stage = machine.hop_cycles + machine.ramp_cycles + machine.costs.psum_add
    phase1 = max(r1, g - 1 - r1) * stage + n  # a chain of cores into the group root, pipelined
    c = groups // 2  # the centre group (root_2nd_phase)
    phase2 = max(c, groups - 1 - c) * (g * machine.hop_cycles + machine.ramp_cycles + machine.costs.psum_add) + n
    roots = 2 * n  # each root's second incoming stream, added after the first (phase 1 and phase 2)
    root2 = c * g + r1
    scatter = 2 * n + max(root2, p - 1 - root2) * machine.hop_cycles + 2 * machine.ramp_cycles + n
    issue = 2 + 2  # the second add of the group root and of the centre root; the two broadcast sends
    return {"fabric": phase1 + phase2 + roots + scatter, "issue": issue * machine.costs.vector_issue}


def gemv(kt: int, nt: int) -> InstructionCount:
    """``vecmat_computation``: the zeroing ``@fmovh``, ``kt`` AXPYs of ``nt``, 6 descriptor edits."""
    return InstructionCount().call("elementwise", nt).call("fmac", nt, kt).add("dsd_setup", 6)


def glue() -> dict:
    """The layer's calls outside its GEMVs and allreduces, as ``(vector calls, scalar work)`` builders
    of the per-core lengths ``d`` (dim / P), ``s`` (seq / P), ``f`` (ffn / P)."""

    def rmsnorm(d: int) -> InstructionCount:
        ic = InstructionCount()
        _vec(ic, "fmul", d, 3)  # x * x
        _vec(ic, "fadd", d, 2)  # local sum into a scalar
        _vec(ic, "fmul", d, 5)  # * W
        _vec(ic, "fmul", d, 3)  # * 1/rms (the @map's one iteration)
        ic.add("lane", 2 * T + T + 1)  # / head_dim, + eps, sqrt, 1 / ...
        return ic

    def rope(d: int) -> InstructionCount:
        ic = InstructionCount()
        for _ in range(4):
            _vec(ic, "fmul", d // 2, 2)
        _vec(ic, "fadd", d // 2, 3)
        _vec(ic, "fadd", d // 2, 3)
        return ic.add("dsd_setup", 4 + 8)  # four dest DSRs, four cos/sin loads, base and offset edits

    def softmax(s: int) -> InstructionCount:
        ic = InstructionCount()
        _vec(ic, "fmul", s, 2)  # * alpha (score_matvec_mult)
        _vec(ic, "fadd", s, 2)  # local max
        _vec(ic, "fadd", s, 4)  # - max (@map, one iteration)
        ic.call("elementwise", 1, s).add("lane", 4 * s)  # fast_exp per score: @map over a scalar callback
        _vec(ic, "fadd", s, 2)  # local sum
        _vec(ic, "fmul", s, 4)  # * 1/sum (@map, one iteration)
        return ic.add("lane", T)

    def ffn_tail(d: int, f: int) -> InstructionCount:
        ic = InstructionCount().add("loop", d).add("lane", d * (5 + 2 * T))  # z2_silu: neg, exp, +1, divide
        _vec(ic, "fmul", f, 3)  # z3 = z1 * z2
        return ic

    def residuals(d: int) -> InstructionCount:
        ic = InstructionCount()
        _vec(ic, "fadd", d, 3)
        _vec(ic, "fadd", d, 3)
        return ic

    return {"rmsnorm x2": lambda d, s, f: rmsnorm(d).times(2), "rope q,k": lambda d, s, f: rope(d).times(2),
            "softmax": lambda d, s, f: softmax(s), "silu, gate product": lambda d, s, f: ffn_tail(d, f),
            "residual adds": lambda d, s, f: residuals(d)}


def layer(p: int, groups: int, dim: int, ffn: int, seq: int, machine) -> dict:
    """One decode layer of WaferLLM's program on a ``p`` x ``p`` mesh, in cycles by part."""
    dp = machine.datapath("f16")
    d, s, f = ceil(dim / p), ceil(seq / p), ceil(ffn / p)
    gemvs = InstructionCount()
    for kt, nt, calls in ((d, d, 3), (d, s, 1), (s, d, 1), (d, d, 1), (d, f, 2), (f, d, 1)):
        gemvs += gemv(kt, nt).times(calls)
    lengths = (1, 3 * d, s, 1, 1, d, d, 1, 2 * f, d)  # decode_struct's ten allreduces, in order
    reduces = [allreduce(n, p, groups, machine) for n in lengths]
    out = {"gemv": gemvs.cycles(dp),
           "allreduce fabric": sum(r["fabric"] for r in reduces),
           "allreduce issue": sum(r["issue"] for r in reduces)}
    for name, build in glue().items():
        out[name] = build(d, s, f).cycles(dp)
    out["total"] = sum(out.values())
    return out
