"""`wafer sweep`: the spec's errors, its points, and sweeps of tiny through a local Ray (started and
stopped here) with failing points and a resume."""

import csv
import io
import json
import re

import pytest

from waferscale.backends.machine import get_machine
from waferscale.cli import main
from waferscale.errors import WaferError
from waferscale.studies.sweep import COLUMNS, POINTS_FILE, pareto, run_sweep
from waferscale.studies.sweep_spec import load_spec, parse_spec

PNG = b"\x89PNG\r\n\x1a\n"
# five points of tiny: three fit, one mesh is too small to hold it, one mesh is impossible
TINY = {"name": "tiny", "model": "tiny", "seq": 32, "batch": [1, 2], "mesh": ["16x16", "32x32", "2x2"]}


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()


def spec_of(**changes):
    return parse_spec({**TINY, **changes}, "test")


@pytest.mark.parametrize("changes,message", [
    ({"bogus": 1}, "unknown key 'bogus'; the keys are name, sample, model,"),
    ({"btach": 1}, "unknown key 'btach' (did you mean 'batch'?)"),
    ({"batch": "four"}, "key 'batch': 'four' is not a positive integer"),
    ({"batch": [1, True]}, "key 'batch': True is not a positive integer"),
    ({"batch": []}, "key 'batch': an empty list: give at least one value (positive integers)"),
    ({"batch": [1, 1]}, "key 'batch': lists 1 twice"),
    ({"model": "tinny"}, "key 'model': unknown model 'tinny'; did you mean tiny"),
    ({"model": 3}, "key 'model': 3 is not a string"),
    ({"mesh": "16by16"}, "key 'mesh': '16by16' is not RxC"),
    ({"rows": 8}, "key 'mesh': give mesh or rows and cols, not both"),
    ({"mode": "fast"}, "key 'mode': 'fast' is not one of pipelined, streaming, auto"),
    ({"mode": "auto", "pipeline": "canonicalize"}, "key 'pipeline': give mode or pipeline, not both"),
    ({"pipeline": "canonicalize,frobnicate"}, "key 'pipeline': unknown pass 'frobnicate'"),
    ({"density": 0.5, "pipeline": "canonicalize"}, "key 'density': give density or pipeline, not both"),
    ({"density": 0}, "key 'density': 0 is not a positive number"),
    ({"density": 2}, "key 'density': 2 is not in (0, 1]"),
    ({"link_bytes": 8}, "key 'link_bytes': not supported: link bandwidth other than 4 B/cycle"),
    ({"sram_kib": -48}, "key 'sram_kib': -48 is not a positive number"),
    ({"clock_ghz": "fast"}, "key 'clock_ghz': 'fast' is not a positive number"),
    ({"sample": "all"}, "key 'sample': 'all' is not grid or {random: N, seed: S}"),
    ({"sample": {"random": 99}}, "key 'sample': random: 99 asks for more points than the grid's 6"),
    ({"sample": {"random": 2, "seed": "x"}}, "key 'sample': random and seed are integers"),
    ({"name": 7}, "key 'name': 7 is not a string"),
])
def test_a_bad_spec_is_one_line_naming_the_key(changes, message):
    with pytest.raises(WaferError) as e:
        spec_of(**changes)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("text,suffix,message", [
    ("model: [tiny\nmesh: 8x8\n", ".yaml", "not valid YAML (expected ',' or ']', but got ':' at line 2)"),
    ('{"model": "tiny",}', ".json", "not valid JSON (Expecting property name enclosed in double quotes at line 1)"),
    ("- tiny\n- 8x8\n", ".yaml", "a sweep spec is a mapping of keys (model, mesh, batch, ...), not list"),
    ("", ".yaml", "not an empty file"),
    ("mesh: 8x8\n", ".yaml", "no key model: name the model(s) to sweep"),
    ("model: tiny\nrows: 8\n", ".yaml", "no mesh: give key mesh (RxC strings such as 128x128) or both rows and cols"),
])
def test_a_bad_spec_file_is_one_line_naming_the_file(tmp_path, text, suffix, message):
    f = tmp_path / f"s{suffix}"
    f.write_text(text)
    with pytest.raises(WaferError) as e:
        load_spec(f)
    assert str(e.value).startswith(f"{f}: ") and message in str(e.value) and "\n" not in str(e.value)


