"""gpt-oss (issue 30): attention sinks, sliding-window layers alternating with full ones, experts with
biases and the clamped SwiGLU, by config on the meta device; the interpreter matches transformers on
a tiny config, forward and every gradient; the op rules; a training step on a mesh; gpt-oss-120b's
zoo shapes are its published config's. Generation (issue 30's follow-up): greedy tokens through the KV-cache
graphs equal transformers' generate; the decode step on a mesh reads a sliding layer's window."""

from dataclasses import replace

import numpy as np
import pytest
import torch

import waferscale
from waferscale.backends.kernels.sinks import CachedSinkAttention, SinkAttention
from waferscale.frontend.lm import trace_lm
from waferscale.frontend.zoo import ZOO
from waferscale.generate import step_graphs
from waferscale.ir import registry, verify
from waferscale.ir.graph import make_attrs
from waferscale.ir.types import TensorType
from waferscale.passes.autodiff import backward, next_token_loss
from waferscale.runtime.generate import greedy
from waferscale.runtime.interpreter import run


def tiny_config(**kw):
    from transformers import GptOssConfig

    return GptOssConfig(**{"vocab_size": 128, "hidden_size": 32, "intermediate_size": 24, "num_hidden_layers": 2,
                           "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "num_local_experts": 4,
                           "num_experts_per_tok": 2, "sliding_window": 4, "max_position_embeddings": 64,
                           "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}} | kw)


def _weights(module):
    return {n.removeprefix("model."): p.detach().numpy().copy() for n, p in module.named_parameters()}


def _traced():
    t = trace_lm(tiny_config(), batch=2, seq=12, dtype="f32", weights="random", seed=0)
    with torch.no_grad():  # random sinks and biases (they start at zero or empty), gate/up large enough to clamp
        gen = torch.Generator().manual_seed(1)
        for n, p in t.module.named_parameters():
            if "sinks" in n or "bias" in n:
                p.copy_(torch.randn(p.shape, generator=gen))
            if n.endswith("experts.gate_up_proj"):
                p.mul_(40.0)
    return t


def test_gpt_oss_matches_transformers():
    t = _traced()
    kinds = t.graph.op_counts()
    assert kinds["sink_attention"] == 2 and kinds["moe_linear"] == 4 and kinds["moe_combine"] == 2
    # sliding-window layers alternate with full ones: layer 0 slides over 4 positions, layer 1 reads all
    assert [op.attr["window"] for op in t.graph.ops if op.kind == "sink_attention"] == [4, 0]
    ids = np.random.default_rng(0).integers(0, 128, (2, 12))  # 12 positions: past the window of 4
    ours = run(t.graph, {t.graph.inputs[0].name: ids}, _weights(t.module))[0]
    with torch.no_grad():
        ref = t.module(torch.tensor(ids)).numpy()
        experts = [m for m in t.module.modules() if type(m).__name__ == "GptOssExperts"]
        for m in experts:  # the clamp matters here: without it the logits differ
            m.limit = 1e9
        unclamped = t.module(torch.tensor(ids)).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=1e-4)
    assert np.abs(unclamped - ref).max() > 1e-3


def test_gpt_oss_gradients_match_autograd():
    """Every parameter's gradient (sinks, biases, router, experts through the clamp) against autograd."""
    t = _traced()
    g = verify(backward(next_token_loss(t.graph)))
    assert {"sink_attention_grad", "sink_attention_grad_sinks", "moe_linear_grad_w", "moe_segment_sum"} <= set(
        g.op_counts())
    tok = np.random.default_rng(1).integers(0, 128, (2, 13))
    loss, *grads = run(g, {t.graph.inputs[0].name: tok[:, :-1], "labels": tok[:, 1:]}, _weights(t.module))
    logits = t.module(torch.from_numpy(tok[:, :-1]))
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                            torch.from_numpy(tok[:, 1:]).reshape(-1))
    ref.backward()
    assert abs(float(loss) - ref.item()) <= 1e-4 * ref.item()
    by_name = {n.removeprefix("model."): p.grad.numpy() for n, p in t.module.named_parameters()}
    errs = {p.name: float(np.abs(d - by_name[p.name]).max() / np.abs(by_name[p.name]).max())
            for p, d in zip(g.params, grads)}
    assert len(errs) == len(by_name) and max(errs.values()) <= 1e-4, errs
    assert any(n.endswith("sinks") for n in errs) and any(n.endswith("router.bias") for n in errs)


