"""Training numerics against PyTorch (float32): every parameter's gradient from autodiff, one AdamW
step with clipping, and a 5-step loss curve. Relative error is max |ours - torch| / max |torch|
per tensor, as `wafer run --compare` measures it."""

import copy
import functools

import numpy as np
import pytest
import torch

from waferscale.cli import main
from waferscale.driver import run_passes
from waferscale.errors import UnsupportedError
from waferscale.frontend.lm import trace_lm
from waferscale.ir import GraphBuilder, TensorType, parse, print_graph, verify
from waferscale.passes.adamw import AdamWConfig, adamw
from waferscale.passes.autodiff import backward, next_token_loss
from waferscale.runtime import train as T
from waferscale.runtime.interpreter import run
from waferscale.runtime.torch_train import torch_train

B, S = 2, 16
TOL = 1e-4


@functools.cache
def _traced(name):
    t = trace_lm(name, batch=B, seq=S, weights="random", seed=0)
    with torch.no_grad():  # biases start at zero in GPT-2's init: make them random so that they are tested too
        gen = torch.Generator().manual_seed(1)
        for n, p in t.module.named_parameters():
            if n.endswith("bias"):
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))
    return t


def fresh(name):
    """The traced model with its own copy of the module and weights (training changes them)."""
    t = _traced(name)
    module = copy.deepcopy(t.module)
    weights = {n.removeprefix("model."): p.detach().numpy().copy() for n, p in module.named_parameters()}
    return t.graph, module, weights


def tokens(vocab, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, (B, S + 1))


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def torch_loss(module, tok):
    logits = module(torch.from_numpy(tok[:, :-1]))
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             torch.from_numpy(tok[:, 1:]).reshape(-1))


@pytest.mark.parametrize("name,pipeline", [("tiny", "canonicalize"), ("tiny-tanh", "canonicalize"),
                                           ("tiny-tanh", "")])  # HF's gelu_new arithmetic, differentiated as is
def test_every_gradient_matches_autograd(name, pipeline):
    graph, module, weights = fresh(name)
    g = verify(backward(next_token_loss(run_passes(graph, pipeline).graph)))
    tok = tokens(512)
    loss, *grads = run(g, {"input_ids": tok[:, :-1], "labels": tok[:, 1:]}, weights)
    ref = torch_loss(module, tok)
    ref.backward()
    assert abs(float(loss) - ref.item()) <= TOL * ref.item()
    by_name = {n.removeprefix("model."): p.grad.numpy() for n, p in module.named_parameters()}
    errs = {p.name: rel(d, by_name[p.name]) for p, d in zip(g.params, grads)}
    assert len(errs) == len(by_name) and max(errs.values()) <= TOL, errs
    if name == "tiny":
        assert {"linear_grad_w", "embedding_grad", "attention_grad", "layernorm_grad", "gelu_grad",
                "cross_entropy_grad"} <= set(g.op_counts())


def test_backward_graph_round_trips_through_text():
    graph, _, _ = fresh("tiny")
    g = run_passes(graph, "canonicalize,autodiff,adamw").graph
    text = print_graph(g)
    assert print_graph(parse(text)) == text


def test_adamw_ops_equal_torch_adamw_on_the_same_gradients():
    rng = np.random.default_rng(3)
    shapes = {"w": (8, 4), "b": (4,)}
    b = GraphBuilder("opt")
    loss = b.input("loss", TensorType((), "f32"))
    grads = [b.input(f"g.{n}", TensorType(s, "f32")) for n, s in shapes.items()]
    for n, s in shapes.items():
        b.param(n, TensorType(s, "f32"))
    g = adamw(b.output(loss, *grads))
    w = {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}
    gv = {n: 3 * rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}  # norm > 1: clipped
    ps = [torch.nn.Parameter(torch.from_numpy(w[n].copy())) for n in shapes]
    cfg = AdamWConfig()
    opt = torch.optim.AdamW(ps, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay)
    state = T.initial_state(g, w)
    for step in (1, 2, 3):
        for p, n in zip(ps, shapes):
            p.grad = torch.from_numpy(gv[n])
        torch.nn.utils.clip_grad_norm_(ps, cfg.clip)
        opt.step()
        outs = run(g, {"loss": np.float32(0), **{f"g.{n}": gv[n] for n in shapes}, "step": np.float32(step)}, state)
        state = {p.name: x for p, x in zip(g.params, outs[1:])}
        for p, n in zip(ps, shapes):
            moved = np.abs(p.detach().numpy() - w[n]).max()
            assert np.abs(state[n] - p.detach().numpy()).max() <= 1e-4 * moved


