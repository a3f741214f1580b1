"""canonicalize and fuse on whole models: the numbers do not change (interpreter and placed
numerics), fusion never adds kernels or simulated time on the test configs, gpt2 and
cerebras-gpt-111m end with the same ops per layer, and fused kernels cost what they should. A Llama's
RMSNorms fold into every projection they feed, and its placed logits still match PyTorch's."""

import functools
import math

import numpy as np
import pytest

from waferscale.backends.costs import DEFAULT as COSTS
from waferscale.backends.kernels import Gemm
from waferscale.backends.machine import WSE2
from waferscale.driver import run_passes
from waferscale.errors import VerifyError
from waferscale.frontend.lm import trace_lm
from waferscale.ir import parse, print_graph, verify
from waferscale.passes.fuse import fuse
from waferscale.runtime.interpreter import run
from waferscale.runtime.placed_run import run_placed

from .conftest import traced


def gpt2_shaped(tmp_path_factory):
    """A small Hugging Face GPT-2 config as GPT-2 itself has it: gelu_new, untied n_inner."""
    from transformers import GPT2Config

    d = tmp_path_factory.mktemp("gpt2-small")
    GPT2Config(n_layer=2, n_embd=48, n_head=3, vocab_size=97, n_positions=128, activation_function="gelu_new",
               resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0).save_pretrained(d)
    return str(d)


@functools.cache
def _traced(spec, batch, seq):
    return trace_lm(spec, batch=batch, seq=seq, dtype="f32", weights="random", seed=3)


@pytest.fixture(scope="module", params=["tiny", "tiny-tanh", "gpt2-shaped", "tiny-llama"])
def model(request, tmp_path_factory):
    return gpt2_shaped(tmp_path_factory) if request.param == "gpt2-shaped" else request.param


@pytest.mark.parametrize("target", ["mesh:32x32", "mesh:13x7"])
def test_canonicalize_and_fuse_keep_the_numbers(model, target):
    t = _traced(model, 2, 24)
    s = run_passes(t.graph, "canonicalize,fuse,lower,place,route", batch=2, seq=24, target=target)
    assert any(op.kind == "fused" for op in s.graph.ops)
    ids = np.random.default_rng(0).integers(0, t.info["vocab"], (2, 24))
    feed = {t.graph.inputs[0].name: ids}
    want = run(t.graph, feed, t.weights)[0]
    scale = np.abs(want).max()
    assert np.abs(run(s.graph, feed, t.weights)[0] - want).max() / scale <= 1e-5  # the interpreter
    # the placed numerics: the layernorm folded into the weights, epilogues per column block
    assert np.abs(run_placed(s.program, s.placement, feed, t.weights)[0] - want).max() / scale <= 1e-5


@pytest.mark.parametrize("target,batch,seq", [("mesh:32x32", 1, 48), ("mesh:32x32", 2, 64), ("mesh:13x7", 2, 64),
                                              ("mesh:64x48,fmac=8", 1, 128), ("mesh:16x64", 2, 64),
                                              ("mesh:100x100", 1, 128)])
def test_fusion_cuts_kernels_and_costs_little_time(model, target, batch, seq):
    t = trace_lm(model, batch=batch, seq=seq, dtype="f16", weights="meta")
    plain = run_passes(t.graph, "canonicalize,lower,place,route,simulate", batch=batch, seq=seq, target=target)
    fused = run_passes(t.graph, "canonicalize,fuse,lower,place,route,simulate", batch=batch, seq=seq, target=target)
    assert len(fused.program.kernels) < len(plain.program.kernels)
    assert len(fused.program.flows) < len(plain.program.flows)
    # Fewer stages and flows. With tokens cut through the pipeline, fewer stages barely shorten it;
    # the fused GEMMs' longer steps (their epilogue tail) may slow the slowest stage a little (on a
    # small mesh the placement's granularity decides, up to 8% here), and a folded layernorm
    # lengthens its GEMM's first-token latency (the statistics' multicast along the last row),
    # which a short run of one sample feels most: the time may grow, but not by much.
    assert fused.sim.cycles <= 1.10 * plain.sim.cycles
    assert fused.sim.cycles >= fused.sim.roofline_cycles


