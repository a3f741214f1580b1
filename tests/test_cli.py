"""The wafer CLI: outputs, determinism, and one-line errors with exit code 2."""

import json
import subprocess
import sys

import pytest

from waferscale.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_models_lists_the_zoo(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0
    assert "cerebras-gpt-13b" in out and "12,853,386,240" in out and "tiny" in out


def test_compile_writes_ir_and_reports_deterministically(capsys, tmp_path):
    reports, irs = [], []
    for d in ("a", "b"):
        code, out, err = run_cli(capsys, "compile", "tiny", "--seq", "32", "-o", str(tmp_path / d))
        assert code == 0, err
        assert sorted(p.name for p in (tmp_path / d).iterdir()) == [".waferscale-output", "model.ir", "report.json",
                                                                    "report.txt"]
        irs.append((tmp_path / d / "model.ir").read_text())
        r = json.loads((tmp_path / d / "report.json").read_text())
        assert r["compile"]["seconds"] > 0 and r["compile"]["peak_rss_bytes"] > 0
        reports.append({k: v for k, v in r.items() if k not in ("compile", "host")})
    assert irs[0] == irs[1] and reports[0] == reports[1]
    r = reports[0]
    assert r["model"]["name"] == "tiny" and r["model"]["params"] == 141056
    assert r["model"]["flops_per_token"] > 0 and r["ir"]["ops"]["attention"] == 2
    assert "version" in r
    assert "parameters" in (tmp_path / "a" / "report.txt").read_text()


def test_opt_reads_verifies_and_prints(capsys, tmp_path):
    run_cli(capsys, "compile", "tiny", "--seq", "8", "-o", str(tmp_path), "-q")
    ir = (tmp_path / "model.ir").read_text()
    code, out, _ = run_cli(capsys, "opt", str(tmp_path / "model.ir"))
    assert code == 0 and out == ir


def test_run_compare_agrees_with_pytorch(capsys):
    code, out, _ = run_cli(capsys, "run", "tiny", "--seq", "8", "--compare", "-q")
    assert code == 0 and "ok" in out


def test_run_compare_fails_when_tolerance_is_impossible(capsys):
    code, out, _ = run_cli(capsys, "run", "tiny", "--seq", "8", "--compare", "--tol", "0", "-q")
    assert code == 1 and "FAILED" in out


@pytest.fixture
def bad_ir(tmp_path):
    p = tmp_path / "bad.ir"
    p.write_text("graph @g(%x: f32[2]) {\n  %0 = neg %x f32[2]\n  return %0\n}\n")
    return p


@pytest.mark.parametrize("argv,message", [
    (["compile", "cerebras-gpt-11m"], "unknown model 'cerebras-gpt-11m'; did you mean cerebras-gpt-111m"),
    (["compile", "tiny", "--seq", "4096"], "--seq 4096 exceeds tiny's context of 128"),
    (["compile", "tiny", "--dtype", "f8"], "invalid choice: 'f8'"),
    (["compile", "tiny", "--batch", "0"], "--batch and --seq must be at least 1"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["opt", "/nonexistent/x.ir"], "cannot read /nonexistent/x.ir"),
    (["opt", "BAD"], "bad.ir:2:15: parse error: expected ':'"),
    (["opt", "BAD", "-p", "fuse"], "bad.ir:2:15"),
    (["run", "nope"], "unknown model 'nope'"),
])
def test_errors_are_one_line_with_exit_code_2(capsys, tmp_path, bad_ir, argv, message):
    argv = [str(bad_ir) if a == "BAD" else a for a in argv]
    out_dir = tmp_path / "never"
    if argv[0] == "compile":
        argv += ["-o", str(out_dir), "-q"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wafer: error: ") and message in lines[0], err
    assert not out_dir.exists()  # nothing half-written


def test_verify_errors_reach_the_cli_as_one_line(capsys, tmp_path):
    p = tmp_path / "wrong.ir"
    p.write_text("graph @g(%x: f32[2]) {\n  %0 = neg %x : f32[3]\n  return %0\n}\n")
    code, _, err = run_cli(capsys, "opt", str(p))
    assert code == 2 and err.count("\n") == 1 and "verify [type]" in err


def test_the_installed_command_prints_no_traceback():
    r = subprocess.run([sys.executable, "-m", "waferscale.cli", "compile", "gtp2"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "wafer: error: unknown model 'gtp2'; did you mean gpt2? (`wafer models` lists them all)"]


def test_opt_runs_a_pipeline_and_reports_each_pass(capsys, tmp_path):
    p = tmp_path / "dead.ir"
    p.write_text("graph @g(%x: f32[2]) {\n  param %w : f32[2]\n  %0 = neg %x : f32[2]\n"
                 "  %1 = add %x, %w : f32[2]\n  return %0\n}\n")
    code, out, err = run_cli(capsys, "opt", str(p), "-p", "dce")
    assert code == 0
    assert out == "graph @g(%x: f32[2]) {\n  %0 = neg %x : f32[2]\n  return %0\n}\n"
    assert "pass dce: 2 -> 1 ops" in err
    code, _, err = run_cli(capsys, "opt", str(p), "-p", "dce,frobnicate")
    assert code == 2 and "unknown pass 'frobnicate'" in err and err.count("\n") == 1


def test_compile_accepts_a_hugging_face_gpt2_config(capsys, tmp_path):
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100, n_positions=16).save_pretrained(tmp_path / "hf")
    code, out, err = run_cli(capsys, "compile", str(tmp_path / "hf"), "-o", str(tmp_path / "out"), "-q")
    assert code == 0, err
    r = json.loads((tmp_path / "out" / "report.json").read_text())
    assert r["model"]["source"] == "hf" and r["model"]["seq"] == 16 and r["model"]["layers"] == 1
    assert r["model"]["params"] == r["model"]["torch_params"]
    (tmp_path / "bad").mkdir()
    code, _, err = run_cli(capsys, "compile", str(tmp_path / "bad"), "-q")
    assert code == 2 and "holds no config.json" in err
