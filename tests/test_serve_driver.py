"""Serving through the driver (``driver.compile_run``, as every mode): its report records the run
and what each engine executed (``run.executed``, ``run.engines``), `wafer replay` compiles it again
to the same report, and `wafer sweep`'s serve points run the mode."""

import json

from waferscale import driver
from waferscale.compiled import write_compiled
from waferscale.modes import RunSpec
from waferscale.modes.serve import Served
from waferscale.studies.measure_serve import measure_serve

from .test_cli import run_cli

OPTIONS = {"rate": "3000", "requests": 12, "prompt_dist": "uniform:2,10", "output_dist": "uniform:1,6",
           "max_batch": 2, "chunk": 8, "max_context": 16}


def test_serve_runs_through_the_driver_and_replays_to_the_same_report(capsys, tmp_path):
    c = driver.compile_run(RunSpec("tiny", "serve", dict(OPTIONS), target="mesh:32x32", seed=3))
    assert isinstance(c.outcome, Served) and c.state is None and c.report is c.outcome.report
    run = c.report["run"]
    assert run["mode"] == "serve" and run["options"]["max_batch"] == 2 and run["execution"] is None
    eng = run["engines"]["all"]
    assert set(run["engines"]) == set(run["executed"]) == {"all"}
    reason = c.report["serve"]["costs"]["all"]["placement_kind_reason"]
    assert eng == {"policy": "colocated", "role": "prefill and decode", "execution": "pipelined",
                   "placement": "latency (cores shared in time)", "machine": "mesh:32x32", "systems": 1,
                   "pipeline": run["executed"]["all"], "placement_kind": "latency", "placement_kind_reason": reason,
                   "prefill_placement_kind": "throughput"}
    assert reason.startswith("latency: simulated both: the decode step") and run["options"]["placement"] == "auto"
    write_compiled(c, tmp_path / "a")
    assert sorted(p.name for p in (tmp_path / "a").iterdir() if not p.name.startswith(".")) == [
        "report.html", "report.json", "requests.jsonl"]
    again, same = driver.replay(tmp_path / "a")
    assert same and again.report["run"] == json.loads((tmp_path / "a" / "report.json").read_text())["run"]
    assert again.outcome.files["requests.jsonl"] == c.outcome.files["requests.jsonl"]
    code, out, err = run_cli(capsys, "replay", str(tmp_path / "a"), "-o", str(tmp_path / "b"), "-q")
    assert code == 0 and "the same report" in out, err
    assert (tmp_path / "b" / "requests.jsonl").read_text() == c.outcome.files["requests.jsonl"]
    doctored = json.loads((tmp_path / "a" / "report.json").read_text())
    doctored["serve"]["summary"]["completed"] += 1
    (tmp_path / "a" / "report.json").write_text(json.dumps(doctored))
    assert driver.replay(tmp_path / "a")[1] is False  # replay compares what the run produced


def test_a_disaggregated_reports_engines_keep_their_executed_keys():
    c = driver.compile_run(RunSpec("tiny", "serve", {**OPTIONS, "policy": "disaggregated", "split": 0.5,
                                                     "placement": "throughput"}, target="mesh:32x32"))
    run = c.report["run"]
    assert set(run["executed"]) == set(run["engines"]) == {"prefill", "decode"}
    pre, dec = run["engines"]["prefill"], run["engines"]["decode"]
    assert pre["role"] == "prefill" and dec["role"] == "decode" and pre["policy"] == dec["policy"] == "disaggregated"
    assert "prefill region: 16 of 32 rows" in pre["machine"] and "decode region: 16 of 32 rows" in dec["machine"]
    assert pre["placement"] == dec["placement"] == "layer-pipelined" and pre["pipeline"] == run["executed"]["prefill"]


def test_a_sweep_serve_point_runs_the_mode_through_the_driver(monkeypatch):
    seen = []
    real = driver.compile_run

    def spy(run, *a, **k):
        seen.append(run)
        return real(run, *a, **k)

    monkeypatch.setattr(driver, "compile_run", spy)
    task = {"model": "tiny", "target": "mesh:32x32", "systems": 1, "policy": "colocated", "split": None,
            "max_batch": 2, "rate": 3000, "requests": 12, "prompt_len": 6, "new_tokens": 4, "slo_ttft": None,
            "slo_tpot": None, "dtype": "f16"}
    row = measure_serve(task, seq=6)
    assert row["ok"], row["error"]
    assert [r.mode for r in seen] == ["serve"] and seen[0].options["prompt_dist"] == "fixed:6"
    assert row["pipeline"].startswith("all:canonicalize,kv-cache") and row["completed"] == 12
    bad = measure_serve({**task, "target": "mesh:2x2"}, seq=6)  # does not fit: a failed row, not an exception
    assert bad["ok"] is False and "does not fit" in bad["error"]


def test_a_sweep_serve_point_takes_the_execution_mode():
    from waferscale.studies.sweep_spec import parse_spec

    spec = {"model": "tiny", "mesh": "32x32", "mode": "serve", "execution": ["pipelined", "streaming"], "batch": 2,
            "requests": 12, "prompt_len": 6, "new_tokens": 4, "rate": 3000}
    pts = parse_spec(spec, "test").points()
    assert [p.serve_task()["execution"] for p in pts] == ["pipelined", "streaming"] and len({p.id for p in pts}) == 2
    assert parse_spec({**spec, "execution": "auto"}, "test").points()[0].serve_task()["execution"] is None
    row = measure_serve(pts[1].serve_task(), seq=6)
    assert row["ok"] and "place{mode=streaming,streamed_gemm=sparse}" in row["pipeline"], row["error"]
