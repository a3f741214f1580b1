"""An int8 KV cache (``--kv-dtype int8``, ``quantize{kv=int8}``): codes and one f16 scale per row (per
token and head), quantised as rows are appended, dequantised as the attention reads them."""

from __future__ import annotations

import json

import numpy as np

from waferscale.backends.kernels.attention import Attention
from waferscale.backends.machine import get_machine
from waferscale.cli import main
from waferscale.generate import step_graphs
from waferscale.ir import parse, print_graph, verify
from waferscale.ir.ops.cache import cache_inputs, row_codes, row_scales
from waferscale.passes import CompileState, parse_pipeline, run_pipeline
from waferscale.runtime.interpreter import run

B, H, C, D = 1, 2, 8, 16
STEP = f"""graph @step(%q: f32[{B},{H},{C},{D}], %k: f32[{B},{H},{C},{D}], %v: f32[{B},{H},{C},{D}], \
%kc: f32[{B},{H},{C},{D}], %vc: f32[{B},{H},{C},{D}], %position_ids: i64[{B},{C}]) {{
  %k2 = cache_update %kc, %k, %position_ids : f32[{B},{H},{C},{D}]
  %v2 = cache_update %vc, %v, %position_ids : f32[{B},{H},{C},{D}]
  %o = cached_attention %q, %k2, %v2, %position_ids : f32[{B},{H},{C},{D}]
  return %o, %k2, %v2
}}
"""


def _row_error_bound(x: np.ndarray) -> np.ndarray:
    """Per row, the most an element moves through int8 codes and an f16 scale: the code is
    ``round(x / s)`` with ``s`` = ``max|row| / 127`` rounded to f16 (relative error <= 2^-11), so ``|x - q s|
    <= s / 2`` where no clamp applies, and where ``|x| / s`` passes 127 (``s`` rounded down) the clamp adds at most
    ``max|row| * 2^-11``. So ``max|row| * ((1 + 2^-11) / 254 + 2^-11)``."""
    return np.abs(x).max(-1, keepdims=True) * ((1 + 2.0**-11) / 254 + 2.0**-11)


def test_int8_cache_attention_is_within_the_rounding_bound():
    """The attention over the int8 cache against the same attention over the f32 cache, within this bound:
    a key row j moves by at most dk_j per element (``_row_error_bound``), so its score
    ``c q . k_j`` by at most ``e = c sum|q| max_j dk_j``; every softmax weight then moves by a factor within
    ``[exp(-2e), exp(2e)]``, so ``|p'_j - p_j| <= (exp(2e) - 1) p_j``, and with each value moving by at most dv_j
    ``|o' - o| <= (exp(2e) - 1) max_j |v_j| + max_j dv_j`` per output element."""
    g = verify(parse(STEP))
    state, _ = run_pipeline(CompileState(g, samples=1, tokens=C), parse_pipeline("quantize{kv=int8}"))
    qg = state.graph
    assert [v.type.dtype for v in cache_inputs(qg)] == ["i8", "f16", "i8", "f16"]
    assert [op.attr.get("rows", "") for op in qg.ops if op.kind == "cache_update"] == \
        ["int8", "int8_scale", "int8", "int8_scale"]
    assert print_graph(verify(parse(print_graph(qg)))) == print_graph(qg)
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((B, H, C, D)).astype(np.float32) for _ in range(3))
    k[0, 0, 3] *= 20  # a row of another magnitude: its own scale
    pos = np.arange(C)[None]
    zeros = np.zeros((B, H, C, D), np.float32)
    want = run(g, {"q": q, "k": k, "v": v, "kc": zeros, "vc": zeros, "position_ids": pos}, {})[0]
    feed = {"q": q, "k": k, "v": v, "position_ids": pos}
    feed.update({x.name: np.zeros(x.type.shape, x.type.np_dtype) for x in cache_inputs(qg)})
    got, codes, scales, vcodes, vscales = run(qg, {x.name: feed[x.name] for x in qg.inputs}, {})
    assert codes.dtype == np.int8 and np.abs(codes).max() == 127 and scales.shape == (B, H, C, 1)
    np.testing.assert_array_equal(codes, row_codes(k))
    np.testing.assert_array_equal(scales, row_scales(k))
    dk, dv = _row_error_bound(k), _row_error_bound(v)
    assert (np.abs(codes * scales.astype(np.float32) - k) <= dk).all()
    e = (1 / np.sqrt(D)) * np.abs(q).sum(-1, keepdims=True) * dk.max(-2, keepdims=True)  # per query row
    bound = (np.exp(2 * e) - 1) * np.abs(v).max(-2, keepdims=True) + dv.max(-2, keepdims=True)
    err = np.abs(got - want)
    assert 0 < err.max() and (err <= bound).all()
    # the mesh kernel's numerics (per core a partial softmax over its keys) read the same int8 cache
    attn = next(op for op in qg.ops if op.kind == "cached_attention")
    kernel = Attention(tokens=C, dtype="f32", elem=4, heads=H, d_head=D, causal=True, capacity=C,
                       kv_elem=1 + 2 / D, kv_dequant=True)
    placed = kernel.run(attn, [q, codes, vcodes, pos, scales, vscales], 3, 2)
    np.testing.assert_allclose(placed, got, rtol=1e-5, atol=1e-6)


