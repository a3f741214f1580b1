"""Generation with a KV cache: the cache as graph state, its numbers against a full-sequence forward
and Hugging Face's greedy generate, `wafer compile --generate` and `wafer run --generate`."""

import functools
import json

import numpy as np
import pytest
import torch

from waferscale.backends.lowering import lower
from waferscale.backends.machine import get_machine
from waferscale.errors import UsageError
from waferscale.frontend import byte_tokens
from waferscale.generate import compile_generate, step_graphs
from waferscale.ir import parse, print_graph
from waferscale.ir.ops.cache import cache_inputs, cache_outputs
from waferscale.passes import parse_pipeline
from waferscale.passes.place import place
from waferscale.runtime.generate import greedy, step
from waferscale.runtime.placed_run import run_placed

from .test_cli import run_cli

# a GPT-2 and a Llama (grouped-query attention, rotary positions) with weights far from transformers'
# small initial ones, so greedy picks differ from step to step
CONFIGS = {
    "gpt2": {"model_type": "gpt2", "vocab_size": 300, "n_positions": 64, "n_embd": 32, "n_layer": 2, "n_head": 4,
             "n_inner": 64, "activation_function": "gelu_new", "initializer_range": 0.5, "layer_norm_epsilon": 1e-5,
             "tie_word_embeddings": True},
    "llama": {"model_type": "llama", "vocab_size": 300, "max_position_embeddings": 64, "hidden_size": 32,
              "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "rope_theta": 10000.0, "rms_norm_eps": 1e-5, "initializer_range": 0.5, "tie_word_embeddings": False},
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def config_dir(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(f"{request.param}-wide")
    (d / "config.json").write_text(json.dumps(CONFIGS[request.param]))
    return str(d)


@functools.cache
def steps(spec: str, prompt_len: int, new_tokens: int, batch: int):
    return step_graphs(spec, prompt_len=prompt_len, new_tokens=new_tokens, batch=batch, dtype="f32", weights="random")


def test_the_kv_cache_is_state_read_appended_and_handed_on():
    st = steps("tiny", 5, 7, 2)
    g = st.decode_state.graph
    caches = cache_inputs(g)
    assert len(caches) == 4 and [v.type.shape for v in caches] == [(2, 4, 12, 16)] * 4  # k and v of 2 layers
    assert [v.name for v in caches][:2] == ["transformer.h.0.attn.k_cache", "transformer.h.0.attn.v_cache"]
    assert len(cache_outputs(g)) == 4 and g.outputs[0].type.shape == (2, 1, 512)
    assert g.op_counts()["cache_update"] == 4 and g.op_counts()["cached_attention"] == 2
    assert "attention" not in g.op_counts()
    assert parse(print_graph(g)) == g  # the text form round-trips
    # both graphs read the same weights
    assert [p.name for p in g.params] == [p.name for p in st.prefill_state.graph.params]
    # grouped-query attention: the caches hold each key/value head once
    llama = steps("tiny-llama", 5, 7, 2).decode_state.graph
    assert [v.type.shape for v in cache_inputs(llama)] == [(2, 2, 12, 16)] * 4


@pytest.mark.parametrize("model", ["tiny", "tiny-llama"])
def test_kv_cache_decode_logits_equal_the_full_forward_at_every_position(model):
    prompt, total, batch = 5, 12, 2
    st = steps(model, prompt, total - prompt, batch)
    ids = np.random.default_rng(1).integers(0, 512, (batch, total))
    with torch.no_grad():
        full = st.decode.module.model(torch.from_numpy(ids), use_cache=False).logits.numpy()
    scale = np.abs(full).max()
    caches = {v.name: np.zeros(v.type.shape, np.float32) for v in cache_inputs(st.prefill_state.graph)}
    logits, caches = step(st.prefill_state.graph, ids[:, :prompt], 0, caches, st.decode.weights)
    assert np.abs(logits - full[:, :prompt]).max() / scale < 1e-5
    for t in range(prompt, total):  # each step feeds the sequence's own next token
        logits, caches = step(st.decode_state.graph, ids[:, t:t + 1], t, caches, st.decode.weights)
        assert np.abs(logits[:, 0] - full[:, t]).max() / scale < 1e-5, t
    # the rows past the last position were never written
    assert all(np.all(c[:, :, total:] == 0) for c in caches.values())


@pytest.mark.parametrize("model", ["tiny", "tiny-llama", "tiny-gpt-oss"])
def test_placed_decode_step_computes_what_the_interpreter_does(model):
    st = steps(model, 5, 7, 2)
    g, machine = st.decode_state.graph, get_machine("mesh:64x64")
    prog = lower(g, 2, 1, position=9)
    placement = place(prog, machine)
    rng = np.random.default_rng(2)
    feed = {"input_ids": rng.integers(0, 512, (2, 1)), "position_ids": np.full((2, 1), 9)}
    feed |= {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in cache_inputs(g)}
    placed = run_placed(prog, placement, feed, st.decode.weights)
    ref = step(g, feed["input_ids"], 9, {v.name: feed[v.name] for v in cache_inputs(g)}, st.decode.weights)[0]
    assert np.abs(placed[0] - ref).max() / np.abs(ref).max() < 1e-5


def test_greedy_tokens_equal_transformers_generate(config_dir):
    prompt, new = b"Wafer-scale!", 16
    st = steps(config_dir, len(prompt), new, 2)
    ids = np.array([list(prompt), list(prompt[::-1])])
    tokens, _ = greedy(st.prefill_state.graph, st.decode_state.graph, st.decode.weights, ids, new)
    hf = st.decode.module.model
    with torch.no_grad():
        ref = hf.generate(torch.from_numpy(ids), attention_mask=torch.ones(ids.shape, dtype=torch.long),
                          max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=0)
    assert tokens.tolist() == ref[:, len(prompt):].tolist()
    assert len(set(tokens[0].tolist())) > 4  # the weights make the picks vary: the comparison means something


def test_wafer_run_generate_matches_transformers(capsys, config_dir):
    code, out, err = run_cli(capsys, "run", config_dir, "--generate", "--prompt", "Hello, wafer", "--new-tokens",
                             "12", "--compare", "-q")
    assert code == 0, err
    assert "the same tokens" in out and "tokens: [" in out
    code, out, err = run_cli(capsys, "run", "tiny", "--generate", "--prompt", "héllo", "--new-tokens", "3", "-q")
    assert code == 0 and "KV cache of 9 rows" in out and "the same tokens" in out  # 6 UTF-8 bytes + 3
    code, out, err = run_cli(capsys, "run", "tiny", "--generate", "-q")  # a default prompt, 16 tokens, compared
    assert code == 0 and "16 new tokens" in out and "the same tokens" in out


def test_byte_tokens():
    assert byte_tokens.encode("hé", 512) == [104, 195, 169]
    assert byte_tokens.decode([104, 195, 169, 300, 33]) == "hé<300>!"


@pytest.fixture(scope="module")
def tiny_generate():
    return compile_generate("tiny", prompt_len=16, new_tokens=24, batch=2, target="mesh:64x64")


def test_decode_never_beats_the_sram_roofline(tiny_generate):
    g = tiny_generate.report["generate"]
    assert g["decode_seconds_first"] >= g["decode_roofline_seconds_first"] > 0
    assert g["decode_seconds_last"] >= g["decode_roofline_seconds_last"] > g["decode_roofline_seconds_first"]
    assert g["decode_seconds_per_token"] >= g["decode_roofline_seconds"]
    m = tiny_generate.report["machine"]
    weights = tiny_generate.report["model"]["weight_bytes"]
    assert g["decode_roofline_seconds_first"] >= weights / (m["cores"] * 16 * m["clock_hz"])
    # and the same on a mesh so small that the SRAM ports, not latency, are what a step waits for
    for batch in (1, 16):
        gs = compile_generate("tiny", prompt_len=8, new_tokens=8, batch=batch, target="mesh:24x24").report["generate"]
        assert gs["decode_seconds_first"] >= gs["decode_roofline_seconds_first"]
        assert gs["decode_seconds_last"] >= gs["decode_roofline_seconds_last"]


def test_compile_generate_reports_the_generate_section(capsys, tmp_path):
    reports = []
    for d in ("a", "b"):
        code, out, err = run_cli(capsys, "compile", "tiny", "--target", "mesh:64x64", "--generate", "--prompt-len",
                                 "16", "--new-tokens", "24", "--batch", "2", "-o", str(tmp_path / d))
        assert code == 0, err
        assert "time to first token" in out and "tokens/s" in out
        reports.append({k: v for k, v in json.loads((tmp_path / d / "report.json").read_text()).items()
                        if k not in ("compile", "host")})
    assert reports[0] == reports[1]
    for name in ("placement.json", "model.ir", "prefill.ir"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    r, g = reports[0], reports[0]["generate"]
    assert {"ttft_seconds", "decode_seconds_per_token", "decode_tokens_per_second", "prompt_len", "new_tokens",
            "batch", "kv_cache_bytes"} <= set(g)
    assert (g["prompt_len"], g["new_tokens"], g["batch"], g["kv_capacity"]) == (16, 24, 2, 40)
    assert g["kv_cache_bytes"] == 2 * 2 * 2 * 4 * 40 * 16 * 2  # k and v, 2 layers, batch 2, 4 heads, 40 rows, f16
    assert g["decode_positions"] == [16, 38] and g["decode_seconds_last"] >= g["decode_seconds_first"]
    assert g["decode_tokens_per_second"] == pytest.approx(2 / g["decode_seconds_per_token"])
    assert g["generate_seconds"] == pytest.approx(g["ttft_seconds"] + 23 * g["decode_seconds_per_token"])
    assert g["ttft_seconds"] > g["decode_seconds_first"]  # 16 tokens a sequence against one
    assert "time" in r and r["placement"]["sram_peak_bytes_per_core"] > 0
    # the KV cache's bytes per core are in the placement report, beside the other buffers
    pj = json.loads((tmp_path / "a" / "placement.json").read_text())
    attn = [k for k in pj["kernels"] if k["op"] == "cached_attention"]
    assert len(attn) == 2 and all(k["sram_bytes_per_core"]["kv_cache"] > 0 for k in attn)
    assert max(k["sram_bytes_per_core"]["kv_cache"] for k in attn) == g["kv_cache_bytes_per_core"]
    text = (tmp_path / "a" / "report.txt").read_text()
    assert "Generation: prompt 16 tokens, 24 new, batch 2" in text and "time to first token" in text
    code, out, _ = run_cli(capsys, "report", str(tmp_path / "a"))
    assert code == 0 and out == text


def test_generate_over_systems_pays_the_link(capsys, tmp_path):
    one = compile_generate("tiny", prompt_len=8, new_tokens=8, target="mesh:48x48").report["generate"]
    two = compile_generate("tiny", prompt_len=8, new_tokens=8, target="mesh:48x48", systems=2).report["generate"]
    assert two["systems"] == 2 and len(two["systems_detail"]) == 2
    link = two["inter_system_link"]
    assert link["latency_seconds"] > 0 and link["bytes_per_s"] == 150e9
    assert link["bytes_per_token"] == [64 * 2]  # the residual stream, f16
    assert sum(s["kernels"] for s in two["systems_detail"]) == sum(s["kernels"] for s in one["systems_detail"])
    # a token crosses once per step: at least the two systems' latencies and the link's
    lat = sum(s["decode_latency_cycles"] for s in two["systems_detail"]) / 1.1e9
    assert two["decode_seconds_first"] >= lat + link["latency_seconds"]
    code, _, err = run_cli(capsys, "compile", "tiny", "--target", "mesh:48x48", "--generate", "--prompt-len", "8",
                           "--new-tokens", "8", "--systems", "2", "-o", str(tmp_path / "s"), "-q")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [".waferscale-output", "model.ir", "prefill.ir",
                                                                  "report.json", "report.txt", "system-1", "system-2"]


@pytest.mark.parametrize("argv,message", [
    (["compile", "tiny", "--target", "wse2", "--generate", "--prompt-len", "100", "--new-tokens", "40"],
     "a prompt of 100 tokens + 40 new tokens = 140 positions, more than tiny's context of 128: ask for at most 28"),
    (["compile", "tiny", "--target", "wse2", "--generate", "--prompt-len", "0", "--new-tokens", "4"],
     "--prompt-len must be at least 1"),
    (["compile", "tiny", "--target", "wse2", "--generate", "--prompt-len", "4", "--new-tokens", "0"],
     "--new-tokens must be at least 1"),
    (["compile", "tiny", "--generate", "--prompt-len", "4", "--new-tokens", "4"], "give --target"),
    (["compile", "tiny", "--target", "wse2", "--generate", "--prompt-len", "4"], "--generate needs --prompt-len"),
    (["compile", "tiny", "--target", "wse2", "--prompt-len", "4"], "--prompt-len set(s) up generation: add --generate"),
    (["compile", "tiny", "--target", "wse2", "--generate", "--prompt-len", "4", "--new-tokens", "4", "--seq", "8"],
     "--seq does not go with --generate"),
    (["compile", "tiny", "--target", "wse2", "--generate", "--prompt-len", "4", "--new-tokens", "4", "--systems",
      "9"], "--systems 9 is more than the 4 parts tiny can be cut into"),
    (["compile", "tiny", "--target", "mesh:2x2", "--generate", "--prompt-len", "4", "--new-tokens", "4"],
     "generation keeps every weight and KV cache in SRAM"),
    (["run", "tiny", "--generate", "--prompt", ""], "--prompt is empty"),
    (["run", "tiny", "--generate", "--new-tokens", "0"], "--new-tokens must be at least 1"),
    (["run", "tiny", "--generate", "--prompt", "x" * 120, "--new-tokens", "20"], "more than tiny's context of 128"),
    (["run", "tiny", "--prompt", "hi"], "--prompt set(s) up generation: add --generate"),
])
def test_bad_generate_options_are_one_line(capsys, tmp_path, argv, message):
    out_dir = tmp_path / "never"
    argv = argv + (["-o", str(out_dir), "-q"] if argv[0] == "compile" else ["-q"])
    code, _, err = run_cli(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0], err
    assert not out_dir.exists()


def test_kv_cache_pass_in_a_pipeline_string():
    st = steps("tiny", 5, 7, 2)
    assert [p.spec() for p in st.passes][:2] == ["canonicalize", "kv-cache{capacity=12}"]
    with pytest.raises(UsageError, match="has no causal self-attention"):  # it has its cache already
        parse_pipeline("kv-cache{capacity=12}")[0].run(st.decode_state)
