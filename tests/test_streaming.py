"""Weight streaming: a layer at a time on the whole wafer, its weights from MemoryX. The mode auto
chooses, the time respects the I/O link and the peak, double buffering hides the stream exactly
when compute is longer, a batch too big is one error with the largest that fits, and the
numbers equal the interpreter's."""

import functools
import json
import math

import numpy as np
import pytest

from waferscale.backends import assumptions as A
from waferscale.driver import run_passes
from waferscale.errors import FitError
from waferscale.frontend.lm import trace_lm
from waferscale.runtime.interpreter import run
from waferscale.runtime.placed_run import run_placed

from .conftest import traced
from .test_cli import run_cli

STREAM = "canonicalize,fuse,lower,place{mode=streaming},route,simulate"


@functools.cache
def streamed(target="mesh:32x32", batch=2, seq=32, model="tiny", pipeline=STREAM):
    t = trace_lm(model, batch=batch, seq=seq, dtype="f16", weights="meta")
    return run_passes(t.graph, pipeline, batch=batch, seq=seq, target=target)


def test_layers_are_groups_that_each_have_the_whole_mesh():
    s = streamed()
    pl = s.placement
    assert pl.mode == "streaming"
    assert [g.name for g in pl.groups] == ["embeddings", "transformer.h.0", "transformer.h.1", "head"]
    assert [len(g.kernels) for g in pl.groups] == [2, 5, 5, 1]
    # the two blocks have the same shape: the same rectangles
    assert [pl.rects[k] for k in pl.groups[1].kernels] == [pl.rects[k] for k in pl.groups[2].kernels]
    assert sum(g.weight_bytes for g in pl.groups) == sum(k.weight_bytes for k in s.program.kernels)
    assert pl.reserved_bytes > 0 and pl.reason.startswith("weight streaming: asked for")


@pytest.mark.parametrize("target", ["mesh:32x32", "mesh:24x40", "mesh:32x32,io_gbs=1", "mesh:32x32,io_gbs=10000"])
def test_a_streamed_layer_is_never_faster_than_its_stream_or_its_flops(target):
    s = streamed(target)
    m, sim = s.machine, s.sim
    io_per_cycle = m.io_bytes_per_s / m.clock_hz
    peak_per_cycle = 2 * m.fmacs_per_cycle * m.cores
    link = 0
    for g, t in zip(s.placement.groups, sim.groups):
        assert t.stream == math.ceil(t.stream_start + g.weight_bytes / io_per_cycle) - t.stream_start
        assert t.stream_start >= link  # one link: the streams follow one another
        link = t.stream_end
        assert t.start >= t.stream_end  # a layer runs once its weights are in
        flops = sum(sim.kernels[k].executed_flops for k in g.kernels)
        assert t.compute >= flops / peak_per_cycle
    assert sim.cycles >= sum(g.weight_bytes for g in s.placement.groups) / io_per_cycle
    assert sim.cycles >= sim.roofline_cycles


@pytest.mark.parametrize("io_gbs", [1, 10, 100, 10000])
def test_double_buffering_hides_the_stream_when_compute_is_longer_and_only_then(io_gbs):
    sim = streamed(f"mesh:32x32,io_gbs={io_gbs}").sim
    for prev, g in zip(sim.groups, sim.groups[1:]):
        # g's weights stream while prev computes (its buffer is free once the layer before prev ended)
        if g.stream_end <= prev.end:
            assert g.start == prev.end  # hidden: no wait
        else:
            assert g.start == g.stream_end > prev.end  # exposed: the wafer waits for the weights
    bounds = {g.bound for g in sim.groups[1:]}
    assert bounds == ({"stream"} if io_gbs <= 1 else {"compute"} if io_gbs >= 10000 else bounds)