def test_the_grid_is_in_axis_order_and_a_random_sample_is_seeded():
    pts = spec_of().points()
    assert [(p.batch, p.rows) for p in pts] == [(1, 16), (1, 32), (1, 2), (2, 16), (2, 32), (2, 2)]
    p = pts[0]
    assert p.target == "mesh:16x16,sram_kib=48,fmac=4,clock_ghz=1.1,io_gbs=150" and p.seq == 32
    assert p.pipeline == "canonicalize,fuse,lower,place{mode=auto},route,simulate" and p.mode == "auto"
    # a point's id is its parameters: a default written out, or 48 as 48.0, is the same point
    same = parse_spec({**TINY, "sram_kib": 48.0, "density": 1, "link_bytes": 4, "mode": "auto"}, "x").points()
    sparse = [p for p in parse_spec({**TINY, "density": [1, 0.25]}, "x").points() if p.id == pts[0].id or
              p.density < 1]
    assert {p.density for p in sparse} == {1, 0.25} and all("sparsify" in p.pipeline for p in sparse if p.density < 1)
    assert all(p.pipeline.startswith("canonicalize,sparsify{density=0.25},fuse,") for p in sparse if p.density < 1)
    assert [q.id for q in same] == [q.id for q in pts] and len({q.id for q in pts}) == 6
    # seq defaults to the model's context; rows and cols make the grid too
    grid = parse_spec({"model": "tiny", "rows": [4, 8], "cols": 16, "sram_kib": 64.5}).points()
    assert [(q.rows, q.cols, q.seq) for q in grid] == [(4, 16, 128), (8, 16, 128)]
    assert grid[0].target.startswith("mesh:4x16,sram_kib=64.5,")

    big = {"model": "tiny", "mesh": [f"{r}x{r}" for r in range(8, 40)], "batch": list(range(1, 9)),
           "sample": {"random": 10, "seed": 3}}
    a, b = parse_spec(big).points(), parse_spec(big).points()
    assert a == b and len({p.id for p in a}) == 10
    grid_order = [p.id for p in parse_spec({**big, "sample": "grid"}).points()]
    assert [p.id for p in a] == sorted((p.id for p in a), key=grid_order.index)
    assert a != parse_spec({**big, "sample": {"random": 10, "seed": 4}}).points()


