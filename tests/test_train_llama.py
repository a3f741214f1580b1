"""Training the Llama family: the backward rule of each op its import produces (RMSNorm, rotary
embeddings, SiLU, grouped-query attention) against torch.autograd in float64, and tiny-llama's
gradients and training loop against PyTorch's."""

import copy
import functools

import numpy as np
import pytest
import torch

from waferscale.cli import main
from waferscale.driver import run_passes
from waferscale.frontend.lm import trace_lm
from waferscale.ir import GraphBuilder, TensorType, verify
from waferscale.passes.adamw import AdamWConfig
from waferscale.passes.autodiff import backward, next_token_loss
from waferscale.runtime import train as T
from waferscale.runtime.interpreter import run
from waferscale.runtime.torch_train import torch_train

RULE_TOL = 1e-5  # per rule, float64: max |ours - torch| / max |torch|; float64 leaves only rounding (~1e-15)


def _rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def _torch_attention(q, k, v, causal):
    g = q.shape[-3] // k.shape[-3]
    k, v = k.repeat_interleave(g, dim=-3), v.repeat_interleave(g, dim=-3)
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)


# (op kind, attrs, parameter shapes, torch function of the parameters): each parameter differentiated
RULES = {
    "rmsnorm": ("rmsnorm", {"eps": 1e-5}, [(2, 3, 8), (8,)],
                lambda x, w: x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-5) * w),
    "rmsnorm-no-scale": ("rmsnorm", {"eps": 1e-6}, [(5, 6)],
                         lambda x: x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-6)),
    # the tables as parameters, broadcast over batch and heads, their halves unequal: the general rule
    "rotary": ("rotary", {}, [(2, 3, 5, 8), (1, 1, 5, 8), (1, 1, 5, 8)],
               lambda x, c, s: x * c + _rotate_half(x) * s),
    "silu": ("silu", {}, [(4, 7)], torch.nn.functional.silu),
    "cos": ("cos", {}, [(4, 7)], torch.cos),
    "sin": ("sin", {}, [(4, 7)], torch.sin),
    "gqa-causal": ("attention", {"causal": True}, [(2, 4, 6, 8), (2, 2, 6, 8), (2, 2, 6, 8)],
                   lambda q, k, v: _torch_attention(q, k, v, True)),
    "gqa-one-kv-head": ("attention", {"causal": False}, [(1, 6, 5, 4), (1, 1, 5, 4), (1, 1, 5, 4)],
                        lambda q, k, v: _torch_attention(q, k, v, False)),
    "mha-causal": ("attention", {"causal": True}, [(2, 3, 6, 8)] * 3,
                   lambda q, k, v: _torch_attention(q, k, v, True)),
}


@pytest.mark.parametrize("case", sorted(RULES))
def test_backward_rule_matches_autograd(case):
    kind, attrs, shapes, fn = RULES[case]
    rng = np.random.default_rng(len(case))
    b = GraphBuilder(case)
    params = [b.param(f"p{i}", TensorType(s, "f64")) for i, s in enumerate(shapes)]
    y = b.op(kind, *params, **attrs)
    cot = b.input("cot", y.type)  # a random cotangent: loss = sum(y * cot), so d(loss)/dy = cot
    loss = b.op("reduce_sum", b.op("mul", y, cot), axes=tuple(range(y.type.rank)))
    g = verify(backward(b.output(loss)))
    values = [rng.standard_normal(s) for s in shapes]
    c = rng.standard_normal(y.type.shape)
    _, *grads = run(g, {"cot": c}, {f"p{i}": v for i, v in enumerate(values)})
    ts = [torch.tensor(v, requires_grad=True) for v in values]
    (fn(*ts) * torch.from_numpy(c)).sum().backward()
    for i, (d, t) in enumerate(zip(grads, ts)):
        err = np.abs(d - t.grad.numpy()).max() / np.abs(t.grad.numpy()).max()
        assert err <= RULE_TOL, (case, i, err)
    if kind == "attention" and shapes[1] != shapes[0]:
        assert "attention_grad" in g.op_counts()


def test_rotary_grad_of_hf_tables_is_the_rotation_back():
    """With equal halves (as transformers builds cos and sin), dx is rotary(dy, cos, -sin)."""
    rng = np.random.default_rng(0)
    dy = rng.standard_normal((3, 8))
    half = rng.standard_normal((3, 4))
    cos, sin = np.concatenate([np.cos(half)] * 2, -1), np.concatenate([np.sin(half)] * 2, -1)
    from waferscale.ir import registry

    assert np.allclose(registry.evaluate("rotary_grad", [dy, cos, sin], {}),
                       registry.evaluate("rotary", [dy, cos, -sin], {}), atol=1e-14)


# -- the whole model

B, S = 2, 16


@functools.cache
def _traced(dtype):
    return trace_lm("tiny-llama", batch=B, seq=S, dtype=dtype, weights="random", seed=0)


def fresh(dtype="f32"):
    t = _traced(dtype)
    module = copy.deepcopy(t.module)
    weights = {n.removeprefix("model."): p.detach().numpy().copy() for n, p in module.named_parameters()}
    return t.graph, module, weights


def test_tiny_llama_gradients_equal_autograd():
    graph, module, weights = fresh()
    g = verify(backward(next_token_loss(run_passes(graph, "canonicalize").graph)))
    assert {"rmsnorm_grad", "rotary_grad", "silu_grad", "attention_grad"} <= set(g.op_counts())
    tok = np.random.default_rng(0).integers(0, 512, (B, S + 1))
    loss, *grads = run(g, {"input_ids": tok[:, :-1], "labels": tok[:, 1:]}, weights)
    logits = module(torch.from_numpy(tok[:, :-1]))
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                            torch.from_numpy(tok[:, 1:]).reshape(-1))
    ref.backward()
    assert abs(float(loss) - ref.item()) <= 1e-6 * ref.item()
    by_name = {n.removeprefix("model."): p.grad.numpy() for n, p in module.named_parameters()}
    errs = {p.name: float(np.abs(d - by_name[p.name]).max() / np.abs(by_name[p.name]).max())
            for p, d in zip(g.params, grads)}
    assert len(errs) == len(by_name) and max(errs.values()) <= 1e-5, errs


def test_tiny_llama_five_steps_equal_the_pytorch_loop():
    graph, module, weights = fresh()
    g = run_passes(graph, "canonicalize,autodiff,adamw{lr=0.003}").graph
    stream = T.random_stream(512, B * (S + 1), seed=0)  # one batch seen every step: the loss must fall
    ours, _ = T.train(g, weights, T.batches(stream, B, S), 5)
    ref = torch_train(module, T.batches(stream, B, S), 5, AdamWConfig(lr=3e-3))
    assert max(abs(a - b) / b for a, b in zip(ours, ref)) <= 1e-6, (ours, ref)
    assert ours[-1] < ours[0] - 0.05


def test_cli_trains_tiny_llama_against_pytorch(capsys):
    assert main(["run", "tiny-llama", "--train", "--steps", "5", "--compare", "--tol", "1e-6", "-q"]) == 0
    out = capsys.readouterr().out
    assert "step    5  loss" in out and ": ok" in out
