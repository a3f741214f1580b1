"""The cost model's accounting held to hand counts: SRAM traffic per token through the ports,
the datapath's rate per dtype, and which roofline term binds. The cost table (backends/costs.py):
each instruction class's cost appears in a kernel's cycles exactly as often as the kernel issues
it; the fitted table reproduces the fit cases; the held-out published kernels are within the stated
tolerance, or marked with the reason they are not."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from waferscale.backends.costs import DEFAULT, InstructionCount
from waferscale.backends.datapath import Datapath
from waferscale.backends.gemm import core_instructions, gemm_time
from waferscale.backends.kernels.attention import Attention
from waferscale.backends.kernels.base import roofline_cycles
from waferscale.backends.kernels.embedding import Embedding
from waferscale.backends.kernels.matmul import Gemm
from waferscale.backends.kernels.rowwise import Rowwise
from waferscale.backends.machine import WSE2, WSE3, get_machine
from waferscale.backends.reference_kernels import fft_3d, fft_pencil, stencil_25pt, summa_sgemm
from waferscale.runtime.pe_sim import simulate_gemm

ROOT = Path(__file__).resolve().parent.parent
PRICES = {"vector_issue": None, "task_start": "task", "loop_iteration": "loop", "scalar_load": "scalar_load",
          "dsd_setup": "dsd_setup", "fabric_recv": "recv", "fabric_send": "send", "psum_add": "psum"}


def test_axpy_runs_at_the_slowest_of_lanes_and_ports():
    assert Datapath(lanes=4, elem=2, acc=2).axpy(100) == 25  # f16: 8 B of weights, 8 B of sums per cycle
    assert Datapath(lanes=4, elem=2, acc=4).axpy(100) == 50  # f32 sums: the one write port halves it
    assert Datapath(lanes=8, elem=2, acc=2).axpy(100) == 25  # 8 lanes, fed at 4 by the ports
    assert Datapath(lanes=1, elem=4, acc=4).axpy(100) == 200  # f32: 2 cycles an element (costs.f32_elem_cycles)
    assert Datapath(lanes=4, elem=2, acc=2).dot(100) == 25
    assert Datapath(lanes=4, elem=2, acc=2).axpy_traffic(10) == (40, 20)


def test_gemm_sram_traffic_per_token_is_the_axpy_count():
    g = Gemm(tokens=16, dtype="f16", elem=2, k=768, n=3072, bias=False, flops_per_token=2 * 768 * 3072)
    w = g.work(0, 1)
    # every MAC reads a weight (2 B) and a partial sum (2 B) and writes the partial sum (2 B)
    assert (w.sram_read, w.sram_write) == (768 * 3072 * 4, 768 * 3072 * 2)
    w32 = Gemm(tokens=16, dtype="f32", elem=4, k=768, n=3072, bias=False, flops_per_token=2 * 768 * 3072).work(0, 3)
    assert (w32.sram_read, w32.sram_write) == (3 * 768 * 3072 * 8, 3 * 768 * 3072 * 4)


def test_attention_sram_traffic_per_key_is_a_dot_and_an_axpy():
    a = Attention(tokens=8, dtype="f16", elem=2, heads=2, d_head=16, causal=True)
    w = a.work(0, 8)  # causal: 1 + 2 + ... + 8 = 36 keys per head
    pairs = 2 * 36 * 16
    assert w.sram_read == pairs * (3 * 2 + 2)  # q, k, v and the sums
    assert w.sram_write == pairs * 2


def test_rowwise_and_embedding_traffic():
    r = Rowwise(tokens=4, dtype="f16", elem=2, op="layernorm", features=100, inputs=1, params=2,
                flops_per_token=800)
    w = r.work(0, 4)
    assert (w.sram_read, w.sram_write) == (4 * 100 * 3 * 2, 4 * 100 * 2)
    e = Embedding(tokens=4, dtype="f16", elem=2, vocab=50, d=64, flops_per_token=0)
    assert (e.work(0, 4).sram_read, e.work(0, 4).sram_write) == (4 * 64 * 2, 0)


@pytest.mark.parametrize("machine,dtype,bound", [(WSE2, "f32", "compute"), (WSE3, "f16", "sram"),
                                                  (get_machine("mesh:64x64,fmac=8"), "f16", "sram")])
def test_the_sram_roofline_binds_where_the_ports_are_the_limit(machine, dtype, bound):
    elem = 2 if dtype == "f16" else 4
    g = Gemm(tokens=64, dtype=dtype, elem=elem, k=4096, n=4096, bias=False, flops_per_token=2 * 4096 * 4096)
    roof = roofline_cycles(g.work(0, 64), 64, 64, machine, dtype)
    assert max(roof, key=roof.get) == bound
    if bound == "sram":  # 8 f16 lanes want 32 B of reads a cycle; the ports give 16
        assert roof["sram"] == pytest.approx(2 * roof["compute"])
    cost = g.chunk(64, 64, 0, 64, machine)
    assert cost.bound == bound and cost.cycles >= cost.roofline


def test_a_wse2_f16_gemm_fills_the_ports_exactly():
    g = Gemm(tokens=64, dtype="f16", elem=2, k=4096, n=4096, bias=False, flops_per_token=2 * 4096 * 4096)
    roof = roofline_cycles(g.work(0, 64), 64, 64, WSE2, "f16")
    assert roof["sram"] == pytest.approx(roof["compute"])


def bumped(name, by=1):
    return replace(WSE2, costs=replace(DEFAULT, **{name: getattr(DEFAULT, name) + by}))


def issued(ic: InstructionCount, name: str) -> float:
    return sum(ic.vector.values()) if PRICES[name] is None else ic.scalar.get(PRICES[name], 0)


@pytest.mark.parametrize("name", list(PRICES))
@pytest.mark.parametrize("stream", [lambda: summa_sgemm(40, 4), lambda: stencil_25pt(30, 10), lambda: fft_3d(16, 16)])
def test_each_cost_counts_as_often_as_it_is_issued_in_the_reference_streams(name, stream):
    s = stream()
    dp, dp1 = WSE2.datapath("f32"), bumped(name).datapath("f32")
    assert s.cycles(dp1) - s.cycles(dp) == pytest.approx(issued(s.core, name))


@pytest.mark.parametrize("kt,nt", [(1, 1), (3, 7), (5, 16)])
@pytest.mark.parametrize("name", ["vector_issue", "task_start", "psum_add"])
def test_the_gemm_step_moves_by_its_instruction_counts(kt, nt, name):
    """A chain GEMM of m tokens on one column of ``kt`` rows: each token's step on a core issues one task,
    ``kt`` AXPYs and ``nt`` partial-sum adds; a cost moves the core's step by exactly that count."""
    ic = core_instructions(kt, nt, WSE2.datapath("f16"))
    assert ic.calls("fmac") == kt and ic.calls("task") == 1 and ic.calls("psum") == nt
    t0 = gemm_time(4, kt, nt, 1, 1, WSE2.datapath("f16"))
    t1 = gemm_time(4, kt, nt, 1, 1, bumped(name).datapath("f16"))
    assert t1.step - t0.step == issued(ic, name)


