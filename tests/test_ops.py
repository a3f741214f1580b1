"""Op rules: type inference errors, FLOP counts, and references against PyTorch."""

import numpy as np
import pytest
import torch

from waferscale.ir import registry
from waferscale.ir.types import TensorType as T


def test_every_op_declares_all_its_rules():
    registry.get("add")  # loads the registry
    for kind, d in registry.OPS.items():
        assert callable(d.infer) and callable(d.reference) and callable(d.flops), kind
        assert d.doc, f"{kind} has no doc"


@pytest.mark.parametrize("kind,ins,attrs,message", [
    ("matmul", [T((2, 3), "f32"), T((4, 5), "f32")], {}, "inner sizes 3 != 4"),
    ("add", [T((2, 3), "f32"), T((4,), "f32")], {}, "do not broadcast"),
    ("reshape", [T((2, 3), "f32")], {"shape": (4,)}, "6 elements.*4 elements"),
    ("transpose", [T((2, 3), "f32")], {"perm": (0, 0)}, "not a permutation"),
    ("layernorm", [T((2, 3), "f32"), T((2,), "f32")], {}, "must have shape \\[3\\]"),
    ("embedding", [T((10, 4), "f32"), T((3,), "f32")], {}, "must be integers"),
    ("attention", [T((1, 4, 8), "f32"), T((1, 5, 8), "f32"), T((1, 6, 8), "f32")], {}, "do not agree"),
    ("concat", [T((2, 3), "f32"), T((3, 3), "f32")], {"axis": 1}, "other dims differ"),
])
def test_shape_rules_reject_bad_operands(kind, ins, attrs, message):
    with pytest.raises(ValueError, match=message):
        registry.infer_type(kind, ins, attrs)


def test_linear_and_attention_flops():
    x, w, b = T((8, 64), "f32"), T((64, 32), "f32"), T((32,), "f32")
    out = registry.infer_type("linear", [x, w, b], {})
    assert registry.flops("linear", [x, w, b], out, {}) == 2 * 8 * 64 * 32 + 8 * 32
    q = T((2, 4, 16, 8), "f32")
    o = registry.infer_type("attention", [q, q, q], {"causal": True})
    assert registry.flops("attention", [q, q, q], o, {"causal": True}) == 2 * 4 * (4 * 16 * 16 * 8 + 6 * 16 * 16)
    # embedding reads the rows it gathers, not the whole table
    tab, ids = T((50000, 16), "f32"), T((4,), "i64")
    e = registry.infer_type("embedding", [tab, ids], {})
    assert registry.bytes_moved("embedding", [tab, ids], e, {}) == (4 * 8 + 4 * 16 * 4, 4 * 16 * 4)


def _t(x):
    return torch.from_numpy(np.asarray(x))


@pytest.mark.parametrize("kind,attrs,torch_fn", [
    ("gelu", {"approximate": "none"}, lambda x: torch.nn.functional.gelu(x)),
    ("gelu", {"approximate": "tanh"}, lambda x: torch.nn.functional.gelu(x, approximate="tanh")),
    ("softmax", {"axis": 1}, lambda x: torch.softmax(x, 1)),
    ("layernorm", {"eps": 1e-5, "axes": 1}, lambda x: torch.nn.functional.layer_norm(x, (x.shape[-1],))),
    ("reduce_mean", {"axes": (0,), "keepdim": True}, lambda x: x.mean(0, keepdim=True)),
])
def test_unary_references_match_torch(kind, attrs, torch_fn):
    x = np.random.default_rng(0).standard_normal((5, 7)).astype(np.float32)
    np.testing.assert_allclose(registry.evaluate(kind, [x], attrs), torch_fn(_t(x)).numpy(), rtol=1e-5, atol=1e-6)


def test_attention_reference_matches_sdpa_with_causal_and_mask():
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 3, 5, 4)).astype(np.float32) for _ in range(3))
    ref = torch.nn.functional.scaled_dot_product_attention(_t(q), _t(k), _t(v), is_causal=True).numpy()
    np.testing.assert_allclose(registry.evaluate("attention", [q, k, v], {"causal": True}), ref, rtol=1e-5, atol=1e-6)
    mask = rng.random((5, 5)) > 0.3
    mask[:, 0] = True
    ref = torch.nn.functional.scaled_dot_product_attention(_t(q), _t(k), _t(v), attn_mask=_t(mask)).numpy()
    np.testing.assert_allclose(registry.evaluate("attention", [q, k, v, mask], {}), ref, rtol=1e-5, atol=1e-6)


def test_cross_entropy_matches_torch():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, 11)).astype(np.float32)
    labels = rng.integers(0, 11, 6)
    labels[2] = -100
    ref = torch.nn.functional.cross_entropy(_t(logits), _t(labels)).item()
    assert abs(float(registry.evaluate("cross_entropy", [logits, labels], {})) - ref) < 1e-5


def test_integer_division_is_true_division():
    t = registry.infer_type("div", [T((3,), "i64"), T((), "i64")], {})
    assert t.dtype == "f32"
    np.testing.assert_allclose(registry.evaluate("div", [np.array([1, 2, 3]), np.array(2)], {}), [0.5, 1.0, 1.5])