def test_gpt2_and_cerebras_gpt_111m_have_equal_ops_per_layer_after_canonicalize():
    per_layer = {}
    for name, layers in (("gpt2", 12), ("cerebras-gpt-111m", 10)):
        t = traced(name, seq=32, weights="meta")
        g = run_passes(t.graph, "canonicalize").graph
        counts = g.op_counts()
        assert counts["gelu"] == layers and "tanh" not in counts and "pow" not in counts
        per_layer[name] = (len(g.ops) - 6) / layers  # embeddings, iota, their add, ln_f, lm_head
        if name == "cerebras-gpt-111m":
            assert len(t.graph.ops) == 296 and len(g.ops) < 296
    assert per_layer["gpt2"] == per_layer["cerebras-gpt-111m"] == 21


def test_fused_text_round_trips_and_fuse_is_idempotent():
    g = run_passes(traced("tiny", seq=16, weights="meta").graph, "canonicalize,fuse").graph
    text = print_graph(g)
    again = verify(parse(text))
    assert print_graph(again) == text
    assert print_graph(fuse(again)) == text  # nothing left to fuse
    kinds = {op.attr["body"].name for op in g.ops if op.kind == "fused"}
    assert kinds == {"embedding.add", "layernorm.linear", "linear.add", "layernorm.linear.gelu"}


def test_a_broken_body_is_named_by_the_verifier():
    text = """graph @g(%x: f32[2,4]) {
  param %w : f32[4,4]
  %1 = fused %x, %w {body=graph @linear.gelu(%x: f32[2,4], %w: f32[4,4]) {
    %0 = linear %x, %w : f32[2,4]
    %1 = gelu %0 : f32[2,5]
    return %1
  }} : f32[2,5]
  return %1
}
"""
    with pytest.raises(VerifyError, match=r"op %1 \(fused\), in its body @linear.gelu: op %1 \(gelu\) declares "
                                          r"f32\[2,5\] but its operands give f32\[2,4\]"):
        verify(parse(text))
    with pytest.raises(VerifyError, match=r"fused body @linear.gelu input %w is f32\[4,4\] but its operand is"):
        verify(parse(text.replace("param %w : f32[4,4]", "param %w : f32[4,3]")))


def test_an_epilogue_costs_the_last_row_a_few_rows_of_k_and_a_folded_layernorm_two_columns():
    from waferscale.backends.kernels.fusion import Epilogue

    plain = Gemm(tokens=64, dtype="f16", elem=2, k=768, n=3072, bias=True, flops_per_token=0.0)
    gelu = Epilogue(("gelu",), cycles_per_element=4, flops_per_element=5, params=0, streams=0)
    fused = Gemm(tokens=64, dtype="f16", elem=2, k=768, n=3072, bias=True, flops_per_token=0.0, epilogue=gelu,
                 norm=True)
    assert fused.dims() == (768 + 4 + 3, 3072 + 2)
    lanes = WSE2.lanes("f16")
    # (768 rows for K = 768: one K element a row; the 7 of the tail give 7 rows two, each paying the
    # vector instruction's overhead too: the worst case of the split)
    for (rows, cols), most in (((83, 46), 1.03), ((8, 8), 1.03), ((768, 96), 1.5)):
        a, b = plain.cycles(rows, cols, 0, 64, WSE2)[0], fused.cycles(rows, cols, 0, 64, WSE2)[0]
        # had the last row done the epilogue and the normalization alone, each token would cost it
        # 4 + 2 passes over its outputs and an rsqrt more; the K split spreads that over the rows
        f = math.ceil(math.ceil(3074 / cols) / lanes)
        alone = a + 64 * (f * (4 + 2) + 4 + 3 * COSTS.vector_issue)
        assert a <= b < alone and b <= most * a, (rows, cols, a, b, alone)
    residual = Gemm(tokens=64, dtype="f16", elem=2, k=64, n=64, bias=True, flops_per_token=0.0,
                    epilogue=Epilogue(("add",), 1, 1, params=0, streams=1))
    sram = residual.sram(8, 8)
    assert sram["activations_in"] == 2 * 9 * 2 + 2 * 8 * 2  # its K slice and the residual's block, double-buffered


