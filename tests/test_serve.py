"""`waferscale.serve` with a synthetic step cost: traces, the scheduler's KV admission, the metrics
under load, determinism. (The wafer's step costs and `wafer serve` itself: test_serve_wafer.py.)"""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waferscale.errors import UsageError
from waferscale.serve.costs import LinearCost, build_grid
from waferscale.serve.loop import serve
from waferscale.serve.policies import Colocated, Disaggregated, Link
from waferscale.serve.trace import Request, read_trace, synthetic


def test_trace_reads_csv_jsonl_and_the_azure_layout(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("arrival,prompt_tokens,output_tokens\n0.5,10,3\n0.25,7,2\n")
    assert read_trace(f) == [Request(0, 0.0, 7, 2), Request(1, 0.25, 10, 3)]  # sorted, from the first arrival
    f = tmp_path / "azure.csv"
    f.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n"
                 "2023-11-16 18:15:50.9951690,396,109\n")
    r = read_trace(f)
    assert [(x.prompt, x.output) for x in r] == [(374, 44), (396, 109)]
    assert r[1].arrival == pytest.approx(4.314579, abs=1e-6)
    f = tmp_path / "t.jsonl"
    f.write_text('{"arrival": 1, "prompt": 5, "output": 6}\n\n{"arrival": 3, "prompt": 2, "output": 1}\n')
    assert read_trace(f) == [Request(0, 0.0, 5, 6), Request(1, 2.0, 2, 1)]


@pytest.mark.parametrize("name, text, row", [
    ("a.csv", "arrival,prompt_tokens,output_tokens\n0,10,3\n1,ten,3\n", 3),
    ("b.csv", "arrival,prompt_tokens,output_tokens\n0,10,3\n1,10,3\n2,10,0\n", 4),
    ("c.csv", "arrival,prompt_tokens,output_tokens\n0,10,3,9\n", 2),
    ("d.csv", "arrival,prompt_tokens,output_tokens\n0,10,3\nnan,1,1\n", 3),
    ("e.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,1,1\n", 2),
    ("f.jsonl", '{"arrival": 0, "prompt": 1, "output": 1}\n[1, 2]\n', 2),
    ("g.jsonl", '{"arrival": 0, "prompt": 1, "output": 1}\n{"arrival": 0, "prompt": 1.5, "output": 1}\n', 2),
])
def test_trace_reader_rejects_a_malformed_row_with_its_number(tmp_path, name, text, row):
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(UsageError, match=rf": row {row}: "):
        read_trace(f)