@pytest.mark.parametrize("m,k,n,rows,cols", [(3, 12, 10, 3, 2), (2, 8, 24, 2, 3), (1, 16, 16, 4, 4)])
@pytest.mark.parametrize("dtype", ["f16", "f32"])
def test_the_pe_level_pays_the_same_costs(m, k, n, rows, cols, dtype):
    """The PE-level simulator runs the same instruction stream: its cycles match the tile level's at the
    default table, and a bigger vector issue or task start moves both alike (f32 at its table rate)."""
    rng = np.random.default_rng(0)
    a, w = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    for machine in (WSE2, bumped("vector_issue", 5), bumped("task_start", 3)):
        dp = machine.datapath(dtype)
        assert simulate_gemm(a, w, rows, cols, dp).cycles == gemm_time(m, k, n, rows, cols, dp).total


def test_attention_and_rowwise_price_by_the_same_table():
    att = Attention(tokens=16, dtype="f16", elem=2, heads=4, d_head=8, causal=True)
    base, more = att.model_cycles(4, 4, 0, 16, WSE2), att.model_cycles(4, 4, 0, 16, bumped("vector_issue"))
    keys = float(np.ceil(np.arange(1, 17) / 4).sum())  # per token, the keys the busiest row holds
    assert more - base == pytest.approx(keys * att.key_instructions(WSE2.datapath("f16")).calls("dot") * 2)
    row = Rowwise(tokens=8, dtype="f16", elem=2, op="softmax", features=64, inputs=1, params=0, flops_per_token=1)
    d = row.model_cycles(2, 2, 0, 8, bumped("vector_issue")) - row.model_cycles(2, 2, 0, 8, WSE2)
    assert d == pytest.approx(8 / 2 * 4)  # 4 tokens a row, 4 vector passes each


