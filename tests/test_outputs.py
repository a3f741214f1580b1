"""Output directories are all or nothing, and every failure is one line: exit 2 for the user's
input, exit 3 (with the traceback in a file) for a bug."""

import os

import pytest

from waferscale import cli
from waferscale.cli import main
from waferscale.report import summary

COMPILE = ["compile", "tiny", "--seq", "16", "-q"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(d):
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_a_new_compile_replaces_the_whole_directory(tmp_path, capsys):
    d = tmp_path / "out"
    assert run(capsys, *COMPILE, "--target", "mesh:16x16", "-o", str(d))[0] == 0
    assert (d / "placement.json").exists()
    assert run(capsys, *COMPILE, "-o", str(d))[0] == 0
    assert sorted(p.name for p in d.iterdir()) == ["model.ir", "report.json", "report.txt"]  # nothing stale
    code, out, _ = run(capsys, "report", str(d))
    assert code == 0 and "tiny" in out
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left beside it


@pytest.mark.parametrize("step", ["writing", "swapping"])
def test_a_compile_killed_in_its_final_write_leaves_the_old_directory_whole(tmp_path, capsys, monkeypatch, step):
    d = tmp_path / "out"
    assert run(capsys, *COMPILE, "--target", "mesh:16x16", "-o", str(d))[0] == 0
    before = snapshot(d)

    def killed(*a, **k):
        raise KeyboardInterrupt

    if step == "writing":  # after the first few files of the new directory are written
        real, n = summary._put, []

        def put(folder, batch):
            n.append(1)
            if len(n) > 1:
                raise KeyboardInterrupt
            real(folder, batch)
        monkeypatch.setattr(summary, "_put", put)
    else:
        monkeypatch.setattr(summary, "_exchange", killed)
    code, _, err = run(capsys, *COMPILE, "-o", str(d))
    assert code == 130 and "interrupted" in err
    assert snapshot(d) == before  # the old directory, whole
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_temporary_folders_of_killed_runs_are_cleaned_up(tmp_path, capsys):
    stale = tmp_path / ".out.new-999999999-abc"  # a pid that cannot be alive
    stale.mkdir()
    (stale / "report.json").write_text("{}")
    mine = tmp_path / f".out.new-{os.getpid()}-xyz"  # a live process's: left alone
    mine.mkdir()
    assert run(capsys, *COMPILE, "-o", str(tmp_path / "out"))[0] == 0
    assert not stale.exists() and mine.exists()


def test_a_foreign_directory_is_refused_not_replaced(tmp_path, capsys):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "thesis.tex").write_text("precious")
    code, _, err = run(capsys, *COMPILE, "-o", str(d))
    assert code == 2 and "holds no report.json" in err and len(err.strip().splitlines()) == 1
    assert [p.name for p in d.iterdir()] == ["thesis.tex"]
    f = tmp_path / "file"
    f.write_text("x")
    code, _, err = run(capsys, *COMPILE, "-o", str(f))
    assert code == 2 and "not a directory" in err


def test_a_bug_is_one_line_with_the_traceback_in_a_file(tmp_path, capsys, monkeypatch):
    def broken(args):
        raise ZeroDivisionError("division by zero\nsecond line")
    monkeypatch.setattr(cli, "cmd_models", broken)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    code, _, err = run(capsys, "models")
    lines = err.strip().splitlines()
    assert code == 3 and len(lines) == 1 and "internal error (a bug in waferscale" in lines[0]
    assert "ZeroDivisionError: division by zero second line" in lines[0]
    log = next(tmp_path.glob("wafer-bug-*.log"))
    assert str(log) in lines[0] and "Traceback" in log.read_text() and "wafer models" in log.read_text()
