"""Causal LMs beyond GPT-2, by config: a tiny GPT-NeoX, Llama, Mistral, Qwen2, OPT and Phi each
import through torch.export and match PyTorch, canonicalize names their RMSNorm, rotary embedding,
SiLU and grouped-query attention, and each compiles on the meta device onto a wafer, where the
placed numbers match PyTorch too. An unsupported op is one line naming the op and the module."""

import json

import numpy as np
import pytest
import torch

import waferscale
from waferscale.cli import main
from waferscale.frontend.lm import CausalLM
from waferscale.frontend.torch_export import trace_module
from waferscale.runtime.interpreter import run

SMALL = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             max_position_embeddings=32)
# family: (config keys, the op kinds canonicalize leaves that say what the family is, report facts)
FAMILIES = {
    "llama": ({"num_key_value_heads": 2}, {"rmsnorm", "rotary", "silu"},
              {"norm": "rmsnorm", "positions": "rotary", "kv_heads": 2, "activation": "silu"}),
    "mistral": ({"num_key_value_heads": 2}, {"rmsnorm", "rotary", "silu"},
                {"norm": "rmsnorm", "positions": "rotary", "kv_heads": 2}),
    "qwen2": ({"num_key_value_heads": 2}, {"rmsnorm", "rotary", "silu"},
              {"norm": "rmsnorm", "positions": "rotary", "kv_heads": 2}),
    "gpt_neox": ({"rotary_pct": 0.5}, {"layernorm", "rotary", "gelu"},
                 {"norm": "layernorm", "positions": "rotary", "kv_heads": 4, "rotary_fraction": 0.5}),
    "opt": ({"ffn_dim": 64, "word_embed_proj_dim": 32}, {"layernorm", "relu"},
            {"norm": "layernorm", "positions": "learned", "activation": "relu"}),
    "phi": ({"partial_rotary_factor": 0.5}, {"layernorm", "rotary", "gelu"},
            {"norm": "layernorm", "positions": "rotary", "rotary_fraction": 0.5}),
}


def config(family):
    from transformers import AutoConfig

    keys, _, _ = FAMILIES[family]
    small = {k: v for k, v in SMALL.items() if not (family == "opt" and k == "intermediate_size")}
    return AutoConfig.for_model(family, **small, **keys)


