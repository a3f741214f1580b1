"""Mixture-of-experts models (issue 30, item 1): the router's top-k, the dispatch, the experts and
the combine as IR ops match transformers on tiny Mixtral-, Qwen2-MoE- and Qwen3-MoE-like configs;
their FLOPs count only the routed experts; on the mesh each expert has its own region, which holds
its weights in SRAM, and a skewed routing distribution makes the busiest expert's region the
layer's bottleneck; a zoo MoE compiles on the meta device with a target."""

import json

import numpy as np
import pytest
import torch

import waferscale
from waferscale.backends.kernels.moe import MoeExperts
from waferscale.backends.machine import get_machine
from waferscale.backends.routing import expert_shares
from waferscale.errors import UsageError
from waferscale.frontend.lm import trace_lm
from waferscale.ir import registry
from waferscale.runtime.interpreter import run

SMALL = dict(vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             max_position_embeddings=64)


def configs():
    from transformers import MixtralConfig, OlmoeConfig, Qwen2MoeConfig, Qwen3MoeConfig

    return {
        "mixtral": MixtralConfig(**SMALL, intermediate_size=48, num_local_experts=4, num_experts_per_tok=2),
        # a shared expert with its sigmoid gate; top-k weights not renormalised
        "qwen2_moe": Qwen2MoeConfig(**SMALL, intermediate_size=64, moe_intermediate_size=24,
                                    shared_expert_intermediate_size=40, num_experts=6, num_experts_per_tok=2,
                                    norm_topk_prob=False),
        "qwen3_moe": Qwen3MoeConfig(**SMALL, intermediate_size=64, moe_intermediate_size=24, head_dim=8, num_experts=8,
                                    num_experts_per_tok=3, norm_topk_prob=True),
        "olmoe": OlmoeConfig(**SMALL, intermediate_size=24, num_experts=8, num_experts_per_tok=2,
                             pad_token_id=0, bos_token_id=1, eos_token_id=2),
    }


@pytest.mark.parametrize("family", ["mixtral", "qwen2_moe", "qwen3_moe", "olmoe"])
def test_moe_matches_transformers(family):
    t = trace_lm(configs()[family], batch=2, seq=8, dtype="f32", weights="random", seed=0)
    kinds = t.graph.op_counts()
    assert kinds["moe_experts"] == kinds["moe_dispatch"] == kinds["moe_combine"] == 2
    assert kinds["topk"] == 4  # values and indices, per layer
    ids = np.random.default_rng(0).integers(0, 128, (2, 8))
    ours = run(t.graph, {t.graph.inputs[0].name: ids}, t.weights)[0]
    with torch.no_grad():
        ref = t.module(torch.tensor(ids)).numpy()
        # the experts matter: without them the logits differ
        for m in t.module.modules():
            if type(m).__name__.endswith("Experts"):
                m.down_proj.zero_()
        without = t.module(torch.tensor(ids)).numpy()
    assert np.abs(ref - without).max() > 1e-3
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=1e-4)


def test_qwen3_235b_shapes_match_the_published_config():
    # Qwen/Qwen3-235B-A22B config.json: 94 layers, hidden 4096, 64 heads, 4 key/value heads of 128, 128 experts,
    # 8 active, moe_intermediate_size 1536, vocabulary 151936, 40960 positions
    from waferscale.frontend.zoo import ZOO

    m = ZOO["qwen3-235b-a22b"]
    assert (m.layers, m.d_model, m.heads, m.kv_heads, m.d_head, m.experts, m.top_k, m.d_expert, m.vocab,
            m.context) == (94, 4096, 64, 4, 128, 128, 8, 1536, 151936, 40960)
    cfg = m.config()
    assert cfg.num_experts == 128 and cfg.moe_intermediate_size == 1536 and cfg.head_dim == 128
    assert round(m.param_count() / 1e9, 1) == 235.1  # "235B total, 22B activated"


