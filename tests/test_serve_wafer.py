"""Serving on the wafer: the step costs from the tile simulator (``serve/wafer.py``) against
`wafer compile --generate`'s figures, and `wafer serve` end to end, on the tiny model."""

import json

import pytest

from waferscale.generate import compile_generate
from waferscale.serve.costs import step_seconds
from waferscale.serve.loop import serve
from waferscale.serve.policies import Colocated
from waferscale.serve.trace import Request, synthetic
from waferscale.serve.wafer import MAX_ERROR, wafer_costs

from .test_cli import run_cli

TARGET, P, T = "mesh:32x32", 8, 8


@pytest.fixture(scope="module")
def wafer():
    return wafer_costs("tiny", TARGET, max_context=P + T, max_batch=4, chunk=P)


@pytest.fixture(scope="module")
def single():
    """Placed for one sequence, as `wafer compile --generate --batch 1` places it."""
    return wafer_costs("tiny", TARGET, max_context=P + T, max_batch=1, chunk=P)


@pytest.fixture(scope="module")
def generate():
    # serving places the decode step in throughput placement (serve/wafer.py): the same one here
    return compile_generate("tiny", prompt_len=P, new_tokens=T, batch=1, target=TARGET,
                            placement="throughput").report["generate"]


def test_a_single_requests_ttft_and_tpot_are_the_generate_figures(single, generate):
    store = serve([Request(0, 0.0, P, T)], Colocated(single.cost, max_batch=1, chunk=P))
    row = json.loads(store.jsonl())
    assert row["ttft"] == pytest.approx(generate["ttft_seconds"], rel=1e-9)
    assert row["tpot"] == pytest.approx(generate["decode_seconds_per_token"], rel=1e-9)
    assert row["e2e"] == pytest.approx(generate["generate_seconds"], rel=1e-9)


def test_at_a_vanishing_rate_the_p99_latency_is_the_single_requests(single, generate):
    reqs = synthetic(1e-2, 25, prompt=f"fixed:{P}", output=f"fixed:{T}", seed=0)
    s = serve(reqs, Colocated(single.cost, max_batch=4, chunk=P)).summary()
    assert s["completed"] == 25
    assert s["e2e_seconds"]["p99"] == pytest.approx(generate["generate_seconds"], rel=1e-9)
    assert s["ttft_seconds"]["p99"] == pytest.approx(generate["ttft_seconds"], rel=1e-9)


def test_the_cost_grid_is_within_five_percent_of_direct_simulation(wafer):
    r = wafer.report
    assert len(r["error_points"]) >= 16 and r["max_interpolation_error"] <= MAX_ERROR
    assert {x["kind"] for x in r["error_points"]} == {"decode", "prefill", "mixed"}
    for x in r["error_points"]:  # the check is real: the points are simulated afresh
        if x["kind"] == "mixed":
            pieces = [(x["tokens"], x["position"])]
            direct = wafer.placed.mixed(x["batch"], x["context"], pieces)
            got = step_seconds(wafer.cost, x["batch"], x["context"], pieces)
        else:
            args = (x["batch"], x["context"]) if x["kind"] == "decode" else (x["tokens"], x["position"])
            direct = (wafer.placed.decode if x["kind"] == "decode" else wafer.placed.prefill)(*args)
            got = getattr(wafer.cost, x["kind"])(*args)
        assert direct == x["simulated"]
        assert abs(got - direct) <= MAX_ERROR * direct


def test_kv_capacity_is_the_attention_cores_free_sram(wafer, single):
    r = wafer.report
    assert r["kv_bytes_per_token"] == 2 * 2 * 4 * 16 * 2  # k and v, 2 layers, 4 heads of 16, f16
    assert r["kv_capacity_tokens"] == min(k["tokens"] for k in r["kv_kernels"]) > P + T
    k = r["kv_kernels"][0]
    assert k["tokens"] == 4 * (P + T) * (k["held_bytes"] + k["free_bytes"]) // k["held_bytes"]
    assert k["held_bytes"] >= 4 * single.report["kv_kernels"][0]["held_bytes"]  # placed for 4 caches
    assert r["kv_capacity_bytes"] == r["kv_capacity_tokens"] * r["kv_bytes_per_token"]


SERVE = ("serve", "tiny", "--target", TARGET, "--rate", "3000", "--requests", "60", "--prompt-dist", "uniform:2,20",
         "--output-dist", "uniform:1,12", "--max-batch", "4", "--chunk", "8", "--max-context", "32",
         "--slo-tpot", "0.00001", "--seed", "7", "-q")


def test_wafer_serve_prints_a_latency_table_and_writes_the_same_requests_for_the_same_seed(capsys, tmp_path):
    code, out, err = run_cli(capsys, *SERVE, "-o", str(tmp_path / "a"))
    assert code == 0, err
    assert "TTFT (ms)" in out and "TPOT (ms)" in out and "goodput" in out and "interpolation error" in out
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    s = report["serve"]
    assert s["policy"] == "colocated" and s["summary"]["completed"] + s["summary"]["rejected"] == 60
    batches = s["costs"]["all"]["decode_grid"]["batch"]
    assert s["max_interpolation_error"] <= MAX_ERROR and batches[0] == 1 and batches[-1] == 4
    html = (tmp_path / "a" / "report.html").read_text()
    assert "KV-cache occupancy over time" in html and "<polyline" in html and "<script" not in html
    rows = (tmp_path / "a" / "requests.jsonl").read_bytes()
    assert len(rows.splitlines()) == 60
    code, _, err = run_cli(capsys, *SERVE, "-o", str(tmp_path / "b"))
    assert code == 0, err
    assert (tmp_path / "b" / "requests.jsonl").read_bytes() == rows


