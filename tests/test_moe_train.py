"""Training a mixture-of-experts model (issue 30, item 1): the backward rules of the router's top-k,
the dispatch, the experts and the combine give every parameter's gradient as PyTorch autograd does
on tiny Mixtral-, Qwen-MoE- and OLMoE-like configs (the router's weight included: its gradient reaches it
through the combine weights); a training step compiles, places and simulates, and its time
includes the experts' backward."""

import numpy as np
import pytest
import torch

import waferscale
from waferscale.backends.kernels.moe_grad import MoeAccumulate, MoeLinear
from waferscale.frontend.lm import trace_lm
from waferscale.ir import registry, verify
from waferscale.passes.autodiff import backward, next_token_loss
from waferscale.runtime.interpreter import run

from .test_moe import SMALL, configs

TOL = 1e-4


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("family", ["mixtral", "qwen2_moe", "qwen3_moe", "olmoe"])
def test_moe_gradients_match_autograd(family):
    t = trace_lm(configs()[family], batch=2, seq=8, dtype="f32", weights="random", seed=0)
    g = verify(backward(next_token_loss(t.graph)))
    kinds = g.op_counts()
    assert kinds["moe_linear_grad_w"] == 4 and kinds["topk_grad"] == 2 and kinds["moe_combine_grad_w"] == 2
    tok = np.random.default_rng(1).integers(0, 128, (2, 9))
    loss, *grads = run(g, {t.graph.inputs[0].name: tok[:, :-1], "labels": tok[:, 1:]}, t.weights)
    logits = t.module(torch.from_numpy(tok[:, :-1]))
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                            torch.from_numpy(tok[:, 1:]).reshape(-1))
    ref.backward()
    assert abs(float(loss) - ref.item()) <= TOL * ref.item()
    by_name = {n.removeprefix("model."): p.grad.numpy() for n, p in t.module.named_parameters()}
    errs = {p.name: rel(d, by_name[p.name]) for p, d in zip(g.params, grads)}
    assert len(errs) == len(by_name) and max(errs.values()) <= TOL, errs
    # the router learns: its gradient is not zero (it flows through the combine weights)
    assert all(np.abs(d).max() > 0 for p, d in zip(g.params, grads) if p.name.endswith("mlp.gate.weight"))


def test_grouped_ops_backward_by_finite_differences():
    """moe_linear with a bias, through its backward rule, against central differences (f64)."""
    rng = np.random.default_rng(0)
    t, k, e, kin, n = 3, 2, 4, 5, 6
    idx = np.stack([rng.permutation(e)[:k] for _ in range(t)]).astype(np.int64)
    x, w, b = rng.normal(size=(t * k, kin)), rng.normal(size=(e, n, kin)), rng.normal(size=(e, n))
    dy = rng.normal(size=(t * k, n))

    def f(w_, b_):
        return float((registry.evaluate("moe_linear", [x, idx, w_, b_], {"transpose_w": True}) * dy).sum())

    dw = registry.evaluate("moe_linear_grad_w", [x, dy, idx], {"experts": e, "transpose_w": True})
    db = registry.evaluate("moe_segment_sum", [dy, idx], {"experts": e})
    eps = 1e-6
    for (i, j, c) in [(idx[0, 0], 1, 2), (idx[2, 1], 0, 4)]:
        wp, wm = w.copy(), w.copy()
        wp[i, j, c] += eps
        wm[i, j, c] -= eps
        assert dw[i, j, c] == pytest.approx((f(wp, b) - f(wm, b)) / (2 * eps), rel=1e-6)
    bp, bm = b.copy(), b.copy()
    bp[idx[1, 0], 3] += eps
    bm[idx[1, 0], 3] -= eps
    assert db[idx[1, 0], 3] == pytest.approx((f(w, bp) - f(w, bm)) / (2 * eps), rel=1e-6)
    unused = sorted(set(range(e)) - set(idx.reshape(-1).tolist()))
    assert all(not dw[u].any() for u in unused)  # an expert no row reached gets no gradient


def _experts_backward_busy(c) -> float:
    sim = c.state.sim
    return sum(sim.kernels[k.id].busy for k in c.program.kernels if isinstance(k.model, (MoeLinear, MoeAccumulate)))


def test_moe_training_step_compiles_places_and_simulates(tmp_path):
    from transformers import Qwen3MoeConfig

    def cfg(width):  # --train takes a config file (the loss needs the model's logits)
        Qwen3MoeConfig(**SMALL, intermediate_size=64, moe_intermediate_size=width, head_dim=8, num_experts=4,
                       num_experts_per_tok=2).save_pretrained(tmp_path / str(width))
        return str(tmp_path / str(width))

    narrow = waferscale.compile(cfg(16), mode="train", seq=8, target="mesh:48x48", execution="streaming")
    wide = waferscale.compile(cfg(256), mode="train", seq=8, target="mesh:48x48", execution="streaming")
    for c in (narrow, wide):
        kernels = [k for k in c.program.kernels if isinstance(k.model, (MoeLinear, MoeAccumulate))]
        # per layer: gate/up recomputed, down and gate/up the other way (3 moe_linear), two weight gradients
        assert len(kernels) == 2 * 5 and all(k.name.startswith("backward:") for k in kernels)
        layers = [x for x in c.report["train"]["layers"] if x["direction"] == "backward" and "layers." in x["name"]]
        assert len(layers) == 2
        busy = _experts_backward_busy(c)
        assert busy > 0 and c.report["train"]["step_cycles"] >= max(
            c.state.sim.kernels[k.id].busy for k in kernels)
    # the experts' backward is in the step's time: wider experts make it, and the step, slower
    assert _experts_backward_busy(wide) > 2 * _experts_backward_busy(narrow)
    assert wide.report["train"]["step_cycles"] > narrow.report["train"]["step_cycles"]
    # model FLOPs: the backward is about twice the forward (the gate/up recomputation left out)
    t = wide.report["train"]
    assert 1.7 < t["flops_per_token_backward"] / t["flops_per_token_forward"] < 2.3


def test_moe_training_layer_pipelined_on_the_cli(tmp_path):
    from waferscale.cli import main

    assert main(["compile", "tiny-moe", "--train", "--target", "mesh:48x48", "--seq", "8", "-o",
                 str(tmp_path), "-q"]) == 0
    import json

    r = json.loads((tmp_path / "report.json").read_text())["train"]
    assert r["mode"] == "layer-pipelined" and r["step_seconds"] > 0 and r["flops_per_token_backward"] > 0


@pytest.mark.parametrize("name", ["tiny-moe", "tiny-gpt-oss"])
def test_wafer_run_trains_a_moe_as_a_pytorch_loop_does(name, capsys):
    from waferscale.cli import main

    assert main(["run", name, "--train", "--steps", "2", "--compare", "-q"]) == 0
    out = capsys.readouterr().out
    assert "PyTorch loop" in out and out.rstrip().endswith("ok")