def test_flags_make_the_same_spec_and_name_themselves_in_errors(tmp_path, capsys):
    from waferscale.studies.sweep_spec import flags_spec

    class Args:
        models, meshes, batch, seq, sram_kib = "tiny", "16x16,32x32,2x2", "1,2", "32", None
        pipeline, random, seed = None, None, 0

    data, labels = flags_spec(Args)
    flags = parse_spec(data, "wafer sweep", labels)
    assert [p.id for p in flags.points()] == [p.id for p in spec_of().points()]
    code = main(["sweep", "--models", "tiny", "--meshes", "8x8", "--batch", "1,x", "-o", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err == "wafer: error: wafer sweep: --batch: 'x' is not a positive integer\n"


def test_wider_links_are_refused_not_ignored():
    assert get_machine("mesh:8x8,link_bytes=4").link_bytes_per_cycle == 4
    with pytest.raises(WaferError, match="not supported: link bandwidth other than 4 B/cycle"):
        get_machine("mesh:8x8,link_bytes=8")


def test_pareto_keeps_the_points_nothing_beats():
    pts = [(4, 1.0), (4, 2.0), (8, 2.0), (16, 5.0), None, (2, 0.5), (16, 3.0)]
    assert pareto(pts) == [1, 3, 5]


def _table(out):
    """sweep.csv and sweep.json without the timings, which are the only things two runs differ in."""
    rows = list(csv.DictReader(io.StringIO((out / "sweep.csv").read_text())))
    data = json.loads((out / "sweep.json").read_text())
    for r in [*rows, *data["rows"]]:
        r.pop("compile_s"), r.pop("pass_seconds", None)
    return rows, data


def test_a_sweep_on_ray_has_a_row_per_point_failures_included_and_resumes(local_ray, tmp_path):
    spec = parse_spec({**TINY, "mesh": ["16x16", "32x32", "2x2", "0x4"], "batch": 2}, "test")
    out = tmp_path / "s"
    r = run_sweep(spec, out)
    assert (r.ran, r.resumed, r.failed, r.internal) == (4, 0, 2, [])
    assert sorted(p.name for p in out.iterdir()) == [".waferscale-output", "pareto.png", POINTS_FILE, "sweep.csv",
                                                     "sweep.json"]
    assert [(x["rows"], x["ok"]) for x in r.rows] == [(16, True), (32, True), (2, False), (0, False)]
    assert "tiny does not fit on mesh:2x2" in r.rows[2]["error"]
    assert r.rows[3]["error"].startswith("impossible mesh 0x4")
    assert all("\n" not in x["error"] for x in r.rows)
    ok = r.rows[:2]
    assert all(x["tokens_per_s"] > 0 and x["cores"] == x["rows"] * x["cols"] for x in ok)
    assert ok[1]["tokens_per_s"] > ok[0]["tokens_per_s"] and [x["pareto"] for x in r.rows] == [True, True, False, False]
    rows, data = _table(out)
    assert (out / "sweep.csv").read_text().splitlines()[0] == ",".join(COLUMNS)
    assert [x["point"] for x in rows] == [p.id for p in spec.points()]
    assert rows[3]["ok"] == "False" and rows[3]["tokens_per_s"] == ""
    assert data["spec"]["mesh"] == ["16x16", "32x32", "2x2", "0x4"] and data["spec"]["seq"] == [32]
    png = (out / "pareto.png").read_bytes()
    assert png[:8] == PNG

    # interrupted: the 32x32 point never written, and the kill cut the last line short
    lines = (out / POINTS_FILE).read_text().splitlines(keepends=True)
    kept = [x for x in lines if ok[1]["point"] not in x]
    (out / POINTS_FILE).write_text("".join(kept[:-1]) + kept[-1][:40])
    r2 = run_sweep(spec, out)
    assert (r2.ran, r2.resumed) == (2, 2)  # the missing point and the torn one
    assert _table(out) == (rows, data) and (out / "pareto.png").read_bytes() == png
    assert len((out / POINTS_FILE).read_text().splitlines()) == len(lines) + 1  # + the torn line, skipped
    # nothing left to do: nothing runs; a spec that drops a point leaves it out of the outputs
    assert run_sweep(spec, out).ran == 0
    r3 = run_sweep(parse_spec({**TINY, "mesh": ["32x32", "16x16"], "batch": 2}, "test"), out)
    assert (r3.ran, r3.resumed) == (0, 2) and [x["rows"] for x in r3.rows] == [32, 16]

    # without Ray, one point after another: the same rows
    r4 = run_sweep(spec, tmp_path / "serial", use_ray=False)
    assert r4.ran == 4 and _table(tmp_path / "serial") == (rows, data)


def test_cli_runs_a_spec_file_through_ray(local_ray, tmp_path, capsys):
    f = tmp_path / "tiny.yaml"
    f.write_text("model: tiny\nseq: 32\nbatch: 2\nmesh: [32x32, 2x2]\nmode: [auto, pipelined]\n")
    out = tmp_path / "o"
    code = main(["sweep", str(f), "-o", str(out), "-q"])
    stdout = capsys.readouterr().out
    assert code == 0
    assert stdout.startswith("sweep: 4 point(s), 4 run now on 2 worker(s)") and "2 ok, 2 failed" in stdout
    assert "Pareto front" in stdout and "failed" in stdout
    rows = list(csv.DictReader(io.StringIO((out / "sweep.csv").read_text())))
    assert [(x["rows"], x["mode_asked"], x["ok"]) for x in rows] == [
        ("32", "auto", "True"), ("2", "auto", "False"), ("32", "pipelined", "True"), ("2", "pipelined", "False")]
    assert (out / "pareto.png").read_bytes()[:8] == PNG and json.loads((out / "sweep.json").read_text())["rows"]
    # flags replace the file's keys; the rerun resumes the point it shares
    code = main(["sweep", str(f), "--meshes", "32x32", "--batch", "2,4", "-o", str(out), "-q"])
    stdout = capsys.readouterr().out
    assert code == 0 and stdout.startswith("sweep: 4 point(s), 2 run now") and "2 resumed; 4 ok" in stdout


def test_a_bug_in_one_point_is_a_row_and_is_computed_again_by_the_next_run(tmp_path, monkeypatch):
    import waferscale.studies.sweep as sweep

    real = sweep.measure

    def buggy(graph, pipeline, **kw):
        if kw["target"].startswith("mesh:32x32"):
            raise RuntimeError("boom")
        return real(graph, pipeline, **kw)

    spec = parse_spec({**TINY, "batch": 1}, "test")
    monkeypatch.setattr(sweep, "measure", buggy)
    r = run_sweep(spec, tmp_path, workers=0)
    assert [x["error"] for x in r.rows][1] == "internal error: RuntimeError: boom" and not r.rows[1]["ok"]
    assert len(r.internal) == 1 and "Traceback" in r.internal[0] and "boom" in r.internal[0]
    assert r.rows[1]["point"] not in (tmp_path / POINTS_FILE).read_text()  # not saved: the next run retries it
    monkeypatch.setattr(sweep, "measure", real)
    r = run_sweep(spec, tmp_path, workers=0)
    assert (r.ran, r.resumed, r.internal) == (1, 2, []) and r.rows[1]["ok"]


def test_a_sweep_over_a_training_option_runs_each_point_through_the_driver(tmp_path, capsys):
    """mode: train with batch x systems: every point a training step compiled by the driver, its row
    the report's figures (a step over 2 systems runs half the batch on each)."""
    from waferscale.driver import compile_run
    from waferscale.studies.measure import row_of

    spec = parse_spec({"model": "tiny", "mode": "train", "batch": [2, 4], "systems": [1, 2], "seq": 16,
                       "mesh": "64x64"})
    points = spec.points()
    assert [(p.run, p.batch, p.systems) for p in points] == [("train", 2, 1), ("train", 2, 2), ("train", 4, 1),
                                                              ("train", 4, 2)]
    result = run_sweep(spec, tmp_path / "s", use_ray=False)
    assert result.failed == 0, [r["error"] for r in result.rows]
    rows = {(r["batch"], r["systems"]): r for r in result.rows}
    report = compile_run(points[3].run_spec()).report
    assert report["train"]["systems"] == 2 and report["run"]["systems"] == 2
    assert rows[4, 2]["seconds"] == row_of(report)["seconds"] == report["train"]["step_seconds"]
    assert rows[4, 2]["cores"] == 2 * rows[4, 1]["cores"]
    assert all(r["run"] == "train" and r["pipeline"].startswith("train:canonicalize,autodiff") for r in result.rows)
    # the same spec from a file through `wafer sweep`: every point read back, the summary names the mode
    (tmp_path / "train.yaml").write_text("model: tiny\nmode: train\nbatch: [2, 4]\nsystems: [1, 2]\nseq: 16\n"
                                         "mesh: 64x64\n")
    assert main(["sweep", str(tmp_path / "train.yaml"), "--no-ray", "-q", "-o", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "4 resumed; 4 ok" in out and " train" in out


@pytest.mark.parametrize("changes, message", [
    ({"mode": ["train", "auto"]}, "mixes the driver's modes"),
    ({"execution": "auto"}, "goes with mode: inference, train or generate"),
    ({"mode": "train", "prompt_len": 4}, "generate's option"),
    ({"mode": "generate", "prompt_len": 4}, "generate needs prompt_len and new_tokens"),
    ({"mode": "train", "split": "tensor"}, "is not data or pipeline"),
    ({"mode": "train", "lora": "fuse"}, "not a lora{...} pass"),
])
def test_a_bad_mode_axis_is_one_line(changes, message):
    with pytest.raises(WaferError, match=re.escape(message)):
        parse_spec({"model": "tiny", "mesh": "64x64", **changes})