def test_attention_partials_are_added_one_wavelet_per_cycle():
    att = Attention(tokens=4, dtype="f16", elem=2, heads=2, d_head=64, causal=True)
    # the chain down 3 rows: each row below the first adds once (pipelined), the last add runs the stream's
    # d_head + 2 wavelets, one per cycle (it was ceil(66 / 4) cycles a row)
    assert att.fill(3, 2, bumped("psum_add")) - att.fill(3, 2, WSE2) == 2 + 64 + 2


def test_f32_arithmetic_runs_at_the_tables_rate():
    dp = WSE2.datapath("f32")
    assert dp.vector("fmac", 44) == 88 and dp.vector("fadd", 10) == 20
    assert WSE2.datapath("f16").vector("fmac", 44) == 11  # f16: 4 lanes, the ports feed them


@pytest.fixture(scope="module")
def committed():
    return {r["case"]: r for r in json.loads((ROOT / "benchmarks/results/hardware_fidelity.json").read_text())["cases"]}


def test_the_fitted_table_reproduces_the_fit_cases(calibrate):
    for a in calibrate.load()["anchors"]:
        if a["split"] == "fit":
            err = calibrate.simulate(a)["cycles"] / calibrate.published_cycles(a) - 1
            assert abs(err) <= 0.05, calibrate.name(a)


HELD_OUT = ["stencil_25pt_3d_timestep 755x994x1000 f32", "stencil_25pt_3d_timestep 200x200x1000 f32",
            "stencil_25pt_3d_timestep 755x994x100 f32", "stencil_25pt_3d_timestep 755x994x400 f32",
            "fft_3d 512x512x512 f32"]


@pytest.mark.parametrize("case", HELD_OUT)
def test_held_out_cases_within_25_percent(calibrate, case):
    a = next(a for a in calibrate.load()["anchors"] if calibrate.name(a) == case)
    assert a["split"] == "holdout"
    err = calibrate.simulate(a)["cycles"] / calibrate.published_cycles(a) - 1
    assert abs(err) <= calibrate.TOLERANCE


def test_the_fft_pencil_issues_the_sdk_loop_by_hand_count():
    """An 8-point pencil through the SDK's fft.csl loop: 3 stages of 1, 2, 4 twiddle groups (7 in all:
    7 loop iterations, 14 twiddle loads, an FMUL and 2 FMACs each), an FSUB and an FADD over the half
    (8 reals) per stage, and the stage-wise bit reversal in the first two stages: an FMOV of 8 reals and
    4 reshape loops of 1 and 2 iterations (12 FMOVs of 4 and 2 reals: 2n a stage)."""
    ic = fft_pencil(8)
    assert ic.calls("loop") == 7 + 4 * (1 + 2) and ic.calls("scalar_load") == 14
    assert ic.calls("fmul") == 7 and ic.calls("fmac") == 14 and ic.calls("fadd") == 6
    assert ic.vector["fmul", 8] == 1 and ic.vector["fmul", 4] == 2 and ic.vector["fmul", 2] == 4
    assert ic.elements("fmul") == 3 * 8 and ic.elements("fmac") == 3 * 8  # every real once a stage
    assert ic.calls("elementwise") == 2 + 4 * (1 + 2) and ic.elements("elementwise") == 2 * 8 + 2 * (2 * 8)
    assert ic.calls("dsd_setup") == 3 * 13 + 6 * 7 + 2 * 16 + 8 * 3


def test_the_3d_fft_is_three_pencils_and_two_bisection_bound_transposes():
    p = 64
    s = fft_3d(p, p)
    assert s.core.calls("fmul") == 3 * fft_pencil(p).calls("fmul")
    assert s.fabric == 2 * (2 * (p // 2) ** 2 + (p - 1) * WSE2.hop_cycles)
