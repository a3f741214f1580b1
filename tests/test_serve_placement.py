"""A serving engine's placement (`wafer serve --placement`, ``serve/engine_placement.py``): the
latency placement against the throughput one at batch 1, auto's choice at the operating point and
its reason in the report, the fall-back when the latency placement does not fit, and the option
through `wafer replay` and the sweep, on the tiny model."""

import json

import pytest

from waferscale.errors import FitError
from waferscale.serve import wafer as W
from waferscale.serve.engine_placement import KINDS, Load, expected_batch
from waferscale.serve.loop import serve
from waferscale.serve.policies import Colocated
from waferscale.serve.trace import Request
from waferscale.serve.wafer import MAX_ERROR, wafer_costs

from .test_cli import run_cli

TARGET, P, T = "mesh:32x32", 8, 8
KW = dict(max_context=P + T, max_batch=4, chunk=P)
ARGV = ("serve", "tiny", "--target", TARGET, "--rate", "3000", "--requests", "12", "--prompt-dist", "uniform:2,10",
        "--output-dist", "uniform:1,6", "--max-batch", "2", "--chunk", "8", "--max-context", "16", "-q")


@pytest.fixture(scope="module")
def both():
    return {k: wafer_costs("tiny", TARGET, placement=k, **KW) for k in ("latency", "throughput")}


def test_the_latency_placement_is_never_slower_than_throughput_at_batch_one(both):
    lat, thr = both["latency"], both["throughput"]
    assert lat.report["placement_mode"] == "latency" and thr.report["placement_mode"] == "pipelined"
    for c in (1, P, P + T - 1):
        assert lat.cost.decode(1, c) <= thr.cost.decode(1, c)
    # one request served alone: its TPOT on the latency placement, and on what auto keeps
    auto = wafer_costs("tiny", TARGET, placement="auto", **KW)
    assert auto.report["placement_kind"] == "latency"
    tpot = {}
    for k, w in (*both.items(), ("auto", auto)):
        row = json.loads(serve([Request(0, 0.0, P, T)], Colocated(w.cost, max_batch=1, chunk=P)).jsonl())
        tpot[k] = row["tpot"]
    assert tpot["latency"] <= tpot["throughput"] and tpot["auto"] == pytest.approx(tpot["latency"], rel=1e-9)


def test_the_latency_placements_grid_holds_its_checks_and_its_kv_caches(both):
    r = both["latency"].report
    assert r["max_interpolation_error"] <= MAX_ERROR and r["mixed_step"]["max_error"] <= MAX_ERROR
    assert r["kv_capacity_tokens"] >= KW["max_batch"] * KW["max_context"]  # the placed caches at least
    assert "latency placement: a core's free SRAM" in r["kv_capacity_basis"]
    assert r["pipeline"].endswith(",lower,latency-placement,route,simulate")


def test_auto_keeps_throughput_where_the_load_keeps_the_batch_full():
    busy = Load(rate=1e9, output_tokens=100.0)  # Little's law: every slot taken
    w = wafer_costs("tiny", TARGET, placement="auto", load=busy, **KW)
    r = w.report
    assert r["operating_point"]["batch"] == 4 and r["placement_kinds"] == ["throughput"]
    s = r["step_seconds_by_placement"]
    assert r["placement_kind"] == min(s, key=s.get) == "throughput"  # at batch 4 the pipeline wins
    assert r["placement_kind_reason"].startswith("throughput: simulated both: the decode step at context 8")
    assert "batch 4.00 (--max-batch: the load outruns it)" in r["placement_kind_reason"]
    assert "Little's law" in r["placement_kind_reason"] and r["operating_point"]["batch_by_placement"] == {
        "throughput": 4, "latency": 4}


