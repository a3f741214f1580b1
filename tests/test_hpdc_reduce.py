"""benchmarks/hpdc_reduce.py: the HPDC'24 Reduce model as written, and our side of it read off the kernel."""

import importlib.util
from pathlib import Path

from waferscale.backends.gemm import gemm_time
from waferscale.backends.machine import WSE2, get_machine

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _mod(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("hpdc_reduce", BENCH / "hpdc_reduce.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_hpdc_model_by_hand(monkeypatch):
    h = _mod(monkeypatch)
    # chain of 4 PEs, 8 elements: max(C = 8, E/N + L = 24/3 + 3) + (2 * 2 + 1) * 3 = 11 + 15
    assert h.hpdc_chain(4, 8) == 26
    assert h.hpdc_chain(4, 8, t_r=1) == 11 + 9
    # the stream term wins when C is the bottleneck
    assert h.hpdc_time(c=100, e=10, n=5, length=3, depth=2) == 100 + 10


def test_our_side_is_the_kernels_chain(monkeypatch):
    """The script's "ours" is what the mesh GEMM charges down a column: its fill, less the edge hop,
    is ``(P - 1)`` stages of hop + ramp + add."""
    h = _mod(monkeypatch)
    dp = WSE2.datapath("f16")
    for p in (2, 8, 33):
        t = gemm_time(1, p, 16, p, 1, dp, resident_a=True, machine=WSE2)
        assert t.fill == WSE2.hop_cycles + (p - 1) * h.our_stage(WSE2)
    assert h.our_stage(WSE2) == 3 and h.our_chain(8, 1) == 22


def test_ramp_machine_file_changes_only_the_ramp(monkeypatch, tmp_path):
    h = _mod(monkeypatch)
    m, wse3 = get_machine(str(h.ramp_machine_file(4, tmp_path))), get_machine("wse3")
    assert m.ramp_cycles == 4 and wse3.ramp_cycles == 1
    assert (m.hop_cycles, m.clock_hz, m.rows, m.cols) == (wse3.hop_cycles, wse3.clock_hz, wse3.rows, wse3.cols)
