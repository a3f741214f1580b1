"""Training at cluster scale: MemoryX's overlapped update, SwarmX's tree, gradient accumulation,
time to train, multicast colours, and the paper-scaling benchmark's results."""

import dataclasses
import json
from math import log
from pathlib import Path

import pytest

from waferscale.backends import memoryx as MX
from waferscale.backends.machine import WSE2
from waferscale.backends.swarmx import SwarmX
from waferscale.errors import FitError, UsageError
from waferscale.passes.route import route
from waferscale.runtime import train_time as TT
from waferscale.runtime.tile_sim import GroupTime
from waferscale.training import compile_training

from .test_wafer import placed

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def _backward(layers: int, params: int, compute: int, grad_cycles: int) -> list[GroupTime]:
    """A backward pass of ``layers`` equal layers, each ``compute`` cycles, its gradients out after."""
    out, t = [], 0
    for i in range(layers):
        out.append(GroupTime(f"backward:l{i}", 0, t, t, t, t + compute, 2 * params, t + compute + grad_cycles, params))
        t += compute
    return out


@pytest.mark.parametrize("compute", [2_000, 20_000, 200_000])
def test_overlapped_update_exposes_at_most_one_layers_update(compute):
    memx = MX.memoryx_for(WSE2)
    params = 1_000_000
    one = memx.update_cycles(params, WSE2.clock_hz)
    groups = _backward(8, params, compute, 100)
    with_overlap = MX.update_schedule(groups, memx, WSE2.clock_hz)
    without = MX.update_schedule(groups, memx, WSE2.clock_hz, overlap=False)
    assert with_overlap.total == pytest.approx(8 * one) == pytest.approx(without.total)
    assert without.exposed == pytest.approx(8 * one)  # every update after the backward
    if compute >= one:  # MemoryX keeps up: only the last layer's update is left
        assert with_overlap.exposed <= one + 1e-6
    else:  # it does not: the updates queue, and what is left is the queue, still less than all of them
        assert one < with_overlap.exposed < without.exposed
    # train_time's entry point is the same schedule
    assert TT.memoryx_optimizer(groups, WSE2, memx) == (with_overlap.total, with_overlap.exposed)


def test_memoryx_figures_are_sourced_and_sane():
    memx = MX.memoryx_for(WSE2)
    assert memx.link_bytes_per_s == WSE2.io_bytes_per_s == 150e9
    assert memx.capacity_bytes == 4e12
    assert memx.update_bytes_per_s == MX.NODES * 2 * 204.8e9 * MX.STREAM_FRACTION
    assert "our assumption" in memx.as_dict()["sources"]


def test_swarmx_cost_grows_with_log_systems():
    sx = [SwarmX(n, 150e9) for n in (1, 2, 4, 16, 64, 256)]
    assert [s.levels for s in sx] == [0, 1, 1, 2, 3, 4]
    nbytes = 1e9
    base = nbytes / 150e9  # one system: the stream at the link's rate, no tree
    assert sx[0].stream_s(nbytes) == pytest.approx(base)
    extra = [s.stream_s(nbytes) - base for s in sx[1:]]
    # each factor of 4 in systems adds one level's latency: log growth, not linear
    assert extra[2] - extra[1] == pytest.approx(extra[3] - extra[2]) == pytest.approx(SwarmX(4, 1).level_latency_s)
    for s in sx[2:]:
        assert s.stream_s(nbytes) - base <= SwarmX(4, 1).level_latency_s * (log(s.systems, 4) + 1)
    assert SwarmX(256, 150e9).stream_s(nbytes) < 1.01 * base  # 256 systems cost about what one does


def test_micro_batch_changes_step_time_and_memory():
    r = {mb: compile_training("tiny", batch=4, seq=32, target="mesh:48x48", mode="streaming",
                              micro_batch=mb).report["train"] for mb in (1, 4)}
    assert (r[1]["micro_batch"], r[1]["micro_batches"], r[4]["micro_batches"]) == (1, 4, 1)
    assert r[1]["step_seconds"] > r[4]["step_seconds"]  # four passes of the weights instead of one
    assert r[1]["stream_in_bytes"] == 4 * r[4]["stream_in_bytes"]
    assert r[1]["sram_per_core"]["reserved"] < r[4]["sram_per_core"]["reserved"]  # fewer activations kept
    assert r[4]["memoryx"]["optimizer_runs_in"].startswith("MemoryX")


def test_micro_batch_errors_are_one_line():
    with pytest.raises(UsageError, match=r"--micro-batch 3 does not divide the batch per system \(4\)"):
        compile_training("tiny", batch=4, seq=32, target="mesh:48x48", micro_batch=3)
    with pytest.raises(UsageError, match=r"drop --mode pipelined"):
        compile_training("tiny", batch=4, seq=32, target="mesh:48x48", mode="pipelined", micro_batch=2)
    with pytest.raises(FitError, match=r"--micro-batch 64 does not fit tiny on mesh:12x12 .* give --micro-batch \d+"):
        compile_training("tiny", batch=64, seq=128, target="mesh:12x12", mode="streaming", micro_batch=64)


