"""Bad and odd input never gets a traceback: a few hundred fuzzed command lines, IR texts and
configs (benchmarks/fuzz.py; `make fuzz` runs 10,000), and the examples the issue named."""

import importlib.util
import json
from pathlib import Path

import pytest

from waferscale.cli import main

ROOT = Path(__file__).resolve().parent.parent


def load_fuzz():
    spec = importlib.util.spec_from_file_location("fuzz", ROOT / "benchmarks" / "fuzz.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fuzzed_inputs_exit_0_or_with_one_line():
    r = load_fuzz().fuzz(300, seed=11)
    assert r["per_generator"] == {"ir_opt": 60, "ir_compile": 60, "mlir": 60, "config": 60, "flags": 60}
    assert r["failures"] == []


def one_line_error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, (code, err)
    return err


@pytest.mark.parametrize("change,msg", [
    ({"n_embd": 32, "n_head": 12}, "n_head = 12 does not divide n_embd = 32"),
    ({"n_head": 0}, "n_head = 0 is out of range"),
    ({"activation_function": "bogus"}, "activation_function 'bogus'"),
    ({"vocab_size": 1_000_000_000}, "vocab_size = 1,000,000,000 is out of range"),
    ({"n_layer": 1_000_000}, "n_layer = 1,000,000 is out of range"),
    ({"layer_norm_epsilon": 1e300}, "layer_norm_epsilon"),
    ({"n_layer": "2"}, "n_layer"),
])
def test_a_bad_config_is_one_line_before_transformers_sees_it(tmp_path, capsys, change, msg):
    cfg = {"model_type": "gpt2", "n_layer": 1, "n_embd": 16, "n_head": 2, "n_positions": 16, "vocab_size": 64}
    (tmp_path / "config.json").write_text(json.dumps(cfg | change))
    err = one_line_error(capsys, ["compile", str(tmp_path), "-q", "-o", str(tmp_path / "out")])
    assert msg in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv,msg", [
    (["--batch", "1000000000000"], "--batch = 1,000,000,000,000 is out of range"),
    (["--batch", "999999999999999999999999999999"], "out of range"),
    (["--batch", "65536", "--seq", "1024"], "tokens, more than"),
    (["--seed", "-1"], "--seed = -1 is out of range"),
    (["--target", "mesh:8x8,fmac=0.5"], "fmac must be a whole number"),
    (["--target", "mesh:8x8,clock_ghz=0"], "must be a positive number"),
])
def test_bad_sizes_are_one_line(tmp_path, capsys, argv, msg):
    err = one_line_error(capsys, ["compile", "tiny", "--seq", "16", "-q", "-o", str(tmp_path / "o"), *argv])
    assert msg in err


def test_bad_ir_files_are_one_line(tmp_path, capsys):
    assert main(["compile", "tiny", "--seq", "8", "-q", "-o", str(tmp_path / "t")]) == 0
    text = (tmp_path / "t" / "model.ir").read_text()
    f = tmp_path / "bad.ir"
    cases = {
        text.replace('loc("transformer', 'loc("trans\x01former', 1): "bad string literal",
        text.replace("graph @tiny(", "graph @tiny(" + "[" * 5000, 1): "",
        text.replace('"dtype":"f16"', '"dtyp":"f16"', 1): "header lacks 'dtype'",
    }
    for bad, msg in cases.items():
        f.write_text(bad)
        assert msg in one_line_error(capsys, ["opt", str(f)] if not msg.startswith("header") else
                                     ["compile", str(f), "-q", "-o", str(tmp_path / "o")])
    f.write_bytes(b"\xff\xfe" + text.encode())
    assert "not a UTF-8 text file" in one_line_error(capsys, ["opt", str(f)])
    nl = tmp_path / "two\nlines.ir"
    nl.write_text("graph @x(")
    assert "two lines.ir" in one_line_error(capsys, ["opt", str(nl)])


def test_the_pe_level_refuses_operands_beyond_the_limit(capsys):
    err = one_line_error(capsys, ["simulate-kernel", "gemv", "--k", "65536", "--n", "65536", "--mesh", "wse2",
                                  "--level", "pe"])
    assert "16.0 GiB of operands" in err


def test_a_long_run_traces_its_first_samples_only(tmp_path, capsys, monkeypatch):
    from waferscale.report import trace

    monkeypatch.setattr(trace, "MAX_TRACE_SLICES", 30)
    assert main(["compile", "tiny", "--seq", "16", "--batch", "4", "--target", "mesh:16x16", "-q",
                 "-o", str(tmp_path / "o")]) == 0
    doc = json.loads((tmp_path / "o" / "trace.json").read_text())
    slices = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    shown = doc["otherData"]["samples_shown"]
    assert 1 <= shown < 4 and doc["otherData"]["samples"] == 4 and "first" in doc["otherData"]["note"]
    assert {e["args"]["sample"] for e in slices} == set(range(shown)) and len(slices) <= 30


def test_damaged_compiled_directories_are_one_line(tmp_path, capsys):
    d = tmp_path / "d"
    assert main(["compile", "tiny", "--seq", "8", "--target", "mesh:16x16", "-q", "-o", str(d)]) == 0
    capsys.readouterr()
    good = (d / "report.json").read_text()
    for content, msg in (("[]", "does not have the shape"), ('{"model": null}', "lacks the key"),
                         (b"\xff\xfe{", "not UTF-8"), ("{", "not valid JSON")):
        (d / "report.json").write_bytes(content if isinstance(content, bytes) else content.encode())
        assert msg in one_line_error(capsys, ["report", str(d)])
    (d / "report.json").write_text(good)
    pj = json.loads((d / "placement.json").read_text())
    (d / "placement.json").write_text(json.dumps(pj | {"kernels": None}))
    assert "does not have the shape" in one_line_error(capsys, ["report", str(d)])


def test_library_warnings_stay_off_stderr_unless_asked(tmp_path):
    import subprocess
    import sys

    cfg = {"model_type": "gpt2", "n_layer": 1, "n_embd": 16, "n_head": 2, "n_positions": 16, "vocab_size": 64}
    (tmp_path / "config.json").write_text(json.dumps(cfg))  # GPT-2's token ids 50256 lie outside this vocabulary

    def wafer(*argv):  # a fresh process: transformers warns once per process
        return subprocess.run([sys.executable, "-m", "waferscale.cli", *argv], capture_output=True, text=True)
    quiet = wafer("compile", str(tmp_path), "--seq", "4", "-q", "-o", str(tmp_path / "a"))
    assert quiet.returncode == 0 and quiet.stderr == ""
    loud = wafer("-v", "compile", str(tmp_path), "--seq", "4", "-q", "-o", str(tmp_path / "b"))
    assert loud.returncode == 0 and "eos_token_id" in loud.stderr


def test_a_hung_case_is_reported_as_a_hang(monkeypatch):
    import time

    from waferscale.cli import info

    fuzz = load_fuzz()
    monkeypatch.setattr(fuzz, "CASE_SECONDS", 1)
    monkeypatch.setattr(info, "cmd_models", lambda args: time.sleep(10))
    code, err = fuzz.run_cli(["models"])
    assert code == -1 and fuzz.check(code, err) == "exit -1: hang: still running after 1 s"
