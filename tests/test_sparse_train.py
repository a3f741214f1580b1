"""Sparse training (sparsify before autodiff and adamw): masked gradients and a masked loop against
PyTorch's, pruned weights kept at exactly zero, the step's text form, and the compiled step's
streamed bytes and time against dense training."""

import copy
import functools

import numpy as np
import pytest
import torch

from waferscale.backends.kernels.grads import Accumulate
from waferscale.backends.machine import get_machine
from waferscale.backends.sparse import SparseWeight, draw_mask
from waferscale.cli import main
from waferscale.driver import run_passes
from waferscale.errors import UnsupportedError
from waferscale.frontend.lm import trace_lm
from waferscale.ir import parse, print_graph, verify
from waferscale.passes.adamw import AdamWConfig, trainable
from waferscale.runtime import train as T
from waferscale.runtime.interpreter import run
from waferscale.runtime.torch_train import torch_train
from waferscale.training import compile_training

B, S = 2, 16
TOL = 1e-4
SPARSE = "canonicalize,sparsify{density=0.25},autodiff"


@functools.cache
def _traced():
    return trace_lm("tiny", batch=B, seq=S, weights="random", seed=0)


def fresh():
    t = _traced()
    module = copy.deepcopy(t.module)
    weights = {n.removeprefix("model."): p.detach().numpy().copy() for n, p in module.named_parameters()}
    return t.graph, module, weights


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_masked_gradients_equal_torch_masked_gradients():
    graph, module, weights = fresh()
    s = run_passes(graph, SPARSE, weights=weights)
    g = verify(s.graph)
    masks = T.sparse_masks(g)
    assert len(masks) == 8 and all(m.mean() == 0.25 for m in masks.values())  # every linear but the tied lm_head
    assert sum(len(op.operands) == 3 for op in g.ops if op.kind == "linear_grad_w") == 8
    tok = np.random.default_rng(0).integers(0, 512, (B, S + 1))
    loss, *grads = run(g, {"input_ids": tok[:, :-1], "labels": tok[:, 1:]}, T.initial_state(g, s.weights))
    named = dict(module.named_parameters())
    with torch.no_grad():
        for n, m in masks.items():
            named["model." + n.removeprefix(T.MASK)].mul_(torch.from_numpy(m))
    logits = module(torch.from_numpy(tok[:, :-1]))
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, 512), torch.from_numpy(tok[:, 1:]).reshape(-1))
    ref.backward()
    assert abs(float(loss) - ref.item()) <= TOL * ref.item()
    for p, d in zip(trainable(g), grads):
        want = named["model." + p.name].grad.numpy()
        m = masks.get(T.MASK + p.name)
        if m is not None:
            assert not d[~m].any()  # a pruned weight's gradient is exactly zero
            want = want * m
        assert rel(d, want) <= TOL, p.name


def test_pruned_weights_stay_zero_and_the_loss_matches_the_masked_torch_loop():
    graph, module, weights = fresh()
    s = run_passes(graph, SPARSE + ",adamw{lr=0.003}", weights=weights)
    g, masks = s.graph, T.sparse_masks(s.graph)
    stream = T.random_stream(512, B * (S + 1), seed=0)  # one batch, seen every step: the loss must fall
    ours, state = T.train(g, {**weights, **masks}, T.batches(stream, B, S), 5)  # unpruned weights: pruned first
    ref = torch_train(module, T.batches(stream, B, S), 5, AdamWConfig(lr=3e-3), masks=masks)
    assert max(abs(a - b) / b for a, b in zip(ours, ref)) <= TOL
    assert ours[-1] < ours[0] - 0.05
    for n, m in masks.items():
        w = n.removeprefix(T.MASK)
        assert not state[w][~m].any() and not state["adam.m." + w][~m].any() and not state["adam.v." + w][~m].any()
        assert np.all(state[w][m] != weights[w][m])  # the kept ones trained
        assert rel(state[w], dict(module.named_parameters())["model." + w].detach().numpy()) <= TOL


def test_sparse_step_round_trips_through_text_and_computes_the_same():
    graph, _, weights = fresh()
    s = run_passes(graph, SPARSE + ",adamw", weights=weights)
    text = print_graph(s.graph)
    back = parse(text)
    assert print_graph(back) == text and "mask.transformer.h.0.mlp.c_fc.weight" in text
    tok = np.random.default_rng(1).integers(0, 512, (B, S + 1))
    masks = T.sparse_masks(s.graph)  # the magnitude masks: the text form holds no data, as for the weights
    a, _ = T.train(s.graph, {**weights, **masks}, iter([(tok[:, :-1], tok[:, 1:])]), 1)
    b, _ = T.train(back, {**weights, **masks}, iter([(tok[:, :-1], tok[:, 1:])]), 1)
    assert a == b