def test_sink_attention_rules():
    rng = np.random.default_rng(0)
    q, k, v = rng.normal(size=(1, 4, 6, 8)), rng.normal(size=(1, 2, 6, 8)), np.eye(6)[None, None].repeat(2, 1)
    sinks = np.array([-30.0, 0.0, 2.0, 0.0])
    out = registry.evaluate("sink_attention", [q, k, v, sinks], {"window": 0})
    # with v the identity, out holds each query's weights over the keys: causal, summing to 1 - p(sink)
    assert np.allclose(np.triu(out[0, 0], 1), 0)
    assert np.allclose(out[0, 0].sum(-1), 1.0, atol=1e-9)  # a sink of -30 takes nothing
    assert (out[0, 2].sum(-1) < out[0, 1].sum(-1)).all() and (out[0, 1].sum(-1) < 1).all()
    win = registry.evaluate("sink_attention", [q, k, v, sinks], {"window": 2})
    assert np.allclose(np.tril(win[0, 3], -2), 0) and not np.allclose(np.tril(out[0, 3], -2), 0)
    ins = [TensorType((1, 4, 64, 8), "f32"), TensorType((1, 2, 64, 8), "f32"), TensorType((1, 2, 64, 8), "f32"),
           TensorType((4,), "f32")]
    out_t = registry.infer_type("sink_attention", ins, {})
    assert out_t.shape == (1, 4, 64, 8)
    windowed, full = (registry.flops("sink_attention", ins, out_t, a) for a in ({"window": 8}, {}))
    assert windowed < full
    with pytest.raises(ValueError, match="one per query head"):
        registry.infer_type("sink_attention", ins[:3] + [TensorType((2,), "f32")], {})


def test_gpt_oss_120b_is_its_published_config():
    from transformers import AutoModelForCausalLM

    z = ZOO["gpt-oss-120b"]
    cfg = z.config()
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads,
            cfg.head_dim) == (36, 2880, 64, 8, 64)
    assert (cfg.num_local_experts, cfg.num_experts_per_tok, cfg.intermediate_size, cfg.vocab_size) == (128, 4, 2880,
                                                                                                     201088)
    assert cfg.sliding_window == 128 and cfg.swiglu_limit == 7.0 and cfg.layer_types[:2] == [
        "sliding_attention", "full_attention"]
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    assert sum(p.numel() for p in model.parameters()) == z.param_count()
    assert round(z.param_count() / 1e9, 1) == 116.8  # the model card's "117B parameters"


def test_tiny_gpt_oss_compiles_and_trains_on_a_mesh():
    c = waferscale.compile("tiny-gpt-oss", seq=16, target="mesh:48x48")
    windows = sorted(k.model.window for k in c.program.kernels if isinstance(k.model, SinkAttention))
    assert windows == [0, 8]
    assert c.report["model"]["params"] == c.report["model"]["torch_params"] == ZOO["tiny-gpt-oss"].param_count()
    ids = np.random.default_rng(0).integers(0, 512, (1, 16))
    ref = run(c.graph, {c.graph.inputs[0].name: ids}, c.traced.weights)[0] if c.traced.weights else None
    if ref is not None:  # the placed numerics are the interpreter's
        np.testing.assert_allclose(np.asarray(c.run(ids)[0], dtype=np.float32), ref.astype(np.float32), atol=2e-2)
    step = waferscale.compile("tiny-gpt-oss", mode="train", seq=16, target="mesh:48x48")
    train = step.report["train"]
    assert train["step_seconds"] > 0 and train["flops_per_token_backward"] > train["flops_per_token_forward"]
    # the closed form counts the active experts' grouped GEMMs (k of E) as 6 FLOPs per weight
    assert 0.8 < train["flops_per_token_closed_form"] / train["flops_per_token"] < 1.2
    # the sliding layer's forward and backward each read a window of 8 keys
    assert sorted(type(k.model).__name__ for k in step.program.kernels if getattr(k.model, "window", 0) == 8) == [
        "SinkAttention", "SinkAttentionGrad"]


def _random_step_graphs(prompt_len, new_tokens, batch):
    """The prefill and decode-step graphs of the tiny config, the HF model's weights drawn anew (sinks and
    biases too, which start at zero) and large enough that greedy tokens vary."""
    st = step_graphs(tiny_config(), prompt_len=prompt_len, new_tokens=new_tokens, batch=batch, dtype="f32",
                     weights="random", seed=0)
    hf = st.decode.module.model
    with torch.no_grad():
        gen = torch.Generator().manual_seed(1)
        for n, p in hf.named_parameters():
            if "sinks" in n or "bias" in n:
                p.copy_(torch.randn(p.shape, generator=gen))
            elif p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) / p.shape[-2 if "experts" in n else -1] ** 0.5)
    return st, hf, _weights(st.decode.module)


