"""Hostile files and options (issue 24): each is one error line and exit 2 (or is read), never a hang,
memory running out, a long run or a traceback (exit 3). Every reader of a user's file goes through
safe_read.py; these tests feed each one devices, FIFOs, deep nesting, huge numbers, bad bytes and
random JSON."""

import functools
import json
import os
import re
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from waferscale import limits as L
from waferscale.cli import main
from waferscale.errors import WaferError
from waferscale.safe_read import loads_json, read_bytes, short
from waferscale.studies.sweep import read_points
from waferscale.studies.sweep_spec import load_spec


def one_line_error(capsys, argv):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("wafer: error: "), (code, err)
    return err


@functools.cache
def compiled_dir() -> Path:
    """What `wafer compile` writes for tiny on a 16x16 mesh (compiled once per session)."""
    d = Path(tempfile.mkdtemp()) / "tiny"
    assert main(["compile", "tiny", "--seq", "8", "--target", "mesh:16x16", "-q", "-o", str(d)]) == 0
    return d


def compiled() -> tuple[str, str]:
    """report.json and placement.json of tiny on a 16x16 mesh."""
    return (compiled_dir() / "report.json").read_text(), (compiled_dir() / "placement.json").read_text()


def report_dir(tmp: Path, report: str | bytes, placement: str | bytes | None = None) -> Path:
    d = tmp / "r"
    d.mkdir(exist_ok=True)
    for name, content in (("report.json", report), ("placement.json", placement)):
        f = d / name
        if f.is_symlink() or f.exists():
            f.unlink()
        if content is not None:
            f.write_bytes(content if isinstance(content, bytes) else content.encode())
    return d


# -- 3: unbounded reads --

def test_a_report_that_is_a_device_or_a_fifo_is_refused_before_it_is_read(tmp_path, capsys):
    d = report_dir(tmp_path, None)
    (d / "report.json").symlink_to("/dev/zero")
    assert "is a character device, not a regular file" in one_line_error(capsys, ["report", d])
    (d / "report.json").unlink()
    os.mkfifo(d / "report.json")
    t0 = time.perf_counter()
    assert "is a FIFO, not a regular file" in one_line_error(capsys, ["report", d])  # no writer: would hang
    assert time.perf_counter() - t0 < 5
    for f, argv in (("x.ir", ["opt"]), ("x.mlir", ["compile", "-q", "-o", tmp_path / "o"]),
                    ("s.yaml", ["sweep", "-o", tmp_path / "o"])):
        os.mkfifo(tmp_path / f)
        assert "is a FIFO" in one_line_error(capsys, [argv[0], tmp_path / f, *argv[1:]])


def test_a_file_over_its_bound_is_refused_and_a_growing_one_is_capped(tmp_path, capsys, monkeypatch):
    report, _ = compiled()
    monkeypatch.setattr(L, "MAX_REPORT_FILE_BYTES", 1000)
    err = one_line_error(capsys, ["report", report_dir(tmp_path, report)])
    assert f"is {len(report):,} bytes, more than the 1,000 this tool reads" in err
    # a read stops at its bound even if the file is longer than its size said when it was checked
    f = tmp_path / "grows"
    f.write_bytes(b"x" * 10)
    real_stat, real_fstat = os.stat, os.fstat

    def small(st):  # the size a file had before it grew
        return os.stat_result((*st[:6], 5, *st[7:10]))
    with monkeypatch.context() as m:
        m.setattr(os, "stat", lambda p, **kw: small(real_stat(p, **kw)))
        m.setattr(os, "fstat", lambda fd: small(real_fstat(fd)))
        with pytest.raises(WaferError, match="grew past the 8 bytes"):
            read_bytes(f, "test file", 8)
    assert read_bytes(f, "test file", 10) == b"x" * 10


# -- 5: exit 2, not 3 --

