"""Serving in weight-streaming mode (``serve/streamed.py``, `wafer serve --mode streaming`): step
costs from the weight-streaming simulator, the KV caches in MemoryX, admission bounded by what
MemoryX holds beside the weights; on the tiny model."""

import json
from dataclasses import replace

import pytest

from waferscale.backends.machine import get_machine
from waferscale.serve.streamed import StreamedPlaced
from waferscale.serve.wafer import MAX_ERROR, wafer_costs

from .test_cli import run_cli

TARGET, CONTEXT, BATCH = "mesh:32x32", 64, 4


@pytest.fixture(scope="module")
def streamed():
    return wafer_costs("tiny", TARGET, max_context=CONTEXT, max_batch=BATCH, chunk=8, execution="streaming")


@pytest.fixture(scope="module")
def resident():
    return wafer_costs("tiny", TARGET, max_context=CONTEXT, max_batch=BATCH, chunk=8)


def test_step_costs_come_from_the_weight_streaming_simulator(streamed, resident):
    s, r = streamed.placed, resident.placed
    assert isinstance(s, StreamedPlaced) and s.parts[0][1].is_streaming and len(s.parts[0][1].groups) == 4
    assert streamed.report["execution"] == "streaming" and streamed.report["placement_mode"] == "streaming"
    assert "place{mode=streaming,streamed_gemm=sparse}" in streamed.report["pipeline"]
    assert resident.report["execution"] == "pipelined"
    m = get_machine(TARGET)
    weights = sum(g.weight_bytes for g in s.parts[0][1].groups)
    for b in (1, 2, BATCH):
        for c in (1, 32, CONTEXT - 4):
            d = s.decode(b, c)
            assert abs(d - r.decode(b, c)) > 0.01 * r.decode(b, c)  # not the resident program's cost
            assert d >= weights / m.io_bytes_per_s  # every layer's weights stream in once a step
    assert streamed.report["max_interpolation_error"] <= MAX_ERROR


def test_a_streamed_step_grows_sub_linearly_with_the_batch(streamed):
    p = streamed.placed
    for c in (1, 32, CONTEXT - 4):
        d1, d2, d4 = p.decode(1, c), p.decode(2, c), p.decode(4, c)
        assert d1 < d2 < d4 < 2 * d1  # the weights' stream is shared by the batch: far below 4 x d1


def test_the_kv_caches_stream_from_memoryx_and_bound_admission(streamed):
    p, m = streamed.placed, get_machine(TARGET)
    assert sum(p.per_kernel_kv) == p.kv_bytes_per_token == 512  # 2 layers x k and v x 4 heads x 16 x f16
    weights = p.kv_detail[0]["weight_bytes"]
    assert p.kv_capacity_tokens == (m.memoryx_bytes - weights) // p.kv_bytes_per_token
    assert streamed.cost.kv_capacity_bytes == p.kv_capacity_tokens * p.kv_bytes_per_token
    no_kv = replace(p, per_kernel_kv=[0] * len(p.per_kernel_kv))
    assert p.decode(BATCH, CONTEXT - 4) > no_kv.decode(BATCH, CONTEXT - 4)  # the cached rows are streamed in
    assert p.decode(BATCH, 1) < p.decode(BATCH, CONTEXT - 4)
    assert p.prefill(8, 40) > no_kv.prefill(8, 40)


def _small_memoryx(tmp_path, tokens: int) -> str:
    """A 32x32 mesh whose MemoryX holds the tiny model's weights and ``tokens`` tokens of KV cache."""
    weights = 347_648  # tiny's f16 weights as the decode program holds them (asserted below)
    m = replace(get_machine(TARGET), name="tiny-memoryx", memoryx_bytes=float(weights + tokens * 512))
    path = tmp_path / "small.yaml"
    path.write_text(m.to_yaml())
    return str(path)


def test_wafer_serve_streaming_admits_up_to_the_memoryx_capacity(capsys, tmp_path):
    target = _small_memoryx(tmp_path, 40)  # 40 tokens: two requests of 16 rows at once, not three
    out = tmp_path / "out"
    code, text, err = run_cli(capsys, "serve", "tiny", "--target", target, "--mode", "streaming", "--rate", "1e6",
                              "--requests", "10", "--prompt-dist", "fixed:8", "--output-dist", "fixed:8",
                              "--max-batch", "8", "--chunk", "8", "--max-context", "16", "-q", "-o", str(out))
    assert code == 0, err
    assert "weight streaming" in text and "in MemoryX" in text
    report = json.loads((out / "report.json").read_text())
    cost, s = report["serve"]["costs"]["all"], report["serve"]["summary"]
    assert cost["kv_kernels"][0]["weight_bytes"] == 347_648 and cost["kv_capacity_tokens"] == 40
    assert s["kv_capacity_bytes"] == 40 * 512 and s["completed"] == 10 and s["rejected"] == 0
    assert s["kv_peak_bytes"] == 2 * 16 * 512  # admitted up to what MemoryX holds, never beyond
    assert s["queue_max"] >= 1  # the rest waited, though --max-batch allowed 8
    run = report["run"]
    assert run["execution"] == "streaming" and report["mode"] == "weight-streaming"
    eng = run["engines"]["all"]
    assert eng["execution"] == "streaming" and eng["placement"] == "weight-streaming"
    assert run["executed"]["all"].endswith(",lower,place{mode=streaming,streamed_gemm=sparse},route,simulate")


@pytest.mark.parametrize("argv,message", [
    (("--policy", "disaggregated"), "with --policy disaggregated"),
    (("--systems", "2"), "with --systems > 1"),
    (("--draft", "tiny", "--accept", "0.5"), "with --draft"),
])
def test_streaming_serves_one_colocated_engine_else_not_supported(capsys, tmp_path, argv, message):
    code, _, err = run_cli(capsys, "serve", "tiny", "--target", TARGET, "--mode", "streaming", "--rate", "10",
                           "--requests", "2", *argv, "-q", "-o", str(tmp_path / "o"))
    assert code == 2 and "not supported: serving in weight-streaming mode" in err and message in err
    assert len(err.strip().splitlines()) == 1


def test_auto_serves_streamed_where_layer_pipelined_does_not_fit(capsys, tmp_path):
    code, text, err = run_cli(capsys, "serve", "tiny", "--target", "mesh:8x8,sram_kib=8", "--mode", "auto", "--rate",
                              "3000", "--requests", "6", "--prompt-dist", "uniform:2,8", "--output-dist",
                              "uniform:1,4", "--max-batch", "2", "--chunk", "8", "--max-context", "16", "-q", "-o",
                              str(tmp_path))
    assert code == 0, err
    report = json.loads((tmp_path / "report.json").read_text())
    eng = report["run"]["engines"]["all"]
    assert report["run"]["execution"] == "auto" and eng["execution"] == "streaming"
    assert eng["execution_reason"].startswith("auto: layer-pipelined does not fit (serving places 2 sequences'")
    assert report["serve"]["summary"]["completed"] == 6 and "weight streaming" in text