def test_model_statistics_are_the_same_before_and_after_fusion():
    from waferscale.report.stats import model_stats

    t = traced("tiny", seq=16, weights="meta")
    fused = run_passes(t.graph, "canonicalize,fuse").graph
    a, b = model_stats(t.graph, 16), model_stats(fused, 16)
    assert (a.params, a.flops, a.flops_by_class) == (b.params, b.flops, b.flops_by_class)
    assert b.bytes_read < a.bytes_read  # what a fused kernel keeps on its cores is not traffic


@pytest.mark.parametrize("target", ["mesh:32x32", "mesh:13x7"])
def test_rmsnorm_folds_into_every_projection_and_the_logits_match_pytorch(target):
    import torch

    t = _traced("tiny-llama", 2, 24)
    s = run_passes(t.graph, "canonicalize,fuse,lower,place,route", batch=2, seq=24, target=target)
    assert "rmsnorm" not in s.graph.op_counts()  # every RMSNorm folded: none is a kernel of its own
    names = [k.name for k in s.program.kernels]
    for proj in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.up_proj"):
        assert f"model.layers.1.{proj}/rmsnorm+linear" in names
    assert "model.layers.1.mlp.gate_proj/rmsnorm+linear+silu+mul" in names and "lm_head/rmsnorm+linear" in names
    assert sum(k.model.rms for k in s.program.kernels if hasattr(k.model, "rms")) == 2 * 5 + 1
    ids = np.random.default_rng(0).integers(0, t.info["vocab"], (2, 24))
    with torch.no_grad():
        want = t.module(torch.from_numpy(ids)).numpy()
    scale = np.abs(want).max()
    feed = {t.graph.inputs[0].name: ids}
    # test_numerics.py's tolerance for the tiny GPTs against PyTorch
    assert np.abs(run(s.graph, feed, t.weights)[0] - want).max() / scale <= 1e-4
    # the placed numbers: W' = diag(gamma) W, each row's sum of squares added down column 0
    assert np.abs(run_placed(s.program, s.placement, feed, t.weights)[0] - want).max() / scale <= 1e-4


def test_a_folded_rmsnorm_costs_one_column_and_two_rows_of_k():
    plain = Gemm(tokens=64, dtype="f16", elem=2, k=4096, n=1024, bias=False, flops_per_token=0.0)
    rms = Gemm(tokens=64, dtype="f16", elem=2, k=4096, n=1024, bias=False, flops_per_token=0.0, norm=True, rms=True)
    ln = Gemm(tokens=64, dtype="f16", elem=2, k=4096, n=1024, bias=False, flops_per_token=0.0, norm=True)
    # one statistic (the sum of squares) beside the outputs, one multiply per output and an rsqrt
    assert rms.dims() == (4096 + 2, 1024 + 1) and ln.dims() == (4096 + 3, 1024 + 2)
    # no shift and no column sums: no vectors beside its tile of W', where a layernorm holds two
    from waferscale.backends.blocks import block

    assert rms.sram(64, 32)["weights"] == block(4098, 64) * block(1025, 32) * 2
    assert ln.sram(64, 32)["weights"] == block(4099, 64) * block(1026, 32) * 2 + 2 * block(1026, 32) * 2
    for rows, cols in ((64, 32), (16, 8)):
        a, b, c = (g.cycles(rows, cols, 0, 64, WSE2)[0] for g in (plain, rms, ln))
        assert a <= b <= c <= 1.1 * a, (rows, cols, a, b, c)


def test_a_llama_has_the_same_flops_before_and_after_its_norms_are_folded():
    from waferscale.report.stats import model_stats

    t = traced("tiny-llama", seq=16, weights="meta")
    g = run_passes(t.graph, "canonicalize").graph
    fused = fuse(g)
    copies = [op for op in fused.ops if op.kind == "fused" and op.attr.get("norm_copy")]
    assert len(copies) == 2 * (2 + 1)  # q, k, v share one norm, gate and up the other; the final norm is lm_head's
    a, b = model_stats(g, 16), model_stats(fused, 16)
    assert (a.params, a.flops, a.flops_by_class) == (b.params, b.flops, b.flops_by_class)