def test_wafer_serve_disaggregated_moves_the_kv_cache(capsys, tmp_path):
    code, out, err = run_cli(capsys, *SERVE, "--policy", "disaggregated", "--split", "0.5", "-o", str(tmp_path))
    assert code == 0, err
    s = json.loads((tmp_path / "report.json").read_text())["serve"]
    assert set(s["costs"]) == {"prefill", "decode", "link"} and s["costs"]["prefill"]["rows"] == 16
    rows = [json.loads(x) for x in (tmp_path / "requests.jsonl").read_text().splitlines()]
    moved = sum(r["prompt_tokens"] for r in rows if r["status"] == "done" and r["output_tokens"] > 1)
    assert s["kv_moved_bytes"] == moved * s["costs"]["prefill"]["kv_bytes_per_token"] > 0


@pytest.mark.parametrize("argv, message", [
    (("--rate", "5"), "--rate needs --requests"),
    (("--requests", "5"), "give the requests"),
    (("--rate", "5", "--requests", "5", "--split", "1.5"), "--split 1.5"),
    (("--rate", "5", "--requests", "5", "--slo-tpot", "-1"), "--slo-tpot"),
])
def test_wafer_serve_refuses_bad_options_in_one_line(capsys, tmp_path, argv, message):
    code, _, err = run_cli(capsys, "serve", "tiny", "--target", TARGET, *argv, "-o", str(tmp_path / "o"))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_wafer_serve_names_the_malformed_row_of_a_trace(capsys, tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0,4,4\n1,4,-4\n")
    code, _, err = run_cli(capsys, "serve", "tiny", "--target", TARGET, "--trace", str(f), "-o", str(tmp_path / "o"))
    assert code == 2 and "row 3" in err and "output tokens" in err


def test_a_mixed_step_is_simulated_as_one_and_the_rule_meets_it(wafer):
    """A step carrying decode tokens and a prompt chunk, simulated in one run, costs less than its parts
    one after the other (the fill is paid once) and more than the larger part; the cost rule
    (costs.step_seconds) is checked against such runs at random points, within 5%."""
    pl = wafer.placed
    for b, c, n, p in [(4, 9, 8, 0), (1, 4, 1, 5), (2, 12, 3, 2)]:
        d, q, m = pl.decode(b, c), pl.prefill(n, p), pl.mixed(b, c, [(n, p)])
        assert max(d, q) < m < d + q
        assert step_seconds(wafer.cost, b, c, [(n, p)]) == pytest.approx(m, rel=MAX_ERROR)
    mixed = [x for x in wafer.report["error_points"] if x["kind"] == "mixed"]
    assert len(mixed) == 8 and all(x["simulated"] < x["sum_of_parts"] for x in mixed)
    assert wafer.report["mixed_step"]["max_error"] == max(x["error"] for x in mixed) <= MAX_ERROR


def test_a_short_prompt_chunk_costs_about_a_decode_step_not_many(wafer):
    """The prefill graph is traced for max_batch prompts of the chunk's length; lowered for one short
    chunk, its per-token figures are one token's (backends/lowering.py), so a 1-token chunk costs about
    what a 1-sequence decode step does (it cost many times that when they were divided by the run's
    tokens), and the cost grows with the chunk."""
    pl = wafer.placed
    one = pl.prefill(1, 4)
    assert one == pytest.approx(pl.decode(1, 4), rel=0.25)
    assert one < pl.prefill(4, 4) < pl.prefill(8, 0) < 8 * one
    assert pl.decode(1, 8) <= pl.decode(2, 8) <= pl.decode(4, 8)  # fewer sequences never cost more


def test_disaggregated_over_separate_systems_moves_the_kv_cache_over_the_system_link():
    """--systems 2 --policy disaggregated: the prefill engine on one system, the decode engine on the
    other, the prompt's KV cache handed over at the machine file's inter-system bandwidth and latency.
    The first token is sampled by the prefill engine, so the hand-over shows after it: a request ends
    later than on an instant link by exactly bytes / bandwidth + latency, growing with the prompt."""
    from argparse import Namespace

    from waferscale.backends.machine import get_machine
    from waferscale.serve.build import build_policy
    from waferscale.serve.policies import Disaggregated, Link

    m = get_machine(TARGET)
    ns = Namespace(model="tiny", target=TARGET, systems=2, policy="disaggregated", split=0.5, max_batch=2, chunk=P,
                   dtype="f16", seed=0)
    pol, reports = build_policy(ns, P + T, lambda *_: None)
    assert reports["prefill"]["systems"] == reports["decode"]["systems"] == 1
    link = pol.link
    assert (link.bytes_per_s, link.latency) == (m.io_bytes_per_s, m.inter_system_latency_s)
    instant = Disaggregated(pol.pre.cost, pol.dec.cost, Link(float("inf"), 0.0), max_batch=2, chunk=P)
    per_token = pol.pre.cost.kv_bytes_per_token
    delays = []
    for prompt in (2, P):
        one = [Request(0, 0.0, prompt, 4)]
        a, b = (json.loads(serve(one, p.fresh()).jsonl()) for p in (pol, instant))
        assert a["ttft"] == b["ttft"]
        delays.append(a["e2e"] - b["e2e"])
        assert delays[-1] == pytest.approx(prompt * per_token / link.bytes_per_s + link.latency, rel=1e-6)
    assert delays[1] > delays[0]
