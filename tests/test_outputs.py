"""Output directories are all or nothing, and every failure is one line: exit 2 for the user's
input, exit 3 (with the traceback in a file) for a bug."""

import os

import pytest

from waferscale.cli import info, main
from waferscale.report import outputs

MARKER = outputs.MARKER
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
    assert sorted(p.name for p in d.iterdir()) == [MARKER, "model.ir", "report.json", "report.txt"]  # nothing stale
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
        real, n = outputs._put, []

        def put(folder, batch):
            n.append(1)
            if len(n) > 1:
                raise KeyboardInterrupt
            real(folder, batch)
        monkeypatch.setattr(outputs, "_put", put)
    else:
        monkeypatch.setattr(outputs, "_exchange", killed)
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
    assert code == 2 and f"holds no {MARKER}; first file: thesis.tex" in err and len(err.strip().splitlines()) == 1
    assert [p.name for p in d.iterdir()] == ["thesis.tex"]
    f = tmp_path / "file"
    f.write_text("x")
    code, _, err = run(capsys, *COMPILE, "-o", str(f))
    assert code == 2 and "not a directory" in err


def test_a_bug_is_one_line_with_the_traceback_in_a_file(tmp_path, capsys, monkeypatch):
    def broken(args):
        raise ZeroDivisionError("division by zero\nsecond line")
    monkeypatch.setattr(info, "cmd_models", broken)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    code, _, err = run(capsys, "models")
    lines = err.strip().splitlines()
    assert code == 3 and len(lines) == 1 and "internal error (a bug in waferscale" in lines[0]
    assert "ZeroDivisionError: division by zero second line" in lines[0]
    log = next(tmp_path.glob("wafer-bug-*.log"))
    assert str(log) in lines[0] and "Traceback" in log.read_text() and "wafer models" in log.read_text()


# --- never over what we did not write (issue 24) ---------------------------------------------------

BENCH = ["bench", "--models", "tiny", "--target", "mesh:16x16", "--batch", "1", "--seq", "16", "-q",
         "-p", "canonicalize,lower,place,route,simulate"]
SWEEP = ["sweep", "--models", "tiny", "--meshes", "2x2", "--seq", "16", "--batch", "1", "--no-ray", "-q"]
ARGV = {"compile": COMPILE, "bench": BENCH, "sweep": SWEEP}
OLD = 1_000_000_000  # an mtime (2001) that no write of ours can give a file


def stamp(d):
    """Every entry under d: its bytes (a file), its link (a link) and its mtime; unchanged means untouched."""
    return {p.relative_to(d).as_posix(): (p.read_bytes() if p.is_file() and not p.is_symlink() else
                                          os.readlink(p) if p.is_symlink() else None, p.lstat().st_mtime_ns)
            for p in sorted(d.rglob("*"))}


def users(d, files):
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_text(text)
        os.utime(d / name, (OLD, OLD))
    return d


def no_junk(*folders):
    for f in folders:
        assert not [p.name for p in f.iterdir() if p.name.startswith(".") and (".new-" in p.name or ".old-" in p.name)]


def no_work(monkeypatch):
    """Make the work of each command fail the test: a refusal must come before it."""
    import waferscale
    import waferscale.studies.bench
    import waferscale.studies.sweep

    def work(*a, **k):
        raise AssertionError("the work started before -o was checked")
    monkeypatch.setattr(waferscale, "compile", work)
    monkeypatch.setattr(waferscale.studies.bench, "run", work)
    monkeypatch.setattr(waferscale.studies.sweep, "_traces", work)


@pytest.fixture(scope="module")
def earlier(tmp_path_factory):
    """A directory an earlier `wafer compile` wrote, with an ir/ folder of dumps."""
    d = tmp_path_factory.mktemp("earlier") / "out"
    assert main([*COMPILE, "--print-ir-after-all", "-o", str(d)]) == 0
    assert (d / "ir").is_dir() and (d / MARKER).is_file()
    return d


def copy_of(earlier, tmp_path):
    import shutil

    return shutil.copytree(earlier, tmp_path / "out", symlinks=True)


@pytest.mark.parametrize("command,files,first", [
    ("compile", {"report.json": "{}", "thesis.tex": "x"}, "report.json"),  # the reproduction of issue 24
    ("bench", {"bench.json": "{}", "thesis.tex": "x"}, "bench.json"),
    ("sweep", {"points.jsonl": "", "thesis.tex": "x"}, "points.jsonl"),
    ("compile", {"model.ir": "", "report.json": "{}", "report.txt": ""}, "model.ir"),  # an older waferscale's
])
def test_a_directory_without_our_marker_is_refused_before_the_work(tmp_path, capsys, monkeypatch, command, files,
                                                                   first):
    d = users(tmp_path / "prj", files)
    before = stamp(d)
    no_work(monkeypatch)
    code, _, err = run(capsys, *ARGV[command], "-o", str(d))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert str(d) in err and f"holds no {MARKER}; first file: {first}" in err
    assert "remove it yourself or give -o another directory" in err
    assert stamp(d) == before
    no_junk(tmp_path)


