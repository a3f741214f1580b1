"""report.json of every mode follows the committed JSON Schema, and `wafer replay` compiles its run
section again into the same report, byte for byte but for the host's figures."""

import json

import pytest

from waferscale.report.assemble import SCHEMA_VERSION, strip_host, validate
from waferscale.report.summary import to_json

from .test_cli import run_cli

RUNS = {
    "inference": ["tiny", "--seq", "16", "--target", "mesh:32x32"],
    "train": ["tiny", "--train", "--batch", "2", "--seq", "16", "--target", "mesh:32x32"],
    "generate": ["tiny", "--generate", "--prompt-len", "8", "--new-tokens", "4", "--target", "mesh:32x32"],
    "train-sparse": ["tiny", "--train", "--batch", "2", "--seq", "16", "--target", "mesh:32x32", "--sparsity", "0.5",
                     "--mode", "streaming"],
    # several systems (modes/systems.py): a pipeline of layers for each mode, data parallel for a forward pass
    "inference-pipeline": ["tiny", "--seq", "16", "--target", "mesh:32x32", "--systems", "2", "--split", "pipeline"],
    "inference-data": ["tiny", "--batch", "2", "--seq", "16", "--target", "mesh:32x32", "--systems", "2"],
    "train-pipeline": ["tiny", "--train", "--batch", "2", "--seq", "16", "--target", "mesh:32x32", "--systems", "2",
                       "--split", "pipeline"],
    "generate-pipeline": ["tiny", "--generate", "--prompt-len", "8", "--new-tokens", "4", "--target", "mesh:32x32",
                          "--systems", "2"],
}


@pytest.mark.parametrize("name", RUNS)
def test_compile_validates_and_replays_to_the_same_report(capsys, tmp_path, name):
    code, _, err = run_cli(capsys, "compile", *RUNS[name], "-o", str(tmp_path / "a"), "-q")
    assert code == 0, err
    text = (tmp_path / "a" / "report.json").read_text()
    report = json.loads(text)
    validate(report)
    assert report["schema_version"] == SCHEMA_VERSION and report["run"]["executed"]
    assert report["host"]["seconds"] == report["compile"]["seconds"] > 0
    code, out, err = run_cli(capsys, "replay", str(tmp_path / "a"), "-o", str(tmp_path / "b"), "-q")
    assert code == 0, err
    assert "the same report" in out
    again = json.loads((tmp_path / "b" / "report.json").read_text())
    assert to_json(strip_host(again)) == to_json(strip_host(report))
    assert again["host"] != report["host"]  # measured again
    assert (tmp_path / "b" / "model.ir").read_bytes() == (tmp_path / "a" / "model.ir").read_bytes()


def test_a_changed_config_or_a_report_without_run_is_refused(capsys, tmp_path):
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps({"model_type": "gpt2", "vocab_size": 64, "n_positions": 32,
                                                 "n_embd": 16, "n_layer": 1, "n_head": 2}))
    code, _, err = run_cli(capsys, "compile", str(cfg), "--seq", "8", "-o", str(tmp_path / "a"), "-q")
    assert code == 0, err
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["run"]["model"]["kind"] == "config" and len(report["run"]["model"]["sha256"]) == 64
    (cfg / "config.json").write_text((cfg / "config.json").read_text().replace('"n_layer": 1', '"n_layer": 2'))
    code, _, err = run_cli(capsys, "replay", str(tmp_path / "a"), "-o", str(tmp_path / "b"))
    assert code == 2 and "has changed since the compile" in err and not (tmp_path / "b").exists()
    del report["run"]
    (tmp_path / "a" / "report.json").write_text(json.dumps(report))
    code, _, err = run_cli(capsys, "replay", str(tmp_path / "a"), "-o", str(tmp_path / "b"))
    assert code == 2 and "has no run section" in err


def test_a_report_that_breaks_the_schema_is_caught(capsys, tmp_path):
    import jsonschema

    code, _, err = run_cli(capsys, "compile", *RUNS["inference"], "-o", str(tmp_path / "a"), "-q")
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    for broken in ({k: v for k, v in report.items() if k != "run"},
                   report | {"time": {k: v for k, v in report["time"].items() if k != "cycles"}},
                   report | {"run": report["run"] | {"mode": "train"}}):  # a train run without its section
        with pytest.raises(jsonschema.ValidationError):
            validate(broken)