def test_deep_nesting_and_huge_numbers_in_a_report_are_one_line(tmp_path, capsys):
    report, placement = compiled()
    for depth in (100_000, 100):  # past the recursion limit (RecursionError), past ours
        err = one_line_error(capsys, ["report", report_dir(tmp_path, "[" * depth + "]" * depth)])
        assert "nested more than 64 deep" in err
    doc = json.loads(report)
    doc["model"]["flops_per_token"] = 10 ** 400  # int -> float overflowed (OverflowError)
    err = one_line_error(capsys, ["report", report_dir(tmp_path, json.dumps(doc), placement)])
    assert "a number of 401 characters ('1000000000" in err and len(err) < 200
    doc["model"]["flops_per_token"], doc["model"]["params"] = 1.0, "PARAMS"  # past Python's int-string limit
    text = json.dumps(doc).replace('"PARAMS"', "9" * 5000)
    assert "a number of 5,000 characters" in one_line_error(capsys, ["report", report_dir(tmp_path, text)])
    assert "too large for a float" in one_line_error(capsys, ["report", report_dir(tmp_path, '{"a": 1e400}')])
    assert main(["report", str(report_dir(tmp_path, report, placement))]) == 0  # and the real one still reads


def test_a_non_utf8_line_in_a_sweeps_points_is_one_line_and_a_torn_one_is_skipped(tmp_path):
    f = tmp_path / "points.jsonl"
    row = {"ok": False, "error": "impossible mesh", "pass_seconds": {}}
    good = json.dumps({"point": "p1", "row": row})
    f.write_bytes(f"{good}\n{good[:20]}\n".encode())
    assert read_points(f) == {"p1": row}
    for bad, msg in ((b"\xff\xfe{}", "line 2 is not UTF-8 text"), (b"[" * 1000, "line 2: nested more than 64 deep"),
                     (b'{"point": "p2", "row": ' + b"9" * 5000 + b"}", "line 2: a number of 5,000 characters")):
        f.write_bytes(good.encode() + b"\n" + bad + b"\n")
        with pytest.raises(WaferError, match=msg):
            read_points(f)
    # a row of the wrong shape is not resumed (its point runs again)
    f.write_text(json.dumps({"point": "p3", "row": {"ok": True, "cores": "many", "tokens_per_s": 1}}) + "\n")
    assert read_points(f) == {}


def test_a_bad_mesh_option_is_one_line(capsys):
    for mesh, msg in (("8x8,sram_kib=1.2.3", "sram_kib=1.2.3 is not a number"), ("9" * 5000 + "x8", "impossible mesh"),
                      ("8x8,fmac=" + "9" * 400, "must be a positive number")):
        err = one_line_error(capsys, ["simulate-kernel", "gemm", "--m", "4", "--k", "4", "--n", "4", "--mesh", mesh])
        assert msg in err and len(err) < 300


RESOURCE = """module {
  func.func @main(%arg0: !torch.vtensor<[2,8],f32>) -> !torch.vtensor<[2,8],f32> {
    %w = torch.vtensor.literal(dense_resource<KEY> : tensor<2x8xf32>) : !torch.vtensor<[2,8],f32>
    %int1 = torch.constant.int 1
    %0 = torch.aten.add.Tensor %arg0, %w, %int1 : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32>, !torch.int -> !torch.vtensor<[2,8],f32>
    return %0 : !torch.vtensor<[2,8],f32>
  }
}
"""  # noqa: E501


def test_a_dense_resource_key_with_mlir_escapes_is_read(tmp_path, capsys):
    from waferscale.frontend.torch_mlir_import import mlir_string

    assert mlir_string('"w\\01x\\"\\\\\\n"', 0) == 'w\x01x"\\\n'  # MLIR's escapes, which JSON does not read
    f = tmp_path / "m.mlir"
    f.write_text(RESOURCE.replace("KEY", '"w\\01x"'))  # was JSONDecodeError: exit 3
    assert main(["compile", str(f), "-q", "-o", str(tmp_path / "o")]) == 0
    f.write_text(RESOURCE.replace("KEY", '"w\\zx"'))
    assert "not a valid torch-dialect module" in one_line_error(capsys, ["compile", f, "-q", "-o", tmp_path / "p"])


# -- 4: a billion laughs --