@pytest.mark.parametrize("change,named", [
    (lambda d: (d / "notes.txt").write_text("mine"), "notes.txt"),
    (lambda d: (d / "ir" / "notes.txt").write_text("mine"), "ir/notes.txt"),
    (lambda d: (d / "data").mkdir(), "data"),
    (lambda d: ((d / "report.txt").unlink(), (d / "report.txt").symlink_to(d.parent / "thesis.tex")), "report.txt"),
])
def test_an_earlier_output_with_a_file_we_did_not_write_is_refused(earlier, tmp_path, capsys, monkeypatch, change,
                                                                    named):
    d = copy_of(earlier, tmp_path)
    users(tmp_path, {"thesis.tex": "precious"})
    change(d)
    before, beside = stamp(d), stamp(tmp_path)
    no_work(monkeypatch)
    code, _, err = run(capsys, *COMPILE, "-o", str(d))
    assert code == 2 and f"{d} holds {named}, which `wafer compile` did not write there" in err
    assert stamp(d) == before and stamp(tmp_path) == beside


def test_another_commands_output_or_a_marker_not_ours_is_refused(earlier, tmp_path, capsys, monkeypatch):
    no_work(monkeypatch)
    d = copy_of(earlier, tmp_path)
    for argv in (BENCH, SWEEP):
        code, _, err = run(capsys, *argv, "-o", str(d))
        assert code == 2 and f"{d} holds the output of `wafer compile`, not of `wafer {argv[0]}`" in err
    for text in ("{", '{"tool": "other", "command": "compile", "files": []}', '[]'):
        (d / MARKER).write_text(text)
        code, _, err = run(capsys, *COMPILE, "-o", str(d))
        assert code == 2 and f"holds no {MARKER}" in err
    assert (d / "model.ir").read_bytes() == (earlier / "model.ir").read_bytes()


def test_recompiling_into_an_earlier_output_replaces_it_and_opt_may_add_to_it(earlier, tmp_path, capsys):
    d = copy_of(earlier, tmp_path)
    assert run(capsys, "opt", str(d / "model.ir"), "-p", "canonicalize", "-o", str(d / "opt.ir"))[0] == 0
    assert "opt.ir" in outputs.read_marker(d)["files"]  # a file we wrote there: the marker lists it
    assert run(capsys, *COMPILE, "-o", str(d))[0] == 0
    assert sorted(p.name for p in d.iterdir()) == [MARKER, "model.ir", "report.json", "report.txt"]
    assert outputs.read_marker(d) == {"tool": "waferscale", "command": "compile",
                                      "files": ["model.ir", "report.json", "report.txt"]}
    no_junk(tmp_path)


@pytest.mark.parametrize("command", ["compile", "bench", "sweep"])
def test_a_file_or_a_link_to_nothing_as_output_is_refused_before_the_work(tmp_path, capsys, monkeypatch, command):
    no_work(monkeypatch)
    f = users(tmp_path, {"file": "x"}) / "file"
    code, _, err = run(capsys, *ARGV[command], "-o", str(f))
    assert code == 2 and f"{f} exists and is not a directory" in err and f.read_text() == "x"
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "tofile").symlink_to(f)
    for link in ("dangling", "tofile"):
        code, _, err = run(capsys, *ARGV[command], "-o", str(tmp_path / link))
        assert code == 2 and "is a symbolic link to" in err and "which is not a directory" in err
    assert not (tmp_path / "nowhere").exists() and f.read_text() == "x"
    no_junk(tmp_path)


def test_a_parent_we_cannot_write_is_refused_before_the_work(tmp_path, capsys, monkeypatch):
    no_work(monkeypatch)
    monkeypatch.setattr(outputs, "_writable", lambda d: d != tmp_path)  # root may write anywhere: pretend
    code, _, err = run(capsys, *COMPILE, "-o", str(tmp_path / "a" / "b"))
    assert code == 2 and f"cannot write {tmp_path}/a/b: {tmp_path} is not writable" in err
    assert list(tmp_path.iterdir()) == []