def test_a_tied_weight_read_dense_too_is_refused():
    graph, _, weights = fresh()
    with pytest.raises(UnsupportedError, match="reads dense too"):
        run_passes(graph, "canonicalize,sparsify{density=0.5,exclude=none},autodiff", weights=weights)


def test_sparse_gradient_kernel_does_less_work_and_is_never_slower():
    m = get_machine("mesh:8x8")
    mask = draw_mask(256, 256, 0.1, 0, "w")
    sw = SparseWeight("w", 256, 256, float(mask.mean()), mask)
    dense = Accumulate(tokens=64, dtype="f16", elem=2, k=256, n=256, flops_per_token=2 * 256 * 256)
    sparse = Accumulate(tokens=64, dtype="f16", elem=2, k=256, n=256, flops_per_token=0.2 * 256 * 256, sparse=sw)
    assert sparse.work(0, 64).sram_write == pytest.approx(0.1 * dense.work(0, 64).sram_write, rel=0.01)
    for rows, cols in ((8, 8), (4, 2), (1, 1)):
        assert sparse.model_cycles(rows, cols, 0, 64, m) <= dense.model_cycles(rows, cols, 0, 64, m)
    assert sparse.model_cycles(1, 1, 0, 64, m) < 0.5 * dense.model_cycles(1, 1, 0, 64, m)
    assert sparse.sram(8, 8)["accumulators"] < dense.sram(8, 8)["accumulators"]


@functools.cache
def sparse_step(mode):
    return compile_training("tiny", batch=2, seq=32, target="wse2", mode=mode, sparsity=0.25)


def test_sparse_streaming_step_streams_less_both_ways_and_is_no_slower():
    t = sparse_step("streaming").report["train"]
    sp, dense = t["sparsity"], t["sparsity"]["dense"]
    assert sp["weights"] == 8 and sp["density"] == pytest.approx(0.25)
    assert t["stream_in_bytes"] < 0.8 * dense["stream_in_bytes"]
    assert t["stream_out_bytes"] < 0.8 * dense["stream_out_bytes"]
    assert t["step_seconds"] <= dense["step_seconds"] and sp["speedup"] >= 1
    assert t["optimizer"]["seconds"] < dense["optimizer_seconds"]  # MemoryX updates the kept parameters only
    # the sparse weights' gradient kernels (not the dense tied lm_head's) make the kept entries only
    grads = [k for k in sparse_step("streaming").state.program.kernels if k.op.kind == "linear_grad_w"]
    sparse = [k for k in grads if len(k.op.operands) == 3]
    assert len(sparse) == 8 and all(k.model.sparse.density == 0.25 for k in sparse)
    assert all(k.model.sparse is None for k in grads if k not in sparse)


def test_sparse_pipelined_step_is_no_slower():
    t = sparse_step("pipelined").report["train"]
    assert t["step_seconds"] <= t["sparsity"]["dense"]["step_seconds"]


def test_cli_run_train_sparse_compares_with_the_masked_torch_loop(capsys):
    assert main(["run", "tiny", "--train", "--sparsity", "0.25", "--steps", "3", "--compare", "-q"]) == 0
    out = capsys.readouterr().out
    assert "8 sparse weights at density 0.25" in out and "not zero after the last step: 0" in out
    assert ": ok" in out


@pytest.mark.parametrize("argv,match", [
    (["run", "tiny", "--train", "--sparsity", "0"], "--sparsity 0.0 must be in (0, 1]"),
    (["run", "tiny", "--sparsity", "0.5"], "--sparsity is an option of training: add --train"),
    (["run", "tiny", "--train", "--sparsity", "0.5", "--lora", "2"], "not supported: --sparsity with --lora"),
    (["compile", "tiny", "--train", "--target", "wse2", "--sparsity", "1.5"], "must be in (0, 1]"),
    (["compile", "tiny", "--train", "--target", "wse2", "--sparsity", "0.5", "--lora", "2"],
     "not supported: --sparsity with --lora"),
])
def test_cli_sparse_training_errors_are_one_line(argv, match, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1