def test_trace_without_the_columns_is_refused(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("when,how_long\n1,2\n")
    with pytest.raises(UsageError, match="no arrival column"):
        read_trace(f)


def test_synthetic_arrivals_are_seeded_and_at_the_rate():
    a = synthetic(100.0, 4000, seed=3)
    assert a == synthetic(100.0, 4000, seed=3) and a != synthetic(100.0, 4000, seed=4)
    assert a[-1].arrival / 3999 == pytest.approx(0.01, rel=0.05)
    g = synthetic(100.0, 4000, arrivals="gamma", cv=3.0, seed=3, prompt="fixed:7", output="lognormal:20,0.5")
    assert g[-1].arrival / 3999 == pytest.approx(0.01, rel=0.2) and {r.prompt for r in g} == {7}
    with pytest.raises(UsageError, match="--prompt-dist"):
        synthetic(1.0, 3, prompt="normal:3")


def _colocated(cost, max_batch=8, chunk=64):
    return Colocated(cost, max_batch=max_batch, chunk=chunk)


def _single(cost, prompt, output, policy=_colocated):
    s = serve([Request(0, 0.0, prompt, output)], policy(cost)).summary()
    return s["ttft_seconds"]["p50"], s["tpot_seconds"]["p50"] if output > 1 else None, s["e2e_seconds"]["p50"]


def test_a_single_request_costs_its_prefill_and_its_decode_steps():
    c = LinearCost()
    ttft, tpot, e2e = _single(c, 100, 5)  # the prompt in two chunks of 64 and 36
    assert ttft == pytest.approx(c.prefill(64, 0) + c.prefill(36, 64))
    assert tpot == pytest.approx(sum(c.decode(1, p) for p in range(100, 104)) / 4)
    assert e2e == pytest.approx(ttft + 4 * tpot)


@pytest.mark.parametrize("policy", ["colocated", "disaggregated"])
def test_at_a_vanishing_rate_the_p99_latency_is_the_single_requests(policy):
    c = LinearCost()
    make = _colocated if policy == "colocated" else (
        lambda cost: Disaggregated(cost, cost, Link(1e9, 1e-6), max_batch=8, chunk=64))
    one = _single(c, 50, 20, make)
    reqs = synthetic(1e-3, 30, prompt="fixed:50", output="fixed:20", seed=1)
    s = serve(reqs, make(c)).summary()
    assert s["completed"] == 30
    assert s["e2e_seconds"]["p99"] == pytest.approx(one[2], rel=1e-9)
    assert s["ttft_seconds"]["p99"] == pytest.approx(one[0], rel=1e-9)


def test_beyond_capacity_the_queue_grows_and_goodput_saturates():
    c = LinearCost(kv_capacity_bytes=1 << 30)
    got = []
    for rate in (20, 80, 320, 1280, 5120):
        reqs = synthetic(rate, 1500, prompt="fixed:64", output="fixed:32", seed=2)
        s = serve(reqs, _colocated(c), slo_tpot=0.01).summary()
        got.append((rate, s["queue_max"], s["output_tokens_per_second"], s["goodput_requests_per_second"]))
    queues = [q for _, q, _, _ in got]
    tput = [t for _, _, t, _ in got]
    assert queues[-1] > 10 * max(queues[0], 1) and queues == sorted(queues)  # the queue grows with the load
    for a, b in zip(tput, tput[1:]):  # throughput rises then saturates: monotone within noise
        assert b >= 0.95 * a
    assert tput[-1] == pytest.approx(tput[-2], rel=0.05)
    good = [g for _, _, _, g in got]
    for a, b in zip(good, good[1:]):  # goodput too: it rises, then stays (the SLO is on TPOT alone)
        assert b >= 0.95 * a
    assert good[-1] == pytest.approx(good[-2], rel=0.05)
    assert got[0][3] == pytest.approx(20, rel=0.1)  # light load: every request meets the SLO


traces = st.lists(st.tuples(st.floats(0, 0.05), st.integers(1, 300), st.integers(1, 120)), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(traces, st.integers(1, 6), st.integers(1, 128), st.integers(300, 20000), st.booleans())
def test_kv_admission_never_exceeds_capacity(rows, max_batch, chunk, capacity_tokens, disaggregated):
    reqs, t = [], 0.0
    for i, (gap, p, o) in enumerate(rows):
        t += gap
        reqs.append(Request(i, t, p, o))
    cost = LinearCost(kv_bytes_per_token=100, kv_capacity_bytes=100 * capacity_tokens, max_context=400)
    policy = (Disaggregated(cost, cost, Link(1e8, 1e-5), max_batch=max_batch, chunk=chunk) if disaggregated
              else Colocated(cost, max_batch=max_batch, chunk=chunk))
    store = serve(reqs, policy)
    for e in policy.engines:
        assert e.kv_peak <= e.capacity and e.kv_used == 0 and not e.running and not e.waiting
    assert store.kv_peak <= sum(e.capacity for e in policy.engines)
    rows_out = [json.loads(line) for line in store.jsonl().splitlines()]
    for r, req in zip(rows_out, reqs):
        never = req.prompt + req.output - 1 > 400 or 100 * (req.prompt + req.output) > cost.kv_capacity_bytes
        assert r["status"] == ("rejected" if never else "done"), r
        if never:
            assert "KV" in r["reason"]


def test_the_same_seed_gives_the_same_requests_jsonl():
    def run(seed):
        reqs = synthetic(500, 300, seed=seed)
        return serve(reqs, _colocated(LinearCost()), slo_ttft=0.05, slo_tpot=0.002).jsonl().encode()
    assert run(5) == run(5) and run(5) != run(6)


def test_grid_interpolates_bilinearly_and_refines_where_the_cost_bends():
    g = build_grid([1, 9], [0, 10], lambda x, y: x + 2 * y)
    assert g(5, 5) == pytest.approx(15) and g(100, -3) == pytest.approx(9)  # clamped at the edges
    step = build_grid([0, 64], [0, 1], lambda x, y: 1.0 if x < 20 else 2.0, tol=0.01)
    assert 16 in step.xs and 24 in step.xs and 0 < len(step.xs) < 10
    assert step(10, 0) == 1.0 and step(40, 0) == 2.0


def test_a_mixed_step_pays_the_fill_once_where_the_cost_says_so():
    """A step with decode tokens and two prompt pieces: the parts' sum less the fill for every part but
    one (fill = 2 decode(1) - decode(2): LinearCost's latency), for a cost that declares it (GridCost);
    the plain sum for one that does not (speculative decoding's)."""
    from waferscale.serve.costs import step_seconds
    from waferscale.serve.scheduler import Batcher, Seq

    for mixed in (True, False):
        cost = LinearCost(mixed=mixed)
        b = Batcher(cost, max_batch=4, chunk=10)
        b.waiting.extend([Seq(Request(0, 0.0, 5, 4), prefilled=5, generated=1), Seq(Request(1, 0.0, 6, 4)),
                          Seq(Request(2, 0.0, 7, 4))])
        b.admit()
        step = b.plan()
        assert [s.req.id for s in step.decode] == [0] and [(s.req.id, n) for s, n in step.pieces] == [(1, 6), (2, 4)]
        parts = cost.decode(1, 5) + cost.prefill(6, 0) + cost.prefill(4, 0)
        assert step.seconds == pytest.approx(parts - 2 * cost.latency if mixed else parts)
        assert step.seconds == step_seconds(cost, 1, 5, [(6, 0), (4, 0)])
    assert step_seconds(LinearCost(mixed=True), 3, 9, []) == LinearCost().decode(3, 9)  # one part: itself