def test_a_link_to_an_earlier_output_replaces_the_directory_it_points_to(earlier, tmp_path, capsys):
    d = copy_of(earlier, tmp_path)
    (tmp_path / "elsewhere").mkdir()
    link = tmp_path / "elsewhere" / "link"
    link.symlink_to(d)
    assert run(capsys, *COMPILE, "-o", str(link))[0] == 0
    assert link.is_symlink() and os.readlink(link) == str(d)  # the link stays a link, to the same place
    assert sorted(p.name for p in d.iterdir()) == [MARKER, "model.ir", "report.json", "report.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "out"]
    assert [p.name for p in (tmp_path / "elsewhere").iterdir()] == ["link"]
    users(tmp_path, {"mine/thesis.tex": "x"})
    link.unlink()
    link.symlink_to(tmp_path / "mine")  # a link to the user's directory: refused like the directory
    code, _, err = run(capsys, *COMPILE, "-o", str(link))
    assert code == 2 and "first file: thesis.tex" in err and (tmp_path / "mine" / "thesis.tex").read_text() == "x"


def test_the_current_directory_is_refused_for_a_compile_and_resumed_into_by_a_sweep(earlier, tmp_path, capsys,
                                                                                    monkeypatch):
    d = copy_of(earlier, tmp_path)
    monkeypatch.chdir(d)
    before = stamp(d)
    for o in (".", str(d), ".."):
        code, _, err = run(capsys, *COMPILE, "-o", o)
        assert code == 2 and "is the current directory or holds it" in err
    assert stamp(d) == before and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    s = tmp_path / "s"
    s.mkdir()
    monkeypatch.chdir(s)
    for _ in range(2):  # a sweep adds to its directory in place: "." works, and the second run resumes
        code, out, err = run(capsys, *SWEEP, "-o", ".")
        assert code == 0, err
    assert "1 resumed" in out and outputs.read_marker(s)["command"] == "sweep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "s"]
    no_junk(s)


def test_an_error_mid_write_or_a_file_arriving_leaves_both_directories_as_they_were(earlier, tmp_path, capsys,
                                                                                     monkeypatch):
    d = copy_of(earlier, tmp_path)
    before = stamp(d)
    real = outputs._put

    def broken(folder, batch):
        real(folder, batch)
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(outputs, "_put", broken)
    code, _, err = run(capsys, *COMPILE, "-o", str(d))
    assert code != 0 and stamp(d) == before and sorted(p.name for p in tmp_path.iterdir()) == ["out"]

    def arriving(folder, batch):  # the user saves a file into the directory while we write
        real(folder, batch)
        if MARKER in batch:
            (d / "notes.txt").write_text("mine")
    monkeypatch.setattr(outputs, "_put", arriving)
    code, _, err = run(capsys, *COMPILE, "-o", str(d))
    assert code == 2 and "holds notes.txt" in err and (d / "notes.txt").read_text() == "mine"
    assert {k: v for k, v in stamp(d).items() if k != "notes.txt"} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_without_an_atomic_exchange_the_old_directory_is_moved_aside_and_removed(earlier, tmp_path, capsys,
                                                                                  monkeypatch):
    d = copy_of(earlier, tmp_path)
    monkeypatch.setattr(outputs, "_exchange", lambda a, b: False)
    assert run(capsys, *COMPILE, "-o", str(d))[0] == 0
    assert sorted(p.name for p in d.iterdir()) == [MARKER, "model.ir", "report.json", "report.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_output_directories_follow_the_umask(tmp_path, capsys, mask):
    old = os.umask(mask)
    try:
        for argv, d in ((COMPILE + ["--print-ir-after", "canonicalize"], tmp_path / "c"), (SWEEP, tmp_path / "s")):
            assert run(capsys, *argv, "-o", str(d))[0] == 0
            for p in [d, *d.rglob("*")]:
                want = (0o777 if p.is_dir() else 0o666) & ~mask
                assert p.stat().st_mode & 0o777 == want, p
    finally:
        os.umask(old)


def test_opt_refuses_a_directory_as_its_output_file(earlier, tmp_path, capsys):
    (tmp_path / "d").mkdir()
    code, _, err = run(capsys, "opt", str(earlier / "model.ir"), "-p", "canonicalize", "-o", str(tmp_path / "d"))
    assert code == 2 and f"{tmp_path / 'd'} is a directory: give the name of a file" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"] and not any((tmp_path / "d").iterdir())


def test_a_directory_we_cannot_read_is_one_line(earlier, tmp_path, capsys, monkeypatch):
    d = copy_of(earlier, tmp_path)

    def unreadable(*a):  # root reads every directory: pretend, as chmod 000 would for a user
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(outputs, "_check_listing", unreadable)
    code, _, err = run(capsys, *COMPILE, "-o", str(d))
    assert code == 2 and f"cannot read {d}: Permission denied" in err