def test_auto_picks_pipelined_when_the_model_fits_and_streaming_otherwise(capsys, tmp_path):
    fits = streamed("mesh:32x32", pipeline="canonicalize,fuse,lower,place,route,simulate").placement
    assert fits.mode == "pipelined" and fits.reason.startswith("layer-pipelined: it fits: its kernels take")
    small = streamed("mesh:3x3", pipeline="canonicalize,fuse,lower,place,route,simulate").placement
    assert small.mode == "streaming" and "layer-pipelined does not fit (tiny does not fit on mesh:3x3" in small.reason
    code, _, err = run_cli(capsys, "compile", "tiny", "--seq", "32", "--target", "mesh:3x3", "-o", str(tmp_path), "-q")
    assert code == 0, err
    r = json.loads((tmp_path / "report.json").read_text())
    assert r["mode"] == "weight-streaming" and r["mode_reason"].startswith("weight streaming: layer-pipelined does")
    t = r["time"]
    assert t["stream_bytes"] == sum(x["weight_bytes"] for x in t["layers"]) > 0
    assert 0 < t["stream_seconds"] and 0 <= t["stream_overlap"] <= 1
    assert {x["bound"] for x in t["layers"]} <= {"compute", "stream"}
    trace = json.loads((tmp_path / "trace.json").read_text())
    names = {e["args"]["name"] for e in trace["traceEvents"] if e.get("name") == "thread_name"}
    assert "weights from MemoryX (system I/O)" in names and "layers" in names
    assert "streaming       " in (tmp_path / "report.txt").read_text()


def test_zoo_models_on_a_wse2_choose_their_mode():
    for name, mode in (("tiny", "pipelined"), ("cerebras-gpt-111m", "pipelined")):
        t = traced(name, seq=128, weights="meta", dtype="f16")
        assert run_passes(t.graph, "canonicalize,fuse,lower,place", seq=128, target="wse2").placement.mode == mode
    # 13B in f32 (52 GB of weights) does not fit a WSE-2's 35 GB pipelined: auto streams it
    t = traced("cerebras-gpt-13b", seq=2048, weights="meta", dtype="f32")
    s = run_passes(t.graph, "canonicalize,lower,place", seq=2048, target="wse2")
    assert s.placement.mode == "streaming" and len(s.placement.groups) == 42
    assert s.placement.reason.startswith("weight streaming: layer-pipelined does not fit (cerebras-gpt-13b does not "
                                         "fit on wse2 in layer-pipelined mode")


def test_a_batch_too_big_names_the_largest_that_fits():
    with pytest.raises(FitError, match=r"tiny at batch 4000 does not fit on mesh:16x16 in weight-streaming mode: "
                                       r"the batch's activations between layers take [\d,]+ B per core .* the largest "
                                       r"batch that fits is (\d+)") as e:
        streamed("mesh:16x16", batch=4000, seq=128)
    largest = int(str(e.value).split("the largest batch that fits is ")[1].split(" ")[0])
    assert streamed("mesh:16x16", batch=largest, seq=128).placement.mode == "streaming"
    with pytest.raises(FitError):
        streamed("mesh:16x16", batch=largest + 1, seq=128)


def test_the_activations_reserved_grow_with_the_batch():
    small, big = streamed(batch=1).placement, streamed(batch=8).placement
    per_token = 2 * 64  # the residual stream, f16, crosses each layer boundary
    assert big.reserved_bytes - small.reserved_bytes == pytest.approx(
        A.RESIDENT_ACTIVATION_COPIES * 7 * 32 * per_token / 1024, abs=2)


@pytest.mark.parametrize("target", ["mesh:32x32", "mesh:13x11"])
def test_streamed_numerics_equal_the_interpreter(target):
    t = trace_lm("tiny", batch=2, seq=24, dtype="f32", weights="random", seed=5)
    s = run_passes(t.graph, STREAM.replace(",simulate", ""), batch=2, seq=24, target=target)
    ids = np.random.default_rng(0).integers(0, t.info["vocab"], (2, 24))
    feed = {t.graph.inputs[0].name: ids}
    want = run(t.graph, feed, t.weights)[0]
    got = run_placed(s.program, s.placement, feed, t.weights)[0]
    assert np.abs(got - want).max() / np.abs(want).max() <= 1e-5


def test_a_model_without_blocks_streams_as_one_group():
    from waferscale.ir import parse

    g = parse("""graph @mlp(%x: f32[1,8,16]) {
  param %w1 : f32[16,64]
  param %w2 : f32[64,16]
  %0 = linear %x, %w1 : f32[1,8,64] loc("up")
  %1 = gelu %0 : f32[1,8,64] loc("act")
  %2 = linear %1, %w2 : f32[1,8,16] loc("down")
  return %2
}
""")
    s = run_passes(g, STREAM, seq=8, target="mesh:8x8")
    assert [(x.name, len(x.kernels)) for x in s.placement.groups] == [("mlp", 2)]
    assert s.sim.groups[0].weight_bytes == (16 * 64 + 64 * 16) * 4