def first_step_tolerance(w, grad, cfg):
    """How far our weights after one AdamW step may be from torch's (elementwise, absolute), given
    torch's weights ``w`` after the step and the clipped gradient ``grad`` it took.

    The first step moves a weight by ``lr * (u + wd * w0)`` with ``u = g / (|g| + eps)``, so a
    gradient error ``dg`` moves the weight by ``lr * dg * eps / (|g| + eps)**2``: negligible where
    |g| >> eps, up to ``lr * dg / eps`` where g is near 0. The gradients (float32 sums over B*S
    tokens) are held to ``TOL * max|g|`` by test_every_gradient_matches_autograd; near-zero entries
    differ by about one ulp of the largest gradient (1.3e-9 at |g| = 1.7e-8 in h.1.mlp.c_proj of this
    model under numpy 2.4.6: 0.017 of a step, 2.6e-4 of max|w|, where a tolerance relative to max|w|
    failed). So: that gradient error carried through u (bounded by its steepest slope over
    |g| - dg .. |g| + dg), plus 4 ulps of w (each side rounds the decay and the update into w in its
    own order) and 1e-6 of a step (the float32 rounding of u and of the bias corrections). Where
    |g| >> eps this is a few ulps of w, tight enough to catch a missing weight decay (wd * |w| = 0.004
    of a step at |w| = 0.04) or a gradient wired to the wrong weight."""
    dg = TOL * np.abs(grad).max()
    slope = cfg.eps / (np.maximum(np.abs(grad) - dg, 0) + cfg.eps) ** 2
    return 4 * np.spacing(np.abs(w)) + cfg.lr * (1e-6 + dg * slope)


def test_one_training_step_equals_pytorch():
    graph, module, weights = fresh("tiny")
    g = run_passes(graph, "canonicalize,autodiff,adamw").graph
    tok = tokens(512, seed=1)
    _, state = T.train(g, weights, iter([(tok[:, :-1], tok[:, 1:])]), 1)
    cfg = AdamWConfig()
    torch_train(module, iter([(tok[:, :-1], tok[:, 1:])]), 1, cfg)
    for n, p in module.named_parameters():
        w = p.detach().numpy()
        ours = state[n.removeprefix("model.")]
        assert not np.array_equal(w, weights[n.removeprefix("model.")]), n  # the step did move it
        excess = np.abs(ours - w) - first_step_tolerance(w, p.grad.numpy(), cfg)
        assert excess.max() <= 0, (n, np.unravel_index(excess.argmax(), w.shape))


def test_mixed_precision_keeps_f32_master_weights_and_state():
    t = trace_lm("tiny", batch=1, seq=8, dtype="f16", weights="meta")
    g = run_passes(t.graph, "canonicalize,autodiff,adamw").graph
    types = {p.name: p.type.dtype for p in g.params}
    assert types["transformer.wte.weight"] == "f16"
    assert types["master.transformer.wte.weight"] == types["adam.m.transformer.wte.weight"] == "f32"
    assert len(g.outputs) == 1 + len(g.params)


def test_five_step_loss_curve_equals_pytorch_loop_and_falls():
    graph, module, weights = fresh("tiny")
    g = run_passes(graph, "canonicalize,autodiff,adamw{lr=0.003}").graph
    stream = T.random_stream(512, B * (S + 1), seed=0)  # one batch, seen every step: the loss must fall
    ours, _ = T.train(g, weights, T.batches(stream, B, S), 5)
    ref = torch_train(module, T.batches(stream, B, S), 5, AdamWConfig(lr=3e-3))
    assert max(abs(a - b) / b for a, b in zip(ours, ref)) <= TOL
    assert ours[-1] < ours[0] - 0.05


