"""What a decode step's report accounts for: the time split adds up where kernels overlap (element
streaming), run.executed records the latency candidate's passes, and WaferLLM's mapping (every GEMM on
the whole mesh, kernels in program order: passes/latency.py ``spread``) places and simulates."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace as NS

import pytest

from waferscale.backends.machine import get_machine
from waferscale.backends.program import Rect
from waferscale.errors import VerifyError
from waferscale.generate import compile_generate
from waferscale.passes.latency import ancestors, concurrent, place_latency, verify_latency
from waferscale.passes.route import route
from waferscale.runtime.tile_sim import simulate
from waferscale.runtime.time_split import time_split


def _chain(spans, fills):
    """A chain of kernels, each fed by the one before, on cores of their own."""
    kernels = [NS(model=NS(fill=lambda r, c, m, f=f: f)) for f in fills]
    flows = [NS(src=k - 1, dst=k) for k in range(1, len(fills))]
    placement = NS(machine=None, mode="pipelined", rects=[Rect(0, 4 * k, 2, 2) for k in range(len(fills))])
    sim = NS(spans=[(k, 0, 0, a, b) for k, (a, b) in enumerate(spans)])
    return NS(kernels=kernels, flows=flows), placement, sim


def test_split_counts_a_streamed_consumers_overlap_once():
    # kernel 1 starts on kernel 0's first elements, 50 cycles before kernel 0 is done: the step ends at 210
    prog, placement, sim = _chain([(0, 100), (50, 200)], [20, 10])
    split = time_split(prog, placement, sim)
    assert sum(split.values()) == 210  # it was 260: the 50 overlapped cycles counted in both kernels
    assert split == {"compute": 200, "fabric": 0, "fill": 10, "wait": 0}


def test_split_unchanged_where_nothing_overlaps():
    # kernel 1 starts 5 cycles into kernel 0's fill (its first elements), kernel 2 30 cycles after kernel 1's output
    prog, placement, sim = _chain([(10, 100), (105, 200), (250, 300)], [20, 10, 5])
    split = time_split(prog, placement, sim)
    assert split == {"compute": 90 + 95 + 50, "fabric": 10 + 40, "fill": 5 + 5 + 10, "wait": 0}
    assert sum(split.values()) == 305


@pytest.fixture(scope="module")
def tiny_auto():
    return compile_generate("tiny-llama", prompt_len=8, new_tokens=4, batch=1, target="mesh:48x48")


def test_executed_records_the_latency_candidate(tiny_auto):
    ex = tiny_auto.report["run"]["executed"]
    assert tiny_auto.report["generate"]["placement_kind"] == "latency"
    assert ex["decode"].endswith(",lower,place{mode=pipelined},route,simulate{chunk=1}")  # the throughput candidate
    assert ex["decode/latency"].endswith(",lower,latency-placement,route,simulate{chunk=1}")
    assert ex["decode_last/latency"].endswith(",lower,simulate{chunk=1}")
    assert ex["prefill/latency"].endswith(",lower,route,simulate{chunk=64}")


def test_executed_has_no_latency_keys_without_the_candidate():
    c = compile_generate("tiny-llama", prompt_len=8, new_tokens=4, batch=1, target="mesh:48x48",
                         placement="throughput")
    assert not any(k.endswith("/latency") for k in c.report["run"]["executed"])


def test_spread_puts_every_gemm_on_the_whole_mesh(tiny_auto):
    prog = tiny_auto.state.program
    m = get_machine("mesh:48x48")
    p = place_latency(prog, m, spread=True)
    assert p.serial
    anc = ancestors(prog)
    gemms = [k for k, n in enumerate(prog.kernels) if type(n.model).__name__ == "Gemm"]
    assert len(gemms) >= 7
    for k in gemms:
        r, n = p.rects[k], prog.kernels[k].model
        assert (r.row, r.col, r.rows, r.cols) == (0, 0, min(48, n.max_rows()), min(48, n.max_cols()))
    # independent kernels (q / k / v) share cores: they run one after another, which the check allows only here
    shared = [(i, j) for i in gemms for j in gemms
              if i < j and concurrent(anc, i, j) and p.rects[i].overlaps(p.rects[j])]
    assert shared
    verify_latency(prog, p)
    with pytest.raises(VerifyError):
        verify_latency(prog, replace(p, serial=False))
    sim = simulate(prog, p, route(prog, p), chunk=1)
    spans = {k: (a, b) for k, s, c, a, b in sim.spans}
    i, j = shared[0]
    assert spans[j][0] >= spans[i][1]  # in program order, one after the other


def test_waferllm_study_cuts_wse2_to_a_square(tmp_path, monkeypatch):
    import importlib.util
    import json
    from pathlib import Path

    bench = Path(__file__).resolve().parent.parent / "benchmarks"
    monkeypatch.syspath_prepend(str(bench))
    spec = importlib.util.spec_from_file_location("waferllm_mesh", bench / "waferllm_mesh.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    m, wse2 = get_machine(str(mod.machine_file(420, tmp_path))), get_machine("wse2")
    assert (m.rows, m.cols, m.fabric_rows, m.fabric_cols) == (420, 420, 420, 420)
    assert (m.clock_hz, m.fmacs_per_cycle, m.sram_bytes, m.hop_cycles) == \
        (wse2.clock_hz, wse2.fmacs_per_cycle, wse2.sram_bytes, wse2.hop_cycles)
    cfg = json.loads((mod.config(660, 2, tmp_path) / "config.json").read_text())
    assert (cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]) == (4620, 14520, 2)
    assert cfg["num_attention_heads"] * cfg["head_dim"] == 4620
