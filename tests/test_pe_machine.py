"""The PE-level simulators check the machine they are given (issue 27): they move a wavelet one stage a
cycle, so a machine with another ramp or partial-sum add is refused with one "not supported" line
(the CLI: exit 2, before any output), where the tile level still runs it. A hop of several cycles
(a WSE-3's 2) is a delay line on each link (``runtime/pe_links.py``), which every one of them has."""

from dataclasses import replace

import numpy as np
import pytest

from waferscale.backends.machine import HERE, WSE2, WSE3
from waferscale.cli import main
from waferscale.errors import UnsupportedError
from waferscale.runtime.pe_chain import simulate_chain
from waferscale.runtime.pe_machine import check_machine
from waferscale.runtime.pe_rowwise import simulate_layernorm
from waferscale.runtime.pe_sim import simulate_gemm, simulate_gemv
from waferscale.runtime.pe_streamed import simulate_streamed

RNG = np.random.default_rng(0)
A, W = RNG.standard_normal((2, 8)).astype(np.float32), RNG.standard_normal((8, 6)).astype(np.float32)
X = RNG.standard_normal((3, 8)).astype(np.float32)

OFF = [(replace(WSE2, name="slow-ramp", ramp_cycles=3), "ramp_cycles = 3"),
       (replace(WSE2, name="slow-add", costs=replace(WSE2.costs, psum_add=2)), "costs.psum_add = 2")]
HOPS = [replace(WSE2, name="slow-hop", hop_cycles=2), WSE3]  # a WSE-3's hop is 2 cycles (wse3.yaml)
RUNS = {
    "gemm": lambda m: simulate_gemm(A, W, 2, 2, m.datapath("f16"), machine=m),
    "gemm tree": lambda m: simulate_gemm(A, W, 4, 2, m.datapath("f16"), reduce="tree", machine=m),
    "gemv": lambda m: simulate_gemv(A[0], W, 2, 2, m.datapath("f16"), machine=m),
    "chain": lambda m: simulate_chain(A[0], [(W, 2, 2)], m.datapath("f16"), 1, machine=m),
    "streamed": lambda m: simulate_streamed(A, W, 2, 2, m.datapath("f16"), machine=m),
    "layernorm": lambda m: simulate_layernorm(X, 2, 4, m.datapath("f32").rate, machine=m),
}


@pytest.mark.parametrize("run", list(RUNS))
@pytest.mark.parametrize("machine,what", OFF, ids=[m.name for m, _ in OFF])
def test_each_pe_simulator_refuses_a_machine_it_does_not_model(run, machine, what):
    with pytest.raises(UnsupportedError, match=rf"^not supported: the PE-level .* on machine '{machine.name}' "
                       rf"with {what}: it moves a wavelet on or off a ramp in one cycle"):
        RUNS[run](machine)


@pytest.mark.parametrize("run", list(RUNS))
def test_the_shipped_wse2_runs(run):
    RUNS[run](WSE2)  # one-cycle hops and ramps: no error


@pytest.mark.parametrize("run", list(RUNS))
@pytest.mark.parametrize("machine", HOPS, ids=[m.name for m in HOPS])
def test_every_pe_simulator_runs_a_two_cycle_hop_and_takes_longer(run, machine):
    """Each has delay lines on its links (runtime/pe_links.py; the cycles are held to the tile level in
    tests/test_pe_links.py, test_streamed_gemm.py, test_streaming_chain.py and test_pe_rowwise.py)."""
    r, one = RUNS[run](machine), RUNS[run](WSE2)
    want = {"chain": A[0] @ W, "gemv": A[:1] @ W, "layernorm": getattr(one, "y", None)}.get(run, A @ W)
    np.testing.assert_allclose(r.y if run in ("chain", "layernorm") else r.c, want, rtol=1e-5, atol=1e-5)
    assert r.cycles > one.cycles


def test_a_hop_of_no_cycles_is_refused_even_where_hops_are_delay_lines():
    with pytest.raises(UnsupportedError, match="hop_cycles = 0"):
        simulate_gemm(A, W, 2, 2, WSE2.datapath("f16"), machine=replace(WSE2, name="no-hop", hop_cycles=0))


def test_the_datapaths_costs_are_checked_too():
    """A run priced by a datapath whose table has another partial-sum add is refused even on WSE-2."""
    dp = replace(WSE2.datapath("f16"), costs=replace(WSE2.costs, psum_add=3))
    with pytest.raises(UnsupportedError, match="costs.psum_add = 3"):
        check_machine(WSE2, dp)
    with pytest.raises(UnsupportedError, match="costs.psum_add = 3"):
        simulate_gemm(A, W, 2, 2, dp)


def user_file(tmp_path, name: str, **values: int):
    """wse2.yaml with some figures changed, as a user would write it."""
    text = (HERE / "wse2.yaml").read_text(encoding="utf-8").replace('name: "wse2"', f'name: "{name}"')
    lines = text.splitlines(keepends=True)
    for field, value in values.items():
        lines[lines.index(f"{field}:\n") + 1] = f"  value: {value}\n"
    path = tmp_path / f"{name}.yaml"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_the_cli_refuses_a_user_file_at_the_pe_level_in_one_line(capsys, tmp_path):
    path = user_file(tmp_path, "slow-ramp", ramp_cycles=2)
    args = ["simulate-kernel", "gemm", "--m", "2", "--k", "16", "--n", "16", "--mesh", str(path)]
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip().splitlines() == ["wafer: error: "
        "not supported: the PE-level simulator on machine 'slow-ramp' with ramp_cycles = 2: it moves a wavelet on or "
        "off a ramp in one cycle, adds a partial sum in one and hops in one or more (ramp_cycles = costs.psum_add = 1, "
        "hop_cycles >= 1); use the tile level (--level tile)"]
    assert main(args + ["--level", "tile"]) == 0 and "tile level:" in capsys.readouterr().out


def test_the_cli_runs_a_two_cycle_hop_at_the_pe_level_and_the_tile_level_agrees(capsys, tmp_path):
    path = user_file(tmp_path, "two-hop", hop_cycles=2, rows=48, cols=40)
    for reduce in ("chain", "tree"):
        args = ["simulate-kernel", "gemm", "--m", "1", "--k", "1000", "--n", "997", "--mesh", str(path),
                "--reduce", reduce]
        assert main(args) == 0
        out = capsys.readouterr().out
        assert "pe level:" in out and "tile vs pe: +0.00%" in out, out
