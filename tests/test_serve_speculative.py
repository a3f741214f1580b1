"""Speculative decoding in serving: tokens per verify step from the acceptance rate, the step's cost
(k draft steps and one verify step), and `wafer serve --draft` end to end on the tiny model."""

import json

import pytest

from waferscale.serve.costs import LinearCost
from waferscale.serve.loop import serve
from waferscale.serve.policies import Colocated
from waferscale.serve.speculative import Speculative, expected_tokens
from waferscale.serve.trace import Request, synthetic

from .test_cli import run_cli

K = 4
# no per-row term: a step costs the same at every position, so TPOT is one step's cost exactly
TARGET = LinearCost(latency=2e-3, per_sequence=1e-4, per_row=0.0, verify_tokens=K + 1)
DRAFT = LinearCost(latency=1e-4, per_sequence=1e-5, per_row=0.0, kv_bytes_per_token=256)


def _tpot(cost, output=201, batch=1):
    reqs = [Request(i, 0.0, 16, output) for i in range(batch)]
    s = serve(reqs, Colocated(cost, max_batch=batch, chunk=64)).summary()
    return s["tpot_seconds"]["p50"], s


def test_expected_tokens_per_verify_step():
    assert expected_tokens(0.0, K) == 1.0
    assert expected_tokens(1.0, K) == K + 1
    assert expected_tokens(0.5, 3) == pytest.approx(1 + 0.5 + 0.25 + 0.125)
    assert expected_tokens(0.999999, K) == pytest.approx(K + 1, rel=1e-5)
    with pytest.raises(ValueError):
        expected_tokens(1.5, K)


def test_at_acceptance_zero_it_is_plain_decode_with_the_drafts_cost_added():
    plain, _ = _tpot(TARGET)
    spec, s = _tpot(Speculative(TARGET, DRAFT, K, 0.0))
    step = K * DRAFT.decode(1, 0) + TARGET.verify(1, 0)
    assert spec == pytest.approx(step, rel=1e-9)  # one token a step, the step k drafts and a verify
    assert spec > plain == pytest.approx(TARGET.decode(1, 0), rel=1e-9)
    assert s["output_tokens_per_second"] < _tpot(TARGET)[1]["output_tokens_per_second"]


@pytest.mark.parametrize("accept", [1.0, 1 - 1e-12])
def test_as_acceptance_nears_one_a_step_yields_k_plus_one_tokens(accept):
    cost = Speculative(TARGET, DRAFT, K, accept, handoff=1e-5)
    spec, s = _tpot(cost, output=1 + 40 * (K + 1))
    step = K * DRAFT.decode(1, 0) + TARGET.verify(1, 0) + 1e-5
    assert spec == pytest.approx(step / (K + 1), rel=1e-6)
    assert s["steps"] == 1 + 40  # the prefill, then 40 verify steps of k + 1 tokens


def test_a_fractional_expectation_is_carried_between_steps():
    p = 0.5
    cost = Speculative(TARGET, DRAFT, K, p)
    e = expected_tokens(p, K)  # 1.9375
    n = 1 + 160
    _, s = _tpot(cost, output=n)
    assert s["steps"] - 1 == pytest.approx((n - 1) / e, abs=1)


def test_both_models_kv_caches_bound_admission():
    t = LinearCost(kv_bytes_per_token=1000, kv_capacity_bytes=1000 * 500, verify_tokens=K + 1)
    d = LinearCost(kv_bytes_per_token=100, kv_capacity_bytes=100 * 300)
    c = Speculative(t, d, K, 0.8)
    assert c.kv_bytes_per_token == 1100 and c.kv_capacity_bytes == 300 * 1100  # the draft holds fewer tokens
    assert c.max_context == min(t.max_context, d.max_context) - K
    reqs = synthetic(1e4, 40, prompt="fixed:50", output="fixed:50", seed=3)
    policy = Colocated(c, max_batch=8, chunk=64)
    serve(reqs, policy)
    assert policy.engine.kv_peak <= c.kv_capacity_bytes and policy.engine.kv_peak == 3 * 100 * 1100


def test_the_target_must_be_costed_for_k_plus_one_positions():
    with pytest.raises(ValueError, match="k \\+ 1"):
        Speculative(LinearCost(verify_tokens=3), DRAFT, K, 0.5)


SERVE = ("serve", "tiny", "--target", "mesh:32x32", "--rate", "3000", "--requests", "30", "--prompt-dist",
         "uniform:2,12", "--output-dist", "uniform:2,12", "--max-batch", "2", "--chunk", "8", "--max-context", "24",
         "--seed", "3", "-q")


@pytest.mark.parametrize("argv, message", [
    (("--draft", "tiny"), "--draft needs --accept"),
    (("--draft", "tiny", "--accept", "1.5"), "--accept 1.5"),
    (("--draft", "tiny", "--accept", "nan"), "--accept nan"),
    (("--accept", "0.5"), "give the draft model"),
    (("--draft", "tiny", "--accept", "0.5", "--draft-tokens", "0"), "--draft-tokens"),
    (("--draft", "tiny", "--accept", "0.5", "--draft-split", "1"), "--draft-split"),
    (("--draft", "tiny", "--accept", "0.5", "--policy", "disaggregated"), "not supported: speculative"),
])
def test_wafer_serve_refuses_bad_speculative_options_in_one_line(capsys, tmp_path, argv, message):
    code, _, err = run_cli(capsys, *SERVE, *argv, "-o", str(tmp_path / "o"))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_wafer_serve_with_a_draft_on_the_same_wafer(capsys, tmp_path):
    code, out, err = run_cli(capsys, *SERVE, "--draft", "tiny", "--accept", "0.8", "-o", str(tmp_path))
    assert code == 0, err
    assert "speculative decoding: draft tiny" in out and "3.362 tokens per verify step" in out
    report = json.loads((tmp_path / "report.json").read_text())["serve"]
    spec = report["speculative"]
    assert spec["tokens_per_verify_step"] == pytest.approx(expected_tokens(0.8, 4))
    assert set(report["costs"]) == {"target", "draft"}
    tgt, dr = report["costs"]["target"], report["costs"]["draft"]
    assert tgt["rows"] + dr["rows"] == 32 and dr["rows"] == 8  # the first quarter of the rows for the draft
    assert tgt["verify_grid"]["tokens"] == 5 and tgt["max_context"] == 24 + 4
    v, d = tgt["verify_grid"]["seconds"][0][0], tgt["decode_grid"]["seconds"][0][0]  # batch 1, context 0
    assert d <= v < 5 * d  # k + 1 positions in one pass of the layer pipeline: far less than k + 1 steps
    assert any(x["kind"] == "verify" for x in tgt["error_points"]) and tgt["max_interpolation_error"] <= 0.05
    assert report["summary"]["completed"] == 30