def test_autodiff_refuses_an_op_without_a_backward_rule():
    b = GraphBuilder("m")
    x = b.param("x", TensorType((4,), "f32"))
    g = b.output(b.op("reduce_max", x, axes=(0,)))
    with pytest.raises(UnsupportedError, match="reduce_max"):
        backward(g)


def test_cli_train_compares_with_pytorch(capsys):
    assert main(["run", "tiny", "--train", "--steps", "3", "--compare", "-q"]) == 0
    out = capsys.readouterr().out
    assert "step    3  loss" in out and ": ok" in out


def test_cli_train_refuses_bad_options(capsys):
    assert main(["run", "tiny", "--lr", "0.1"]) == 2
    assert main(["run", "tiny", "--train", "--steps", "0"]) == 2
    assert "--steps" in capsys.readouterr().err


def lora_graph(graph, rank=4, targets="c_attn+mlp.c_fc"):
    return run_passes(graph, f"canonicalize,lora{{rank={rank},alpha=8.0,targets={targets}}},autodiff{{wrt=lora}}").graph


def test_lora_gradients_and_step_equal_plain_torch_lora():
    from waferscale.runtime.torch_train import add_lora

    graph, module, weights = fresh("tiny")
    g = lora_graph(graph)
    adapters = T.lora_weights(g, seed=0)
    adapters = {n: a + 0.05 for n, a in adapters.items()}  # B non-zero, so that A's gradient is too
    tok = tokens(512, seed=2)
    loss, *grads = run(g, {"input_ids": tok[:, :-1], "labels": tok[:, 1:]}, {**weights, **adapters})
    trained = [p.name for p in g.params if p.name.startswith("lora.")]
    assert len(grads) == len(trained) == 8  # A and B on c_attn and c_fc of two layers: no frozen weight's
    params = add_lora(module, adapters, 8.0 / 4)
    ref = torch_loss(module, tok)
    ref.backward()
    assert abs(float(loss) - ref.item()) <= TOL * ref.item()
    by_name = dict(zip([n for n in adapters if n.startswith("lora.A.")], params[0::2]))
    by_name |= dict(zip([n for n in adapters if n.startswith("lora.B.")], params[1::2]))
    for name, d in zip(trained, grads):
        assert rel(d, by_name[name].grad.numpy()) <= TOL, name
    # one AdamW step: the adapters move as torch's, every base weight stays
    step = run_passes(g, "adamw").graph
    _, state = T.train(step, {**weights, **adapters}, iter([(tok[:, :-1], tok[:, 1:])]), 1)
    _, module2, _ = fresh("tiny")
    params2 = add_lora(module2, adapters, 8.0 / 4)
    cfg = AdamWConfig()
    torch_train(module2, iter([(tok[:, :-1], tok[:, 1:])]), 1, cfg, params2)
    for name, p in zip([n for n in adapters if n.startswith("lora.A.")], params2[0::2]):
        w = p.detach().numpy()
        assert (np.abs(state[name] - w) <= first_step_tolerance(w, p.grad.numpy(), cfg)).all(), name
    for n, w in weights.items():
        assert np.array_equal(state[n], w)
    assert not any(p.name.startswith("adam.m.transformer") for p in step.params)  # state for the adapters only


@pytest.mark.parametrize("tokenizer", ["bytes", "bpe"])
def test_cli_train_on_a_text_file(tmp_path, capsys, tokenizer):
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    assert main(["run", "tiny", "--train", "--steps", "2", "--data", str(text), "--tokenizer", tokenizer,
                 "--compare", "-q"]) == 0
    out = capsys.readouterr().out
    assert ("as bytes" if tokenizer == "bytes" else "byte-level BPE of 512 tokens") in out and ": ok" in out
    tokens = T.file_stream(str(text), 512, tokenizer)
    assert tokens.max() < 512 and (tokenizer == "bpe") == (len(tokens) < len(text.read_bytes()))