def test_auto_does_not_take_a_placement_the_load_would_outrun():
    """At one sequence the latency placement is faster, but its step grows by a sequence's whole
    share: at this load (600,000 tokens/s asked) each added sequence would slow it by more than it
    brings, so its batch fills; the throughput placement keeps up at under two sequences."""
    r = wafer_costs("tiny", TARGET, placement="auto", load=Load(rate=6000.0, output_tokens=100.0), **KW).report
    c = r["cycles_by_system"][0]
    assert c["latency"] < c["throughput"]  # one sequence: latency is faster
    assert r["operating_point"]["batch_by_placement"]["latency"] == KW["max_batch"]
    assert 1 < r["operating_point"]["batch_by_placement"]["throughput"] < 2
    assert r["placement_kind"] == "throughput" and "the load outruns it" in r["placement_kind_reason"]


def test_expected_batch_is_littles_law_within_one_and_max_batch():
    assert expected_batch(None, 1.0, 8) == 1
    assert expected_batch(Load(10.0, 50.0), 0.004, 16) == pytest.approx(2.0)  # 10/s x 50 tokens x 4 ms
    assert expected_batch(Load(10.0, 50.0), 0.005, 16) == pytest.approx(2.5)  # an average
    # a step growing 1 ms a sequence: b = 500 x (4 - 1) ms / (1 - 500 x 1 ms) = 3 sequences
    assert expected_batch(Load(10.0, 50.0), 0.004, 16, 0.001) == pytest.approx(3.0)
    assert expected_batch(Load(10.0, 50.0), 0.004, 16, 0.002) == 16  # each sequence slows it more than it brings
    assert expected_batch(Load(1e6, 50.0), 0.004, 16) == 16 and expected_batch(Load(1e-6, 1.0), 1e-3, 16) == 1
    reqs = [Request(i, 0.5 * i, 4, 10 + i) for i in range(5)]
    assert Load.of(reqs) == Load(2.0, 12.0) and Load.of(reqs[:1]) is None


def test_auto_falls_back_to_throughput_with_the_reason_when_latency_does_not_fit(monkeypatch):
    def unfit(*a, **k):
        raise FitError("latency placement: kernel attn finds no rectangle on mesh:32x32")

    monkeypatch.setattr(W, "place_latency", unfit)
    r = wafer_costs("tiny", TARGET, placement="auto", **KW).report
    assert r["placement_kind"] == r["prefill_placement_kind"] == "throughput"
    assert r["placement_kind_reason"].startswith(
        "throughput: simulated both: the decode step at context 8 at one sequence: throughput, the only one that fits "
        "(latency placement does not: serving places 4 sequences' KV caches of 16 rows in latency")
    assert "kernel attn finds no rectangle" in r["placement_unfit"]["system 1: latency"]
    with pytest.raises(FitError, match="in latency placement: latency placement: kernel attn"):
        wafer_costs("tiny", TARGET, placement="latency", **KW)


def test_over_several_systems_each_takes_its_own_placement(monkeypatch):
    """As `--generate` chooses per system: where the latency placement does not fit one system's part
    (here, made not to where the LM head is), that system keeps throughput and the others may not."""
    real = W.place_latency

    def no_head(sub, machine, **k):
        if any(x.name.startswith("lm_head") for x in sub.kernels):
            raise FitError("latency placement: kernel lm_head finds no rectangle")
        return real(sub, machine, **k)

    monkeypatch.setattr(W, "place_latency", no_head)
    w = wafer_costs("tiny", TARGET, placement="auto", systems=2, **KW)
    r = w.report
    assert r["placement_kinds"] == ["latency", "throughput"] and r["placement_kind"] == "latency/throughput"
    assert "system 2: throughput, the only one that fits (latency placement does not" in r["placement_kind_reason"]
    assert [set(c) for c in r["cycles_by_system"]] == [{"latency", "throughput"}, {"throughput"}]
    assert [pl.mode for _, pl, _ in w.placed.parts] == ["latency", "pipelined"]
    assert r["max_interpolation_error"] <= MAX_ERROR and w.cost.decode(1, P) > 0