def laughs(levels: int, key: str) -> str:
    """A spec whose ``key`` holds 9 ** levels strings through nested aliases."""
    items = ["&l0 [" + ", ".join(['"lollollollol"'] * 9) + "]"]
    items += [f"&l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return f"model: tiny\nmesh: 8x8\n{key}: [{', '.join(items)}]\n"


@pytest.mark.parametrize("key", ["name", "sample", "batch"])
def test_a_billion_laughs_spec_is_refused_before_it_expands(tmp_path, capsys, key):
    f = tmp_path / "s.yaml"
    f.write_text(laughs(9, key))
    t0 = time.perf_counter()
    err = one_line_error(capsys, ["sweep", f, "-o", tmp_path / "o"])
    assert "its aliases expand to more than 100,000 values" in err and time.perf_counter() - t0 < 30
    # within the budget (9 ** 4 strings), the value is quoted cut short
    f.write_text(laughs(4, key))
    err = one_line_error(capsys, ["sweep", f, "-o", tmp_path / "o"])
    assert f"key '{key}'" in err and "…" in err and len(err) < 400


def test_short_cuts_long_values():
    assert short("x" * 1000).endswith("…") and len(short("x" * 1000)) == L.MAX_ERROR_VALUE_CHARS
    assert short([1, 2]) == "[1, 2]"


# -- 6: long runs --

@pytest.mark.parametrize("argv", [
    ["--m", "1000000", "--k", "31", "--n", "64", "--mesh", "4x4"],
    ["--m", "64", "--k", "4096", "--n", "4096", "--mesh", "64x64", "--dtype", "f32"],
])
def test_a_pe_run_of_minutes_is_refused_before_it_starts(capsys, argv):
    t0 = time.perf_counter()
    err = one_line_error(capsys, ["simulate-kernel", "gemm", *argv, "--level", "both"])
    assert "PE-cycles" in err and "--level tile" in err and time.perf_counter() - t0 < 10


def test_every_benchmark_case_fits_the_pe_limits():
    import sys

    sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
    import fidelity
    import fidelity_sparse
    import pe_speed

    from waferscale.backends.gemm import gemm_time
    from waferscale.backends.machine import get_machine

    cases = [(m, k, n, t, d, *(rest or ["chain"])[:1]) for m, k, n, t, d, _, *rest in fidelity.CASES]
    cases += [(m, k, n, t, "f16", r) for m, k, n, t, _ in pe_speed.CASES for r in ("chain", "tree")]
    cases += [(m, k, n, t, "f16", "chain") for m, k, n, t, *_ in fidelity_sparse.CASES]
    for m, k, n, target, dtype, reduce in cases:
        mc = get_machine(target)
        cycles = gemm_time(m, k, n, mc.rows, mc.cols, mc.datapath(dtype), reduce=reduce, machine=mc).total
        assert cycles <= L.MAX_PE_SIM_CYCLES and cycles * min(mc.rows, k) * min(mc.cols, n) <= L.MAX_PE_SIM_PE_CYCLES


# -- random bytes and random JSON to every reader: exit 0 or 2, never 3 --

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                    max_leaves=30)
HOSTILE = st.sampled_from(["[" * 5000, '{"a": ' + "9" * 5000 + "}", "1e999", "-" + "1" * 45, '"\\ud800"', "NaN"])


def texts() -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=200), JSON.map(lambda v: json.dumps(v).encode()),
                     HOSTILE.map(str.encode), st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")))


def _set(doc, path: list, value):
    """``doc`` with the value at a path of keys (as far as it goes) replaced."""
    node = doc
    for key in path[:-1]:
        if isinstance(node, dict) and node:
            node = node[sorted(node)[key % len(node)]]
    if isinstance(node, dict) and node:
        node[sorted(node)[path[-1] % len(node)]] = value
    return doc


FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(which=st.sampled_from(["report", "placement"]), path=st.lists(st.integers(0, 99), min_size=1, max_size=4),
       value=JSON | HOSTILE.map(lambda s: json.loads(s) if len(s) < 50 and s != '"\\ud800"' else s),
       raw=st.none() | texts(), html=st.booleans())
