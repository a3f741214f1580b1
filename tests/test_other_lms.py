"""Causal LMs beyond GPT-2 import through torch.export and match PyTorch: Llama (RMSNorm, rotary
embeddings, grouped-query attention, SiLU) and GPT-NeoX (partial rotary, fused QKV cut by
chunk). The CLI's model names and configs are still GPT-2-style only (issue 16)."""

import numpy as np
import pytest
import torch

from waferscale.frontend.lm import CausalLM
from waferscale.frontend.torch_export import trace_module
from waferscale.runtime.interpreter import run


def llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32))


def neox():
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    return GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                            num_attention_heads=4, max_position_embeddings=32, rotary_pct=0.5))


@pytest.mark.parametrize("build,kinds", [(llama, {"sigmoid", "mul", "rsqrt"}), (neox, {"slice"})])
def test_a_llama_and_a_gpt_neox_import_and_match_pytorch(build, kinds):
    torch.manual_seed(0)
    m = build().eval()
    ids = torch.randint(0, 64, (2, 8))
    t = trace_module(CausalLM(m), (ids,), "lm", strip_prefix="model.")
    assert kinds <= set(t.graph.op_counts())
    (y,) = run(t.graph, {t.graph.inputs[0].name: ids.numpy()}, t.weights)
    with torch.no_grad():
        ref = CausalLM(m)(ids).numpy()
    assert np.abs(y - ref).max() / np.abs(ref).max() <= 1e-5


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