def test_the_report_names_the_placement_and_it_round_trips_through_replay(capsys, tmp_path):
    code, out, err = run_cli(capsys, *ARGV, "--placement", "throughput", "-o", str(tmp_path / "a"))
    assert code == 0, err
    assert "placement: all: throughput (--placement throughput" in out
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    c = report["serve"]["costs"]["all"]
    assert report["run"]["options"]["placement"] == "throughput" and report["serve"]["placement"]["all"] == "throughput"
    assert c["placement_kind_reason"].startswith("throughput: asked for (--placement throughput): the decode step")
    assert report["run"]["engines"]["all"]["placement_kind"] == "throughput" and report["mode"] == "layer-pipelined"
    code, out, err = run_cli(capsys, "replay", str(tmp_path / "a"), "-o", str(tmp_path / "b"), "-q")
    assert code == 0 and "the same report" in out, err
    again = json.loads((tmp_path / "b" / "report.json").read_text())
    assert again["serve"]["costs"]["all"]["placement_kind_reason"] == c["placement_kind_reason"]
    assert again["run"]["options"]["placement"] == "throughput"


def test_speculative_decoding_places_target_and_draft_each_where_faster(capsys, tmp_path):
    code, out, err = run_cli(capsys, *ARGV, "--draft", "tiny", "--accept", "0.7", "--draft-tokens", "2",
                             "-o", str(tmp_path))
    assert code == 0, err
    costs = json.loads((tmp_path / "report.json").read_text())["serve"]["costs"]
    assert costs["target"]["operating_point"]["step"] == "verify"
    assert costs["draft"]["operating_point"]["step"] == "decode"
    for e in ("target", "draft"):
        s = costs[e]["step_seconds_by_placement"]
        assert set(s) == {"latency", "throughput"} and costs[e]["placement_kind"] == min(s, key=s.get)


@pytest.mark.parametrize("argv,message", [
    (("--placement", "fast"), "invalid choice: 'fast'"),
    (("--placement", "latency", "--mode", "streaming"), "not supported: serving in weight-streaming mode "
                                                        "(--mode streaming) with --placement latency"),
])
def test_a_bad_placement_is_one_line(capsys, tmp_path, argv, message):
    code, out, err = run_cli(capsys, *ARGV, *argv, "-o", str(tmp_path))
    assert code == 2 and message in err and "Traceback" not in err


def test_the_kinds_are_everywhere_the_same():
    from waferscale.modes.serve import OPTIONS, PLACEMENTS
    from waferscale.passes.placement_kind import KINDS as GENERATE
    from waferscale.studies.spec_values import PLACEMENTS as SWEEP

    assert set(KINDS) == set(GENERATE) == set(PLACEMENTS) == set(SWEEP) and OPTIONS["placement"] == "auto"


def test_a_burst_is_a_load_that_fills_the_batch():
    burst = [Request(i, 0.0, P, T) for i in range(3)]  # every request at one instant
    load = Load.of(burst)
    assert load is not None and load.rate == float("inf")
    assert expected_batch(load, step=1e-3, max_batch=4, growth=0.0) == 4.0
    assert expected_batch(load, step=1e-3, max_batch=4, growth=1e-4) == 4.0
    assert Load.of(burst[:1]) is None  # one request: no load to place for


def test_sink_attentions_kv_caches_count_in_the_latency_placement():
    """gpt-oss's caches are ``cached_sink_attention``'s: the latency placement's KV capacity counts them
    (it divided by zero before, an OverflowError at `wafer serve tiny-gpt-oss`)."""
    w = wafer_costs("tiny-gpt-oss", "mesh:48x48", placement="latency", max_context=32, max_batch=2, chunk=16)
    r = w.report
    assert r["placement_kind"] == "latency"
    assert 2 * 32 <= r["kv_capacity_tokens"] < 10**9


def test_a_part_packed_largest_first_says_so_in_the_reason(monkeypatch):
    """passes/latency.py packs a part largest first where program order does not (70B's parts on
    WSE-3s); the serving report's reason names the systems it did so on."""
    from dataclasses import replace

    real = W.place_latency
    monkeypatch.setattr(W, "place_latency", lambda sub, machine, **k: replace(
        real(sub, machine, **k), reason="packed largest first (in program order ...)"))
    r = wafer_costs("tiny", TARGET, placement="latency", **KW).report
    assert r["placement_kind"] == "latency"
    assert r["placement_kind_reason"].endswith("; latency placement packed largest first on system 1")