def _err(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_tiny_config_of_each_family_imports_and_matches_pytorch(family):
    c = waferscale.compile(config(family), batch=2, seq=8, dtype="f32", weights="random", seed=1)
    m = c.report["model"]
    assert m["family"] == family and m["traced_on"] == "cpu"
    assert (m["layers"], m["d_model"], m["heads"], m["d_ffn"], m["vocab"], m["context"]) == (2, 32, 4, 64, 64, 32)
    assert FAMILIES[family][2].items() <= m.items()
    assert m["params"] == m["torch_params"]
    assert FAMILIES[family][1] <= set(c.graph.op_counts())
    ids = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = c.traced.module(ids).numpy()
    (imported,) = run(c.traced.graph, {c.traced.graph.inputs[0].name: ids.numpy()}, c.traced.weights)
    assert _err(imported, want) <= 1e-5  # the graph as imported
    assert _err(c.run(ids)[0], want) <= 1e-5  # after canonicalize's rmsnorm, rotary, silu, grouped attention


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_compiles_on_the_meta_device_onto_a_wafer(family):
    target = "wse3" if family in ("llama", "gpt_neox") else "wse2"
    c = waferscale.compile(config(family), seq=16, weights="meta", target=target)
    r = c.report
    assert r["model"]["traced_on"] == "meta" and c.traced.weights is None
    assert r["target"] == target and r["mode"] == "layer-pipelined"
    assert r["time"]["cycles"] >= r["time"]["roofline_cycles"] > 0
    computed = {kind for k in c.placement["kernels"] for kind in k["computes"].split("+")}
    assert FAMILIES[family][1] | {"attention", "linear", "embedding"} <= computed  # each a kernel, or fused in one
    assert {"cos", "sin", "neg", "concat", "pow", "rsqrt"}.isdisjoint(computed)


@pytest.mark.parametrize("family", ["llama", "gpt_neox"])
def test_the_placed_numbers_of_rotary_rmsnorm_and_grouped_attention_match_pytorch(family):
    c = waferscale.compile(config(family), seq=8, dtype="f32", weights="random", target="mesh:16x16")
    ids = torch.randint(0, 64, (1, 8), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = c.traced.module(ids).numpy()
    assert _err(c.run(ids)[0], want) <= 1e-5


def test_a_config_folder_compiles_from_the_command_line(tmp_path, capsys):
    config("llama").save_pretrained(tmp_path / "tiny-llama-cfg")
    out = tmp_path / "out"
    assert main(["compile", str(tmp_path / "tiny-llama-cfg"), "--seq", "16", "--target", "wse3", "-q",
                 "-o", str(out)]) == 0
    r = json.loads((out / "report.json").read_text())
    assert r["model"]["family"] == "llama" and r["model"]["kv_heads"] == 2 and r["model"]["seq"] == 16
    assert "wse3 (layer-pipelined)" in capsys.readouterr().out


def test_an_unsupported_op_is_one_line_naming_the_op_and_the_module(tmp_path, capsys):
    from transformers import GPTJConfig

    GPTJConfig(vocab_size=64, n_embd=32, n_layer=1, n_head=4, n_positions=32, rotary_dim=4).save_pretrained(tmp_path)
    capsys.readouterr()  # transformers warns here, in the test's own config (token ids outside its vocabulary)
    assert main(["compile", str(tmp_path), "--seq", "8", "-q", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "not supported: ATen op aten.stack.default at transformer.h.0.attn" in err


def test_a_model_type_that_is_not_a_causal_lm_is_refused_in_one_line(tmp_path, capsys):
    from transformers import ViTConfig

    ViTConfig().save_pretrained(tmp_path)
    assert main(["compile", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model type 'vit'" in err and "not a causal LM" in err


@pytest.mark.parametrize("n,chunks", [(10, 3), (8, 4), (3, 5), (7, 1)])
def test_chunk_cuts_as_torch_does(n, chunks):
    class Cut(torch.nn.Module):
        def forward(self, x):
            return tuple(p * (i + 1) for i, p in enumerate(torch.chunk(x, chunks, dim=-1)))

    x = torch.randn(2, n)
    t = trace_module(Cut(), (x,), "cut")
    got = run(t.graph, {t.graph.inputs[0].name: x.numpy()}, t.weights)
    want = Cut()(x)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert np.allclose(g, w.numpy())


def test_a_rotary_table_too_large_for_a_literal_is_computed_in_the_graph():
    # seq x d_head = 256 x 32 > 4,096 elements: the cos and sin tables are ops on the positions, read
    # by the rotary kernels, which compute them on their own cores (no kernel of their own)
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    m = LlamaForCausalLM(LlamaConfig(**{**SMALL, "max_position_embeddings": 256, "hidden_size": 128}))
    ids = torch.randint(0, 64, (1, 256))
    t = trace_module(CausalLM(m), (ids,), "lm", strip_prefix="model.")
    assert {"cos", "sin"} <= set(t.graph.op_counts())
    with torch.no_grad():
        want = CausalLM(m)(ids).numpy()
    assert _err(run(t.graph, {t.graph.inputs[0].name: ids.numpy()}, t.weights)[0], want) <= 1e-5
    c = waferscale.compile(LlamaConfig(**{**SMALL, "max_position_embeddings": 256, "hidden_size": 128}),
                           weights="meta", target="mesh:32x32")
    assert {k["computes"] for k in c.placement["kernels"]}.isdisjoint({"cos", "sin"})


def test_a_llama_compile_is_deterministic(tmp_path):
    for d in ("a", "b"):
        assert main(["compile", "tiny-llama", "--seq", "32", "--target", "wse3", "-q", "-o", str(tmp_path / d)]) == 0
    a, b = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("a", "b"))
    a.pop("compile"), b.pop("compile"), a.pop("host"), b.pop("host")
    assert a == b
    for f in ("model.ir", "placement.json", "trace.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
