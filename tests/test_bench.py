"""`wafer bench`: an ablation table whose speed-ups follow from its rows, written whole."""

import csv
import json

import pytest

from waferscale.cli import main
from waferscale.studies import bench


@pytest.fixture(scope="module")
def rows():
    return bench.run(["tiny"], bench.ablation(), target="mesh:32x32", batch=2, seq=32)


def test_the_ablation_has_a_row_per_variant_and_consistent_speedups(rows):
    assert [r["variant"] for r in rows] == ["default", "no-fuse", "pipelined", "streaming", "sparse"]
    assert all(r["ok"] for r in rows)
    by = {r["variant"]: r for r in rows}
    assert "fuse" in by["default"]["pipeline"] and "fuse" not in by["no-fuse"]["pipeline"]
    assert by["default"]["kernels"] < by["no-fuse"]["kernels"]  # fusion merges kernels
    assert by["streaming"]["mode"] == "weight-streaming" and by["streaming"]["stream_bytes"] > 0
    assert by["pipelined"]["stream_bytes"] == 0
    # a speed-up is the compared row's time over this row's, and only where there is a comparison
    assert by["default"]["speedup"] == pytest.approx(by["no-fuse"]["seconds"] / by["default"]["seconds"])
    assert by["pipelined"]["speedup"] == pytest.approx(by["streaming"]["seconds"] / by["pipelined"]["seconds"])
    assert by["default"]["steady_speedup"] == pytest.approx(
        by["default"]["steady_tokens_per_s"] / by["no-fuse"]["steady_tokens_per_s"])
    assert by["no-fuse"]["speedup"] is None and by["streaming"]["speedup"] is None
    assert "sparsify{density=0.25," in by["sparse"]["pipeline"] and by["sparse"]["vs"] == "default"
    assert by["sparse"]["speedup"] == pytest.approx(by["default"]["seconds"] / by["sparse"]["seconds"])
    for r in rows:
        assert set(r["pass_seconds"]) == {"canonicalize", "lower", "place", "route", "simulate"} | (
            {"fuse"} if "fuse" in r["pipeline"] else set()) | ({"sparsify"} if "sparsify" in r["pipeline"] else set())
    text = bench.table(rows)
    assert "What each pass is worth" in text and f"x{by['default']['speedup']:.3f}" in text


def test_a_variant_that_does_not_fit_is_a_row_with_its_reason():
    rows = bench.run(["tiny"], bench.given(["canonicalize,lower,place{mode=pipelined},route,simulate",
                                            "canonicalize,fuse,lower,place,route,simulate"]),
                     target="mesh:3x3", batch=1, seq=16)
    assert [r["variant"] for r in rows] == ["p1", "p2"]
    assert not rows[0]["ok"] and "does not fit" in rows[0]["error"] and "\n" not in rows[0]["error"]
    assert rows[1]["speedup"] is None  # nothing to compare with a row that failed
    assert "n/a" in bench.table(rows)


def test_cli_writes_json_csv_and_png(tmp_path, capsys):
    out = tmp_path / "b"
    code = main(["bench", "--models", "tiny", "--target", "mesh:32x32", "--batch", "2", "--seq", "32", "-q",
                 "-p", "canonicalize,lower,place,route,simulate", "-p", "canonicalize,fuse,lower,place,route,simulate",
                 "-o", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "p2" in printed and "x" in printed
    data = json.loads((out / "bench.json").read_text())["rows"]
    assert [r["variant"] for r in data] == ["p1", "p2"] and data[1]["vs"] == "p1"
    table = list(csv.DictReader((out / "bench.csv").open()))
    assert [r["variant"] for r in table] == ["p1", "p2"] and float(table[1]["speedup"]) > 0
    assert list(table[0])[:3] == ["model", "variant", "ok"] and "fuse_s" in table[0]
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == [".waferscale-output", "bench.csv", "bench.json", "bench.png",
                                                     "bench.txt"]
    assert (out / "bench.txt").read_text() in printed


@pytest.mark.parametrize("argv,msg", [
    (["--models", ","], "--models needs at least one model"),
    (["--models", "nope"], "unknown model"),
    (["--models", "tiny", "-p", "canonicalize,frobnicate"], "unknown pass 'frobnicate'"),
    (["--models", "tiny", "--target", "mesh:0x4"], "impossible mesh"),
    (["--models", "tiny", "--batch", "0"], "--batch and --seq must be at least 1"),
])
def test_bad_input_is_one_line(tmp_path, capsys, argv, msg):
    code = main(["bench", "-q", "-o", str(tmp_path / "x"), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and msg in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "x").exists()  # nothing half written


def test_bench_runs_a_training_step_per_variant_through_the_driver(tmp_path, capsys):
    """wafer bench --mode train: each variant a training step (execution modes, 2 systems both ways),
    its figures its report's; a variant that cannot run is a failed row, not an abort."""
    rows = bench.run(["tiny"], bench.variants("train"), target="mesh:64x64", batch=2, seq=16)
    by = {r["variant"]: r for r in rows}
    assert set(by) == {"auto", "pipelined", "streaming", "2-systems-data", "2-systems-pipeline"}
    assert all(r["ok"] for r in rows), [r["error"] for r in rows]
    assert by["pipelined"]["mode"] == "layer-pipelined" and by["streaming"]["mode"] == "weight-streaming"
    assert by["2-systems-data"]["cores"] == 2 * by["auto"]["cores"]
    assert by["pipelined"]["speedup"] == by["streaming"]["seconds"] / by["pipelined"]["seconds"]
    assert by["auto"]["pipeline"].startswith("train:canonicalize,autodiff")
    code = main(["bench", "--models", "tiny", "--mode", "generate", "--prompt-len", "8", "--new-tokens", "4",
                 "--target", "mesh:48x48", "--batch", "1", "-q", "-o", str(tmp_path / "g")])
    assert code == 0
    assert "2-systems-pipeline" in capsys.readouterr().out