def test_int8_cache_bytes_are_codes_plus_row_scales():
    kw = dict(prompt_len=8, new_tokens=4, dtype="f16", weights="meta")
    ref = step_graphs("tiny-llama", **kw)
    q = step_graphs("tiny-llama", **kw, quantize="quantize{weights=f16,group=0,kv=int8}")
    for a, b in ((ref.decode_state.graph, q.decode_state.graph), (ref.prefill_state.graph, q.prefill_state.graph)):
        f16, int8 = cache_inputs(a), cache_inputs(b)
        codes = [x for x in int8 if x.type.dtype == "i8"]
        scales = [x for x in int8 if x.type.dtype == "f16"]
        assert len(codes) == len(scales) == len(f16) == 4
        elements = sum(x.type.numel for x in codes)
        rows = sum(x.type.numel for x in scales)
        d_head = codes[0].type.shape[-1]
        assert sum(x.type.nbytes for x in f16) == 2 * elements
        assert sum(x.type.nbytes for x in int8) == elements * 1 + rows * 2 == elements * (1 + 2 / d_head)


def test_int8_cache_kernel_holds_fewer_bytes_and_pays_a_dequantise():
    m = get_machine("wse3")
    kw = dict(tokens=1, dtype="f16", elem=2, heads=4, d_head=16, causal=True, capacity=64, position=40)
    f16 = Attention(**kw)
    int8 = Attention(**kw, kv_elem=1 + 2 / 16, kv_dequant=True)
    assert int8.sram(8, 4)["kv_cache"] * 32 == f16.sram(8, 4)["kv_cache"] * 18  # (16 codes + 2 B) vs 16 x 2 B
    assert int8.model_cycles(8, 4, 0, 1, m) > f16.model_cycles(8, 4, 0, 1, m)


def test_compile_generate_kv_int8_reports_its_dtype(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["compile", "tiny-llama", "--target", "mesh:32x32", "--generate", "--prompt-len", "8",
                 "--new-tokens", "4", "--kv-dtype", "int8", "-q", "-o", str(out)]) == 0
    g = json.loads((out / "report.json").read_text())["generate"]
    assert g["kv_dtype"] == "int8" and "KV cache 12 rows, int8" in (out / "report.txt").read_text()
    assert "quantize{weights=f16,group=0,kv=int8}" in (out / "report.txt").read_text()
    # 2 layers x k and v x 2 heads x 12 rows x (16 codes + a 2-byte scale)
    assert g["kv_cache_bytes"] == 2 * 2 * 2 * 12 * (16 + 2)


def test_bad_kv_dtype_is_one_line(capsys):
    assert main(["compile", "tiny", "--generate", "--kv-dtype", "int3", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--kv-dtype" in err and "int3" in err
    assert main(["run", "tiny", "--kv-dtype", "int8", "-q"]) == 2  # a forward pass has no KV cache
    err = capsys.readouterr().err.strip()
    assert err.count("not supported") == 1 and "kv=int8" in err and "no KV cache" in err
