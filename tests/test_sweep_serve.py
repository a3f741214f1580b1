"""`wafer sweep` of mode: serve: points of request rate, policy and split on tiny, each a
`wafer serve` run whose row holds TTFT/TPOT percentiles and goodput; the cost grid shared by the
points of one placement; the spec's serve keys checked."""

import csv
import io

import pytest

from waferscale.errors import WaferError
from waferscale.studies.sweep import COLUMNS, run_sweep
from waferscale.studies.sweep_spec import parse_spec

SERVE = {"name": "serve", "model": "tiny", "mesh": "32x32", "mode": "serve", "batch": 2, "requests": 30,
         "prompt_len": 8, "new_tokens": 8, "rate": [2000, 200000], "policy": ["colocated", "disaggregated"],
         "slo_tpot": 1e-5, "placement": "throughput"}  # one placement at every rate: one cost grid


@pytest.mark.parametrize("changes,message", [
    ({"rate": None}, "serve needs rate"),
    ({"mode": "generate"}, "key 'rate': is serve's option"),
    ({"policy": "split"}, "key 'policy': 'split' is not one of colocated, disaggregated"),
    ({"split": 1.5}, "key 'split': 1.5 is not a prefill share"),
    ({"split": "data"}, "key 'split': 'data' is not a prefill share"),
    ({"rate": 0}, "key 'rate': 0 is not a positive number"),
    ({"requests": 0.5}, "key 'requests': 0.5 is not a positive integer"),
    ({"seq": 64}, "key 'seq': does not go with mode: serve"),
    ({"placement": "fast"}, "key 'placement': 'fast' is not one of auto, latency, throughput"),
])
def test_a_bad_serve_spec_is_one_line(changes, message):
    data = {k: v for k, v in {**SERVE, **changes}.items() if v is not None}
    with pytest.raises(WaferError) as e:
        parse_spec(data, "test")
    assert message in str(e.value) and "\n" not in str(e.value)


def test_serve_points_are_the_grid_of_rate_and_policy_and_other_modes_keep_their_ids():
    pts = parse_spec(SERVE, "test").points()
    assert [(p.rate, p.policy) for p in pts] == [(2000, "colocated"), (2000, "disaggregated"),
                                                 (200000, "colocated"), (200000, "disaggregated")]
    assert all(p.run == "serve" and p.requests == 30 and p.slo_tpot == 1e-5 and p.seq == 8 for p in pts)
    split = parse_spec({**SERVE, "split": [0.25, 0.5]}, "test").points()
    assert {p.split for p in split} == {"0.25", "0.5"} and len({p.id for p in split}) == 8
    plain = parse_spec({"model": "tiny", "mesh": "32x32", "seq": 32}, "test").points()[0]
    assert not any(k in plain.params() for k in ("rate", "policy", "requests", "slo_ttft", "slo_tpot"))


def test_a_serve_sweep_gives_latency_percentiles_and_goodput_per_rate_and_policy(tmp_path):
    res = run_sweep(parse_spec(SERVE, "test"), tmp_path, workers=0)
    assert res.failed == 0 and res.ran == 4, [r["error"] for r in res.rows]
    rows = {(r["rate"], r["policy"]): r for r in res.rows}
    for policy in ("colocated", "disaggregated"):
        lo, hi = rows[2000, policy], rows[200000, policy]
        assert lo["completed"] == hi["completed"] == 30 and lo["mode"] == "serve"
        assert lo["ttft_p50_s"] <= lo["ttft_p99_s"] and lo["tpot_p50_s"] <= lo["tpot_p99_s"]
        assert hi["ttft_p99_s"] > lo["ttft_p99_s"]  # the queue at the higher rate
        assert hi["tokens_per_s"] > lo["tokens_per_s"] and lo["goodput_rps"] is not None
        assert lo["compile_s"] > 0 and hi["compile_s"] == 0  # the second rate reuses the cost grid
    text = (tmp_path / "sweep.csv").read_text()
    assert text.splitlines()[0] == ",".join(COLUMNS)
    table = list(csv.DictReader(io.StringIO(text)))
    assert [t["policy"] for t in table] == ["colocated", "disaggregated"] * 2
    assert all(float(t["ttft_p99_s"]) > 0 and t["goodput_rps"] != "" for t in table)
    assert (tmp_path / "serve.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")  # the frontier drawn
    again = run_sweep(parse_spec(SERVE, "test"), tmp_path, workers=0)  # resumed whole
    assert again.resumed == 4 and again.ran == 0