def test_wafer_report_of_a_doctored_directory_exits_0_or_2(capsys, which, path, value, raw, html):
    report, placement = compiled()
    docs = {"report": json.loads(report), "placement": json.loads(placement)}
    docs[which] = _set(docs[which], path, value)
    text = {k: json.dumps(v) for k, v in docs.items()}
    if raw is not None:
        text[which] = raw
    with tempfile.TemporaryDirectory() as tmp:
        d = report_dir(Path(tmp), text["report"], text["placement"])
        assert main(["report", str(d), *(["--html"] if html else [])]) in (0, 2)
        capsys.readouterr()


@FUZZ
@given(lines=st.lists(texts(), max_size=5))
def test_sweep_resume_reads_any_points_file_or_says_why(lines):
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "points.jsonl"
        f.write_bytes(b"\n".join(lines))
        try:
            assert isinstance(read_points(f), dict)
        except WaferError as e:
            assert "\n" not in str(e)


@FUZZ
@given(data=texts(), suffix=st.sampled_from([".ir", ".mlir"]))
def test_ir_and_mlir_files_compile_or_say_why(capsys, data, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / f"m{suffix}"
        f.write_bytes(data)
        argv = ["opt", f] if suffix == ".ir" else ["compile", f, "-q", "-o", Path(tmp) / "o"]
        assert main([str(a) for a in argv]) in (0, 2)
        capsys.readouterr()


@FUZZ
@given(i=st.integers(0, 10 ** 6), number=st.sampled_from(["9" * 5000, "9" * 39, "1e999", "nan", "-1", "0", "1.5",
                                                          "4294967296"]), compile_it=st.booleans())
def test_an_ir_dump_with_a_doctored_number_compiles_or_says_why(capsys, i, number, compile_it):
    text = (compiled_dir() / "model.ir").read_text()
    spans = [m.span() for m in re.finditer(r"(?<![\w.%@])\d+(?:\.\d+)?(?![\w.])", text)]
    a, b = spans[i % len(spans)]
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "m.ir"
        f.write_text(text[:a] + number + text[b:])
        argv = ["compile", f, "--target", "mesh:16x16", "-q", "-o", Path(tmp) / "o"] if compile_it else ["opt", f]
        assert main([str(x) for x in argv]) in (0, 2)
        capsys.readouterr()


@FUZZ
@given(data=texts() | JSON.map(lambda v: json.dumps({"model": "tiny", "mesh": "8x8", "batch": v}).encode()),
       suffix=st.sampled_from([".yaml", ".json"]))
def test_a_sweep_spec_loads_or_says_why(data, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / f"s{suffix}"
        f.write_bytes(data)
        try:
            load_spec(f).points()
        except WaferError as e:
            assert "\n" not in str(e) and len(str(e)) < 1000


def test_loads_json_bounds_nesting_without_recursion():
    with pytest.raises(WaferError, match="nested more than 64 deep"):
        loads_json("[" * 65 + "]" * 65, "x")
    assert loads_json("[" * 64 + "]" * 64, "x") is not None


@pytest.mark.parametrize("old, new, says", [
    ('"batch":1,', '"batch":' + "9" * 39 + ",", "'batch' is out of range"),
    ('"batch":1,', '"batch":0,', "'batch' is out of range"),
    ('"flops_per_token":', '"flops_per_token":0,"x":', "'flops_per_token' is out of range"),
    ('"matmul":', '"matmul":-1,"y":', "flops_per_token_by_class needs non-negative"),
    ("f16[128,64]", "f16[0,64]", "has a dimension of 0"),
])
def test_a_doctored_header_or_an_empty_weight_is_one_line(capsys, old, new, says):
    """What the fuzz test above found (a header's batch of 10^38 or 0, flops of 0, a weight of 0 rows):
    each is one exit-2 line naming it, not a crash in the simulator or the report."""
    text = (compiled_dir() / "model.ir").read_text()
    assert old in text
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "m.ir"
        f.write_text(text.replace(old, new, 1))
        assert main(["compile", str(f), "--target", "mesh:16x16", "-q", "-o", str(Path(tmp) / "o")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], err