def test_gpt_oss_generates_as_transformers():
    """Greedy tokens through the prefill and decode-step graphs (cached_sink_attention over the KV cache)
    equal transformers' generate with its own cache, past the sliding window of 4; every step's logits
    within 1e-4; without the window on the decode step they differ."""
    st, hf, w = _random_step_graphs(10, 6, 2)
    g = st.decode_state.graph
    assert [op.attr["window"] for op in g.ops if op.kind == "cached_sink_attention"] == [4, 0]
    assert "sink_attention" not in g.op_counts() and g.op_counts()["cache_update"] == 4
    ids = np.random.default_rng(0).integers(0, 128, (2, 10))
    tokens, logits = greedy(st.prefill_state.graph, g, w, ids, 6)
    with torch.no_grad():
        ref = hf.generate(torch.tensor(ids), attention_mask=torch.ones(2, 10, dtype=torch.long), max_new_tokens=6,
                          min_new_tokens=6, do_sample=False, num_beams=1, output_logits=True,
                          return_dict_in_generate=True, pad_token_id=0)
    assert (tokens == ref.sequences[:, 10:].numpy()).all() and len(set(tokens.ravel().tolist())) > 2
    for ours, theirs in zip(logits, ref.logits):
        np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-4, rtol=1e-4)
    nowin = replace(g, ops=[replace(op, attrs=make_attrs({**op.attr, "window": 0}))
                            if op.kind == "cached_sink_attention" else op for op in g.ops])
    other = greedy(st.prefill_state.graph, nowin, w, ids, 6)[1]
    assert max(float(np.abs(a - b).max()) for a, b in zip(logits[1:], other[1:])) > 1e-2


def test_cached_sink_attention_rules():
    """At position p over a cache it is sink_attention's row p; its FLOPs and bytes count the window's rows."""
    rng = np.random.default_rng(0)
    q, k, v = rng.normal(size=(2, 4, 9, 8)), rng.normal(size=(2, 2, 9, 8)), rng.normal(size=(2, 2, 9, 8))
    sinks = rng.normal(size=4)
    for window in (0, 3):
        full = registry.evaluate("sink_attention", [q, k, v, sinks], {"window": window})
        cache = np.zeros((2, 2, 12, 8))  # a capacity of 12: rows 9.. unwritten, never read
        ck, cv = cache.copy(), cache.copy()
        ck[:, :, :9], cv[:, :, :9] = k, v
        pos = np.full((2, 1), 7)
        step = registry.evaluate("cached_sink_attention", [q[:, :, 7:8], ck, cv, pos, sinks], {"window": window})
        np.testing.assert_allclose(step[:, :, 0], full[:, :, 7], atol=1e-12)
    ins = [TensorType((1, 4, 1, 8), "f32"), TensorType((1, 2, 64, 8), "f32"), TensorType((1, 2, 64, 8), "f32"),
           TensorType((1, 1), "i64"), TensorType((4,), "f32")]
    out = registry.infer_type("cached_sink_attention", ins, {})
    assert out.shape == (1, 4, 1, 8)
    (wf, wb), (ff, fb) = ((registry.flops("cached_sink_attention", ins, out, a),
                           registry.get("cached_sink_attention").bytes(ins, out, a)[0]) for a in ({"window": 8}, {}))
    assert 7 * wf < ff and wb < fb / 4
    with pytest.raises(ValueError, match="one per query head"):
        registry.infer_type("cached_sink_attention", ins[:4] + [TensorType((2,), "f32")], {})


def test_tiny_gpt_oss_generates_on_a_mesh(tmp_path, capsys):
    """The decode step placed and simulated: the sliding layer's kernel holds and reads its window's rows
    (a ring of 8), so its cost stops growing with the position; the full layer's grows. An int8 cache
    is refused in one line."""
    from waferscale.cli import main

    c = waferscale.compile("tiny-gpt-oss", mode="generate", target="mesh:48x48", prompt_len=12, new_tokens=16)
    attn = {k.model.window: k.model for k in c.program.kernels if isinstance(k.model, CachedSinkAttention)}
    assert sorted(attn) == [0, 8] and attn[8].key_rows == 8 and attn[0].key_rows == 28
    at = {w: [replace(m, position=p).work(0, 1).flops for p in (12, 26)] for w, m in attn.items()}
    assert at[8][0] == at[8][1] and at[0][1] > at[0][0]
    g = c.report["generate"]
    # k and v, f16, 32 wide (key heads x d_head): the graph state is 28 rows a layer; the sliding layer holds 8
    assert g["kv_cache_bytes"] == 2 * (28 + 8) * 32 * 2 and g["decode_tokens_per_second"] > 0
    assert g["decode_seconds_last"] >= g["decode_roofline_seconds_last"]
    assert main(["compile", "tiny-gpt-oss", "--generate", "--target", "mesh:48x48", "--prompt-len", "4",
                 "--new-tokens", "2", "--kv-dtype", "int8", "-o", str(tmp_path / "g"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "not supported: quantize kv=int8" in err and "cached_sink_attention" in err and "Traceback" not in err