def test_time_to_train_defaults_to_the_papers_tokens():
    t = TT.time_to_train("cerebras-gpt-13b", 13_000_000_000, 2.0, 720 * 2048, 16, 8e10)
    assert t["tokens"] == 2.57e11 and t["tokens_source"] == "the Cerebras-GPT paper"
    assert t["steps"] == -(-2.57e11 // (720 * 2048))
    assert t["days"] == pytest.approx(t["steps"] * 2.0 / 86400) and t["system_days"] == pytest.approx(16 * t["days"])
    assert t["paper"]["flops"] == 2.3e22
    other = TT.time_to_train("tiny", 1000, 1.0, 100, 1, 6e3)
    assert other["tokens"] == 20_000 and other["steps"] == 200 and "paper" not in other
    assert TT.time_to_train("tiny", 1000, 1.0, 100, 1, 6e3, tokens=1e3)["steps"] == 10


def test_flows_of_one_value_share_a_colour():
    _, p = placed("mesh:32x32")
    prog, pl = p.program, p.placement
    base = route(prog, pl)
    i, f = next((i, f) for i, f in enumerate(prog.flows) if f.src >= 0 and f.src != f.dst and base.routes[i].links)
    twin = dataclasses.replace(f)  # the same value to the same consumer again: multicast, no new colour
    other = dataclasses.replace(f, value=f.value + ".other")  # another value on the same route: a colour more
    same = route(dataclasses.replace(prog, flows=prog.flows + (twin,)), pl)
    more = route(dataclasses.replace(prog, flows=prog.flows + (other,)), pl)
    assert same.link_colors == base.link_colors
    for link in base.routes[i].links:
        assert more.link_colors[link] == base.link_colors[link] + 1


def test_scaling_benchmark_has_a_row_per_model_and_systems():
    rec = json.loads((RESULTS / "paper_scaling.json").read_text())
    rows = {(r["model"], r["systems"]) for r in rec["rows"]}
    want = {(m, n) for m in rec["models"] for n in rec["systems"]}
    assert len(rec["rows"]) == len(rows) and rows <= want
    if rec["complete"]:  # a run cut short says so, and keeps what it measured
        assert rows == want
    else:
        assert "partial" in (RESULTS / "paper_scaling.md").read_text()
    micro = {}
    for r in rec["rows"] + rec["published"]:  # one batch and micro-batch per model: never above linear
        if "error" not in r:
            assert 0 < r["efficiency"] <= 1 + 1e-9
            assert r["efficiency"] == pytest.approx(r["speedup"] * r["base_systems"] / r["systems"])
            assert micro.setdefault(r["model"], (r["batch"], r["micro_batch"])) == (r["batch"], r["micro_batch"])
            assert r["batch"] % (r["systems"] * r["micro_batch"]) == 0
            assert r["efficiency_at_rate"]["0.5"] <= r["efficiency_at_rate"]["2"] + 1e-9


def test_pipelined_training_that_does_not_route_says_how_many_colours_and_what_to_do(monkeypatch):
    """cerebras-gpt-111m's layer-pipelined step needs 45 colours on one link of a WSE-2's 24 (its saved
    activations cross the fold); the same refusal, on a tiny model and a machine of 8 colours."""
    from waferscale.backends import machine as M
    from waferscale.passes.route import RoutingError

    monkeypatch.setitem(M.MACHINES, "wse2", dataclasses.replace(WSE2, colors=8))
    with pytest.raises(RoutingError, match=r"tiny does not fit layer-pipelined training on wse2: \d+ colors needed "
                                           r"on one link, 8 available \(\d+ distinct values cross it.*\); use weight "
                                           r"streaming \(--mode streaming\)$") as e:
        compile_training("tiny", batch=2, seq=32, target="wse2", mode="pipelined")
    assert e.value.needed > e.value.available == 8


def test_memoryx_rate_sensitivity_and_the_scaling_curve_of_a_step():
    memx = MX.memoryx_for(WSE2)
    groups = _backward(8, 50_000_000, 2_000_000, 100)  # updates slower than the backward at half the rate
    base = MX.update_schedule(groups, memx, WSE2.clock_hz).exposed
    sens = TT.rate_sensitivity(groups, WSE2, memx, 1e9)
    assert sens["0.5"]["exposed_seconds"] > base / WSE2.clock_hz >= sens["2"]["exposed_seconds"]
    assert sens["0.5"]["update_bytes_per_s"] == memx.update_bytes_per_s / 2
    curve = TT.scaling_curve(48, 1, 3, 0.1, 0.05, 20, WSE2)
    pts = {p["systems"]: p for p in curve["points"]}
    assert set(pts) == {1, 2, 4, 8, 16}  # 48 / N is a multiple of the micro-batch of 3 for each
    effs = [pts[n]["efficiency"] for n in sorted(pts)]
    assert effs[0] == 1 and all(a >= b for a, b in zip(effs, effs[1:])) and effs[-1] < 1  # the tail, 16 x
    assert pts[16]["micro_batches"] == 1
    assert TT.scaling_curve(12, 1, 3, 0.1, 0.0, 20, WSE2)["points"][-1]["systems"] == 4  # 12 / 8 is not whole
