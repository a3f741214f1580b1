"""torch.export frontend: any nn.Module, folded masks, and clear errors for what it cannot import."""

import numpy as np
import pytest
import torch

from waferscale.errors import UnsupportedError
from waferscale.frontend.importer import MAX_LITERAL_ELEMENTS
from waferscale.frontend.torch_export import trace_module
from waferscale.ir import parse, print_graph, verify
from waferscale.runtime.interpreter import run


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 8)

    def forward(self, x):
        return torch.cumsum(self.fc(x), dim=-1)  # cumsum of a dynamic value: no converter


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = torch.nn.Sequential(torch.nn.Linear(8, 8), Block())

    def forward(self, x):
        return self.inner(x)


def test_unsupported_aten_op_names_the_op_and_the_module_path():
    with pytest.raises(UnsupportedError, match=r"not supported: ATen op aten\.cumsum\.default at inner\.1"):
        trace_module(Net(), (torch.randn(2, 8),), "net")


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.up = torch.nn.Linear(6, 12)
        self.down = torch.nn.Linear(12, 3, bias=False)

    def forward(self, x):
        h = torch.nn.functional.gelu(self.up(x), approximate="tanh")
        return torch.softmax(self.down(h).transpose(0, 1) * 2.0 - 1.0, dim=0)


def test_any_module_with_example_inputs_imports_and_runs():
    torch.manual_seed(0)
    m = Mlp().eval()
    x = torch.randn(5, 6)
    t = trace_module(m, (x,), "mlp")
    verify(t.graph)
    assert t.graph.op_counts()["linear"] == 2 and t.graph.op_counts()["gelu"] == 1
    assert print_graph(parse(print_graph(t.graph))) == print_graph(t.graph)
    (out,) = run(t.graph, {t.graph.inputs[0].name: x.numpy()}, t.weights)
    np.testing.assert_allclose(out, m(x).detach().numpy(), rtol=1e-5, atol=1e-6)


class MaskedAttention(torch.nn.Module):
    def __init__(self, mask):
        super().__init__()
        self.register_buffer("keep", mask, persistent=False)

    def forward(self, q):
        mask = torch.ones_like(self.keep) & self.keep
        return torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=mask)


def test_causal_mask_becomes_an_attribute_and_other_masks_an_operand():
    q = torch.randn(1, 2, 6, 4)
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    t = trace_module(MaskedAttention(causal), (q,), "causal")
    (att,) = [op for op in t.graph.ops if op.kind == "attention"]
    assert att.attr["causal"] is True and len(att.operands) == 3
    banded = causal & ~torch.ones(6, 6, dtype=torch.bool).tril(-2)
    t = trace_module(MaskedAttention(banded), (q,), "banded")
    (att,) = [op for op in t.graph.ops if op.kind == "attention"]
    assert att.attr["causal"] is False and len(att.operands) == 4
    (out,) = run(t.graph, {t.graph.inputs[0].name: q.numpy()}, t.weights or {})
    ref = torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=banded)
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-5, atol=1e-6)


def test_a_large_non_causal_constant_is_refused_clearly():
    n = 128
    assert n * n > MAX_LITERAL_ELEMENTS
    mask = torch.rand(n, n) > 0.5
    mask[:, 0] = True
    with pytest.raises(UnsupportedError, match=r"constant tensor of shape \[128, 128\]"):
        trace_module(MaskedAttention(mask), (torch.randn(1, 1, n, 4),), "big-mask")


def test_f16_trace_keeps_f16_types():
    from .conftest import traced

    t = traced("tiny", seq=8, weights="meta", dtype="f16")
    assert {p.type.dtype for p in t.graph.params} == {"f16"}
    assert t.graph.outputs[0].type.dtype == "f16"


@pytest.mark.parametrize("frontend", ["torch-export", "torch-mlir"])
def test_a_batch_of_1024_full_contexts_compiles_without_materializing_the_mask(frontend):
    # the causal mask of 1,024 x 2,048 x 2,048 would be 4.3e9 elements; it is folded as one copy
    from waferscale.driver import compile_model

    c = compile_model("cerebras-gpt-111m", batch=1024, seq=2048, frontend=frontend)
    assert c.report["model"]["traced_on"] == "meta" and c.state.graph.inputs[0].type.shape == (1024, 2048)
    attention = [op for op in c.state.graph.ops if op.kind == "attention"]
    assert len(attention) == 10 and all(op.attr["causal"] and len(op.operands) == 3 for op in attention)
    assert c.report["pipeline"] == "canonicalize" and c.report["compile"]["peak_rss_bytes"] < 2 * 2**30
