"""Training steps compiled and simulated: both modes on tiny, the refusal of a model too large for
layer-pipelined training, data-parallel scaling, training FLOPs against the closed form."""

import functools
import json

import numpy as np
import pytest

from waferscale.cli import main
from waferscale.driver import run_passes
from waferscale.errors import FitError, UsageError
from waferscale.frontend.lm import trace_lm
from waferscale.runtime.interpreter import run
from waferscale.training import compile_training, matmul_params, training_flops

SEQ = 32


@functools.cache
def compiled(mode, systems=1, batch=4, target="wse2"):
    return compile_training("tiny", batch=batch, seq=SEQ, target=target, mode=mode, systems=systems)


@pytest.mark.parametrize("mode,name", [("pipelined", "layer-pipelined"), ("streaming", "weight-streaming")])
def test_training_step_compiles_and_simulates_in_both_modes(mode, name):
    c = compiled(mode)
    t = c.report["train"]
    assert t["mode"] == name == c.report["mode"]
    assert t["step_seconds"] >= t["micro_batch_seconds"] * t["micro_batches"] > 0
    assert t["tokens_per_s"] == pytest.approx(4 * SEQ / t["step_seconds"])
    assert 0 < t["mfu"] < 1
    directions = {x["direction"] for x in t["layers"]}
    assert directions == {"forward", "backward"}
    # the step graph (model.ir) holds the backward and the optimizer
    assert {"linear_grad_w", "embedding_grad", "attention_grad"} <= set(c.report["ir"]["ops"])
    params = c.report["model"]["params"]
    if mode == "streaming":
        # every weight gradient streams out once per micro-batch (f16: 2 bytes each); weights come in twice
        assert t["stream_out_bytes"] == 2 * params * t["micro_batches"]
        assert t["stream_in_bytes"] >= 2 * t["stream_out_bytes"]
        assert "MemoryX" in t["optimizer"]["where"]
        assert all(x["stream_in_seconds"] > 0 for x in t["layers"] if x["weight_bytes"])
    else:
        assert t["stream_in_bytes"] == t["stream_out_bytes"] == 0
        assert t["sram_bytes"]["optimizer_state"] == 3 * 4 * params  # m, v and f32 master weights
        assert t["sram_bytes"]["total"] <= t["sram_bytes"]["usable"]


def test_pipelined_training_too_large_is_refused_with_its_shortfall():
    with pytest.raises(FitError, match=r"layer-pipelined training: it keeps .* MB short"):
        compile_training("tiny", batch=1, seq=SEQ, target="mesh:6x6", mode="pipelined")


def test_auto_mode_streams_a_model_too_large_for_pipelined():
    c = compile_training("tiny", batch=1, seq=SEQ, target="mesh:6x6,sram_kib=256", mode="auto")
    assert c.report["train"]["mode"] == "weight-streaming"
    assert "layer-pipelined does not fit" in c.report["mode_reason"]


def test_cluster_scaling_is_monotone_and_never_above_linear():
    steps = {n: compiled("streaming", systems=n, batch=8).report["train"]["step_seconds"] for n in (1, 2, 4)}
    assert steps[1] > steps[2] > steps[4]
    for n, s in steps.items():
        assert steps[1] / s <= n
    t = compiled("streaming", systems=4, batch=8).report["train"]
    assert t["swarmx"]["levels"] == 1 and t["batch_per_system"] == 2


def test_training_flops_within_one_percent_of_6n_plus_attention():
    t = trace_lm("cerebras-gpt-111m", batch=1, seq=128, dtype="f16", weights="meta")
    g = run_passes(t.graph, "canonicalize,autodiff").graph
    f = training_flops(g, 128)
    closed = 6 * matmul_params(g) + 12 * 10 * 128 * 768
    assert abs(f["total"] - closed) / closed <= 0.01
    assert f["backward"] == pytest.approx(2 * f["forward"], rel=0.02)
    # recomputation is not model work
    r = run_passes(g, "recompute").graph
    assert training_flops(r, 128) == f


def test_recompute_changes_no_number():
    t = trace_lm("tiny", batch=2, seq=16, weights="random")
    a = run_passes(t.graph, "canonicalize,autodiff").graph
    b = run_passes(a, "recompute").graph
    assert len(b.ops) > len(a.ops)
    tok = np.random.default_rng(0).integers(0, 512, (2, 17))
    feed = {"input_ids": tok[:, :-1], "labels": tok[:, 1:]}
    for x, y in zip(run(a, feed, t.weights), run(b, feed, t.weights)):
        assert np.array_equal(x, y)


def test_cli_compile_train_writes_the_train_section(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["compile", "tiny", "--train", "--batch", "2", "--seq", "16", "--target", "wse2", "--mode",
                 "streaming", "-q", "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["train"]["micro_batches"] >= 1 and "Training step" in (out / "report.txt").read_text()
    assert "training step of batch 2" in capsys.readouterr().out


@pytest.mark.parametrize("argv,match", [
    (["compile", "tiny", "--systems", "2", "--target", "wse2"], "--batch 1 does not split evenly over --systems 2"),
    (["compile", "tiny", "--train"], "give --target"),
    (["compile", "tiny", "--train", "--batch", "3", "--systems", "2", "--target", "wse2"], "split evenly"),
    (["compile", "tiny", "--train", "--systems", "2", "--batch", "2", "--mode", "pipelined", "--target", "wse2"],
     "layer-pipelined training is one system"),
])
def test_cli_train_errors_are_one_line(argv, match, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1


def test_systems_must_divide_the_batch():
    with pytest.raises(UsageError):
        compile_training("tiny", batch=3, seq=SEQ, target="wse2", systems=2)


def test_lora_streams_no_gradient_for_frozen_weights():
    c = compile_training("tiny", batch=2, seq=SEQ, target="wse2", mode="streaming",
                         lora="lora{rank=4,alpha=8.0,targets=c_attn}")
    t = c.report["train"]
    lo = t["lora"]
    assert lo["trainable_params"] == 2 * (64 * 4 + 4 * 192)  # A [64, 4] and B [4, 192] in each of two layers
    assert t["stream_out_bytes"] == 2 * lo["trainable_params"] * t["micro_batches"]  # f16 adapters' gradients only
    assert lo["full_fine_tuning"]["stream_out_bytes"] > 10 * t["stream_out_bytes"]
    # the frozen weights still stream in, for the forward and again for the backward
    assert t["stream_in_bytes"] >= 0.9 * lo["full_fine_tuning"]["stream_in_bytes"]
    backward = [x for x in t["layers"] if x["direction"] == "backward"]
    assert all(x["grad_bytes"] in (0, 2 * (64 * 4 + 4 * 192)) for x in backward)


@pytest.mark.parametrize("flag", [["-p", "canonicalize"], ["--print-ir-after-all"], ["--frontend", "torch-mlir"],
                                  ["--compile-to", "lower"]])
def test_compile_train_refuses_what_it_would_ignore(flag, capsys):
    assert main(["compile", "tiny", "--train", "--target", "wse2", *flag]) == 2
    assert "not supported" in capsys.readouterr().err