def test_gpt_oss_by_config_traces():
    """Once refused (its experts interleave gate and up); now traced (tests/test_gpt_oss.py: numerics)."""
    from transformers import GptOssConfig

    cfg = GptOssConfig(**SMALL, intermediate_size=24, num_local_experts=4, num_experts_per_tok=2, head_dim=8,
                       rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    kinds = trace_lm(cfg, seq=8, dtype="f32", weights="random").graph.op_counts()
    assert kinds["sink_attention"] == kinds["moe_combine"] == 2 and "moe_experts" not in kinds


def test_expert_routing_with_training_is_refused_with_the_gap_named(tmp_path, capsys):
    from waferscale.cli import main

    assert main(["compile", "tiny-moe", "--train", "--target", "mesh:32x32", "--seq", "8", "--expert-routing",
                 "zipf:1.2", "-o", str(tmp_path / "t"), "-q"]) == 2
    assert not (tmp_path / "t").exists()
    err = capsys.readouterr().err
    assert "not supported: --expert-routing with --train" in err and "uniform" in err


def test_routed_ops_against_a_loop():
    """topk, dispatch, experts and combine on their own, against a per-token loop."""
    rng = np.random.default_rng(1)
    t, e, k, d, f = 5, 4, 2, 6, 3
    probs = rng.random((t, e)).astype(np.float32)
    x = rng.standard_normal((t, d)).astype(np.float32)
    w13 = rng.standard_normal((e, 2 * f, d)).astype(np.float32)
    w2 = rng.standard_normal((e, d, f)).astype(np.float32)
    idx = registry.evaluate("topk", [probs], {"k": k, "indices": True})
    val = registry.evaluate("topk", [probs], {"k": k})
    assert idx.dtype == np.int64 and (val == np.sort(probs, axis=-1)[:, ::-1][:, :k]).all()
    xr = registry.evaluate("moe_dispatch", [x, idx], {})
    yr = registry.evaluate("moe_experts", [xr, idx, w13, w2], {"act": "silu"})
    y = registry.evaluate("moe_combine", [yr, val], {})
    want = np.zeros_like(x)
    for i in range(t):
        for j in range(k):
            h = w13[idx[i, j]] @ x[i]
            g = h[:f] / (1 + np.exp(-h[:f]))
            want[i] += val[i, j] * (w2[idx[i, j]] @ (g * h[f:]))
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_flops_count_only_the_routed_experts():
    from waferscale.ir.types import TensorType

    t, e, k, d, f = 16, 64, 4, 32, 8
    ins = [TensorType((t * k, d), "f32"), TensorType((t, k), "i64"), TensorType((e, 2 * f, d), "f32"),
           TensorType((e, d, f), "f32")]
    out = registry.infer_type("moe_experts", ins, {})
    # per routed row: gate and up, silu (5) and the product, down; E plays no part
    assert registry.flops("moe_experts", ins, out, {}) == t * k * (2 * d * 2 * f + 6 * f + 2 * f * d)
    bigger = [ins[0], ins[1], TensorType((4 * e, 2 * f, d), "f32"), TensorType((4 * e, d, f), "f32")]
    assert registry.flops("moe_experts", bigger, out, {}) == registry.flops("moe_experts", ins, out, {})


def test_routing_distributions(tmp_path):
    assert expert_shares("uniform", 4) == (0.25,) * 4
    z = expert_shares("zipf:1", 3)
    assert z[0] > z[1] > z[2] and abs(sum(z) - 1) < 1e-12 and abs(z[0] / z[2] - 3) < 1e-9
    f = tmp_path / "counts.txt"
    f.write_text("30 10\n0 60\n")
    assert expert_shares(str(f), 4) == (0.3, 0.1, 0.0, 0.6)
    for bad in ("zipf:0", "zipf:x", str(tmp_path / "missing.txt")):
        with pytest.raises(UsageError):
            expert_shares(bad, 4)
    with pytest.raises(UsageError, match="gives 4 counts; the model has 5 experts"):
        expert_shares(str(f), 4 + 1)


def _experts(c):
    return [k for k in c.program.kernels if isinstance(k.model, MoeExperts)]


def test_skewed_routing_makes_the_busiest_expert_the_bottleneck():
    even = waferscale.compile("tiny-moe", seq=16, target="mesh:32x32")
    skew = waferscale.compile("tiny-moe", seq=16, target="mesh:32x32", expert_routing="zipf:1.5")
    for c in (even, skew):
        moe = c.report["moe"]
        for layer in moe["layers"]:
            cycles = [x["cycles"] for x in layer["experts"]]
            assert layer["busiest_cycles"] == max(cycles)
            # the layer's kernel is as slow as its busiest expert (its roofline may only add)
            assert layer["kernel_cycles"] >= layer["busiest_cycles"]
        assert sum(x["tokens"] for x in moe["experts"]) == pytest.approx(16 * 2)  # tokens x top_k
    e0, s0 = even.report["moe"]["experts"], skew.report["moe"]["experts"]
    assert len({x["cycles"] for x in e0}) == 1  # uniform: every expert as busy
    assert skew.report["moe"]["busiest"] == 0 and s0[0]["tokens"] > 2 * s0[-1]["tokens"]
    assert skew.report["moe"]["layers"][0]["kernel_cycles"] > even.report["moe"]["layers"][0]["kernel_cycles"]
    assert skew.report["time"]["cycles"] > even.report["time"]["cycles"]
    # every expert has its own region inside its kernel's rectangle, side by side
    regions = [x["region"] for x in e0]
    assert len({r["col"] for r in regions}) == len(regions)


def test_expert_placement_respects_sram():
    c = waferscale.compile("tiny-moe", seq=16, target="mesh:32x32")
    cap = c.state.machine.usable_sram_bytes
    for k in _experts(c):
        r = c.state.placement.rects[k.id]
        assert sum(k.model.sram(r.rows, r.cols).values()) <= cap
        # an expert's weights are on its slice only: a slice's cores hold one expert's share
        per_core = k.model.sram(r.rows, r.cols)["weights"]
        assert per_core * r.rows * k.model.slice_cols(r.cols) >= 3 * 64 * 32 * 2  # one expert, f16
    # a mesh whose cores are too small for an expert's slice is refused with the kernel's name
    with pytest.raises(waferscale.errors.FitError):
        waferscale.compile("tiny-moe", seq=16, target="mesh:4x4,sram_kib=8", mode="pipelined")


def test_zoo_moe_compiles_on_meta_with_a_target(tmp_path):
    from waferscale.cli import main

    assert main(["compile", "tiny-moe", "--target", "mesh:32x32", "--seq", "8", "--expert-routing", "zipf:1.2",
                 "-o", str(tmp_path / "out"), "-q"]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["moe"]["routing"] == "zipf:1.2" and len(report["moe"]["experts"]) == 4
    assert report["run"]["options"]["expert_routing"] == "zipf:1.2"  # replayed as it ran
    assert main(["replay", str(tmp_path / "out"), "-o", str(tmp_path / "again"), "-q"]) == 0
    assert json.loads((tmp_path / "again" / "report.json").read_text())["moe"] == report["moe"]
    t = trace_lm("tiny-moe", seq=8, weights="meta")
    assert t.device == "meta" and t.graph.op_counts()["moe_experts"] == 2
    assert main(["compile", "tiny-moe", "--seq", "8", "--expert-routing", "zipf:0", "-o",
                 str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()


def test_measured_counts_from_a_file(tmp_path):
    counts = tmp_path / "counts.json"
    counts.write_text("[5, 5, 30, 0]")
    c = waferscale.compile("tiny-moe", seq=8, target="mesh:32x32", expert_routing=str(counts))
    moe = c.report["moe"]
    assert moe["busiest"] == 2 and moe["experts"][3]["tokens"] == 0 and moe["experts"][3]["cycles"] == 0
    assert moe["experts"][2]["tokens"] == pytest.approx(8 * 2 * 30 / 40)
    with pytest.raises(UsageError, match="neither uniform"):  # refused before the trace
        waferscale.compile("tiny-moe", seq=8, expert_routing=str(tmp_path / "none.json"))


def test_placed_numerics_and_the_ir_text_round_trip():
    from waferscale.backends.routing import with_routing
    from waferscale.ir import parse, print_graph

    c = waferscale.compile("tiny-moe", seq=8, target="mesh:32x32", weights="random", dtype="f32",
                           expert_routing="zipf:1")
    ids = np.random.default_rng(0).integers(0, 512, (1, 8))
    with torch.no_grad():
        ref = c.traced.module(torch.tensor(ids)).numpy()
    np.testing.assert_allclose(c.run(ids, placed=True)[0], ref, atol=1e-4, rtol=1e-4)
    text = print_graph(with_routing(c.graph, "zipf:1"))
    assert "load=[0.48, 0.24, 0.16, 0.12]" in text  # 1, 1/2, 1/3, 1/4 of 25/12
    assert print_graph(parse(text)) == text


def test_generation_takes_the_routing_and_reports_the_experts_of_a_decode_step(tmp_path):
    """--expert-routing with --generate: the decode step's experts carry the distribution, the report has a
    moe section for it, and a skewed routing makes the busiest expert's slice slower than under uniform."""
    from waferscale.cli import main
    from waferscale.generate import compile_generate

    kw = {"prompt_len": 8, "new_tokens": 4, "target": "mesh:48x48"}
    flat = compile_generate("tiny-moe", **kw).report
    skew = compile_generate("tiny-moe", expert_routing="zipf:2", **kw).report
    assert flat["moe"]["routing"] == "uniform" and skew["moe"]["routing"] == "zipf:2"
    assert len(skew["moe"]["layers"]) == 2 and skew["moe"]["busiest"] == 0
    assert skew["moe"]["experts"][0]["tokens"] > 2 * skew["moe"]["experts"][3]["tokens"]
    assert skew["moe"]["layers"][0]["busiest_cycles"] > flat["moe"]["layers"][0]["busiest_cycles"]
    assert skew["generate"]["decode_seconds_per_token"] >= flat["generate"]["decode_seconds_per_token"]
    assert main(["compile", "tiny-moe", "--generate", "--prompt-len", "8", "--new-tokens", "4", "--target",
                 "mesh:48x48", "--expert-routing", "zipf:0", "-o", str(tmp_path / "bad"), "-q"]) == 2
    assert not (tmp_path / "bad").exists()


def test_a_decode_step_puts_a_routed_row_on_a_wide_slice_not_one_expert_s():
    """slicing: a forward pass keeps one expert per column slice; a decode step (one token, k rows) cuts
    the experts' rectangle into few wide slices, the floor counting one token's experts that collide on a
    slice (two of 4 experts over 2 slices: a 1/3 chance that both of a token's 2 land on one slice)."""
    from waferscale.backends.kernels.moe import collisions, slicing

    assert slicing(128, 8, 2048, 4096, 1536, 512) == 128  # Qwen3-235B's forward: one expert a slice
    dec = slicing(128, 8, 1, 4096, 1536, 697)
    assert 1 <= dec <= 8
    assert collisions(4, 2, 2) == pytest.approx(4 / 3, abs=0.03)
    assert collisions(128, 8, 128) == 1.0 and 2 < collisions(128, 8, 8) < 3
    # and a decode step's experts kernel on the same rectangle is faster than with one expert per slice
    from waferscale.backends.kernels.moe import MoeExperts, uniform

    m = get_machine("wse3")
    k = MoeExperts(tokens=1, dtype="f16", elem=2, experts=128, d=4096, f=1536, top_k=8, shares=uniform(128),
                   flops_per_row=1)
    assert k.groups(697) == dec
    from waferscale.backends.gemm import fastest

    dp = m.datapath("f16")  # one expert per slice, as before: a routed row on a 5-column slice
    narrow = fastest(1, 4096, 3072, 350, 5, dp)[1].step + fastest(1, 1536, 4096, 350, 5, dp)[1].step
    assert k.model_cycles(350, 697, 0, 1, m) < narrow


def test_the_decode_slicing_is_chosen_with_the_target_s_datapath_and_costs():
    """slicing's proxy prices an arriving element's AXPYs on the machine's datapath (lanes, ports, Costs):
    where each call's issue dominates, the fewest rows on the busiest slice win (more slices); where the lanes
    dominate (f32), the widest slices. The lowering reads the target's datapath."""
    from dataclasses import replace

    from waferscale.backends.costs import DEFAULT
    from waferscale.backends.kernels.moe import DEFAULT_DATAPATH, slicing

    wse3 = get_machine("wse3")
    f16 = wse3.datapath("f16")
    assert slicing(128, 8, 1, 4096, 1536, 697, f16) == slicing(128, 8, 1, 4096, 1536, 697, DEFAULT_DATAPATH) == 8
    slow_issue = replace(f16, costs=replace(DEFAULT, vector_issue=200))
    assert slicing(128, 8, 1, 4096, 1536, 16, slow_issue) > slicing(128, 8, 1, 4096, 1536, 16, f16)
    assert slicing(128, 8, 1, 4096, 1536, 697, wse3.datapath("f32")) < 8
    c = waferscale.compile("tiny-moe", seq=16, target="mesh:32x32")
    (k, *_) = _experts(c)
    assert k.model.dp == get_machine("mesh:32x32").datapath(k.model.dtype)


def test_a_per_head_norm_spreads_its_heads_over_rows():
    """Qwen3's q_norm (an RMSNorm over each head of a token) at a decode step's one token: its 64 heads are
    64 independent rows, so on 64 rows of cores they run at once, as fast as one head on one row; only a
    token's routed rows (moe_combine sums them on the token's row) stay on one row."""
    from dataclasses import replace

    from waferscale.backends.kernels.moe import Routing
    from waferscale.backends.kernels.rowwise import Rowwise

    m = get_machine("wse3")
    q_norm = Rowwise(tokens=1, dtype="f16", elem=2, op="rmsnorm", features=128, inputs=1, params=1,
                     flops_per_token=0, groups=64)
    one = replace(q_norm, groups=1)
    assert q_norm.max_rows() == 64 and one.max_rows() == 1
    assert q_norm.model_cycles(64, 16, 0, 1, m) == one.model_cycles(1, 16, 0, 1, m)
    assert q_norm.model_cycles(1, 16, 0, 1, m) > 30 * q_norm.model_cycles(64, 16, 0, 1, m)
    combine = Routing(tokens=1, dtype="f16", elem=2, op="moe_combine", features=64, inputs=1, params=0,
                      flops_per_token=0, groups=8)
    assert combine.max_rows() == 1
    assert combine.model_cycles(8, 16, 0, 1, m) == combine.model_cycles(1, 16, 0, 1, m)
