"""`wafer compile --target` and `wafer report`: the files, their determinism, and one-line errors."""

import json

import pytest

from .test_cli import run_cli

WAFER_FILES = [".waferscale-output", "mesh.png", "model.ir", "placement.json", "report.html", "report.json",
               "report.txt", "trace.json"]


def test_compile_with_a_target_writes_deterministic_placement_trace_and_picture(capsys, tmp_path):
    reports = []
    for d in ("a", "b"):
        code, out, err = run_cli(capsys, "compile", "tiny", "--seq", "64", "--batch", "2", "--target", "mesh:32x32",
                                 "-o", str(tmp_path / d))
        assert code == 0, err
        assert sorted(p.name for p in (tmp_path / d).iterdir()) == WAFER_FILES
        assert "placed on mesh:32x32" in err and "mesh:32x32 (layer-pipelined)" in out
        r = json.loads((tmp_path / d / "report.json").read_text())
        assert r["compile"]["wafer_seconds"] > 0
        reports.append({k: v for k, v in r.items() if k not in ("compile", "host")})
    for name in ("placement.json", "trace.json", "mesh.png", "model.ir"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert reports[0] == reports[1]

    r = reports[0]
    assert r["target"] == "mesh:32x32" and r["mode"] == "layer-pipelined"
    t = r["time"]
    assert t["cycles"] > 0 and t["seconds"] == pytest.approx(t["cycles"] / r["machine"]["clock_hz"])
    assert t["tokens_per_s"] == pytest.approx(2 * 64 / t["seconds"])
    assert 0 < t["mfu"] < 1 and t["cycles"] >= t["roofline_cycles"]
    # a custom mesh has no published peak: MFU is against its own cores, and says so
    assert t["mfu"] == pytest.approx(t["mfu_usable_pes"]) and "none published" in t["mfu_basis"]
    assert 0 < t["latency_cycles"] <= t["cycles"] and t["latency_seconds"] < t["seconds"]  # two samples
    assert 0 < r["placement"]["occupancy"] <= 1

    pj = json.loads((tmp_path / "a" / "placement.json").read_text())
    k = pj["kernels"][0]
    assert {"rect", "cores", "sram_bytes_per_core", "flops", "cycles", "utilization", "bound"} <= set(k)
    assert k["sram_bytes_per_core"]["total"] == sum(v for b, v in k["sram_bytes_per_core"].items() if b != "total")
    assert {"route", "hops", "bytes"} <= set(pj["flows"][0])
    assert sum(x["cores"] for x in pj["kernels"]) == r["placement"]["cores_used"]

    trace = json.loads((tmp_path / "a" / "trace.json").read_text())
    slices = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    tracks = {e["tid"] for e in trace["traceEvents"] if e.get("name") == "thread_name"}
    assert tracks == set(range(len(pj["kernels"]))) and {e["tid"] for e in slices} == tracks
    assert all(e["dur"] > 0 and e["ts"] >= 0 for e in slices)
    assert (tmp_path / "a" / "mesh.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    code, out, _ = run_cli(capsys, "report", str(tmp_path / "a"))
    assert code == 0
    assert out == (tmp_path / "a" / "report.txt").read_text()
    assert "Wafer: mesh:32x32" in out and "lm_head/layernorm+linear" in out


@pytest.mark.parametrize("argv,message", [
    (["compile", "tiny", "--target", "wse7"], "unknown target 'wse7'"),
    (["compile", "tiny", "--target", "mesh:0x9"], "impossible mesh 0x9"),
    (["compile", "tiny", "--target", "mesh:3x3", "--mode", "pipelined"],
     "does not fit on mesh:3x3 in layer-pipelined mode"),
    (["compile", "tiny", "--target", "mesh:2x2"], "does not fit on mesh:2x2 in weight-streaming mode even at batch 1"),
    (["report", "/nonexistent"], "cannot read /nonexistent/report.json"),
])
def test_wafer_errors_are_one_line(capsys, tmp_path, argv, message):
    out_dir = tmp_path / "never"
    if argv[0] == "compile":
        argv = argv + ["--seq", "16", "-o", str(out_dir), "-q"]
    code, _, err = run_cli(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0], err
    assert not out_dir.exists()
