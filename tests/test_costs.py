"""The cost table (backends/costs.py): each instruction class's cost appears in a kernel's cycles
exactly as often as the kernel issues it; the fitted table reproduces the fit cases; the held-out
published kernels are within the stated tolerance, or marked with the reason they are not."""

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from waferscale.backends.costs import DEFAULT, InstructionCount
from waferscale.backends.gemm import core_instructions, gemm_time
from waferscale.backends.kernels.attention import Attention
from waferscale.backends.kernels.rowwise import Rowwise
from waferscale.backends.machine import WSE2
from waferscale.backends.reference_kernels import fft_3d, stencil_25pt, summa_sgemm
from waferscale.runtime.pe_sim import simulate_gemm

ROOT = Path(__file__).resolve().parent.parent
PRICES = {"vector_issue": None, "task_start": "task", "loop_iteration": "loop", "scalar_load": "scalar_load",
          "dsd_setup": "dsd_setup", "fabric_recv": "recv", "fabric_send": "send", "psum_add": "psum"}


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


@pytest.fixture(scope="module")
def calibrate():
    spec = importlib.util.spec_from_file_location("calibrate", ROOT / "benchmarks" / "calibrate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_fitted_table_reproduces_the_fit_cases(calibrate):
    for a in calibrate.load()["anchors"]:
        if a["split"] == "fit":
            err = calibrate.simulate(a)["cycles"] / calibrate.published_cycles(a) - 1
            assert abs(err) <= 0.05, calibrate.name(a)


HELD_OUT = ["stencil_25pt_3d_timestep 755x994x1000 f32", "stencil_25pt_3d_timestep 200x200x1000 f32",
            "stencil_25pt_3d_timestep 755x994x100 f32", "stencil_25pt_3d_timestep 755x994x400 f32",
            pytest.param("fft_3d 512x512x512 f32", marks=pytest.mark.xfail(
                strict=True, reason="-29% (outside 25%): wsFFT's per-PE loop and transposes are not in the abstract "
                "we could read; ours is a guess (benchmarks/results/hardware_fidelity.md)"))]


@pytest.mark.parametrize("case", HELD_OUT)
def test_held_out_cases_within_25_percent(calibrate, case):
    a = next(a for a in calibrate.load()["anchors"] if calibrate.name(a) == case)
    assert a["split"] == "holdout"
    err = calibrate.simulate(a)["cycles"] / calibrate.published_cycles(a) - 1
    assert abs(err) <= calibrate.TOLERANCE
