"""The model zoo: the Cerebras-GPT family (DESIGN.md section 7), GPT-2 124M, Llama 3.1 8B and 70B,
and tiny test configs.

The GPT-2 family (transformers' ``GPT2LMHeadModel``): learned positions, pre-LayerNorm with eps
1e-5, tied input/output embeddings, no dropout at inference. Source for the Cerebras-GPT shapes:
arXiv 2304.03208, table 1, and the model cards; their HF configs use the exact (erf) GELU. GPT-2
uses the tanh approximation ("gelu_new").

The Llama family (``LlamaForCausalLM``): rotary positions, RMSNorm (eps 1e-5), grouped-query
attention, a SiLU-gated MLP, untied embeddings. Shapes from the published ``config.json`` of
meta-llama/Llama-3.1-8B and -70B (hidden 4096 / 8192, 32 / 80 layers, 32 / 64 heads, 8 key/value
heads, intermediate 14336 / 28672, vocabulary 128256, rope_theta 500000 with the "llama3" rope
scaling, 131072 positions). Their context is 131,072 tokens; a compile without ``--seq`` takes
``default_seq`` (2,048, as the Cerebras-GPT models' context) so that it stays a few seconds.

The Qwen3-MoE family (``Qwen3MoeForCausalLM``): Llama's layout with a query/key RMSNorm per head and
every layer's MLP a mixture of experts (softmax router, top-k renormalised). Shapes of
Qwen3-235B-A22B from its published ``config.json`` (Qwen/Qwen3-235B-A22B; the same in Megatron's
recipes): 94 layers, hidden 4096, 64 query and 4 key/value heads of head_dim 128, 128 experts of
moe_intermediate_size 1536 with 8 active per token, vocabulary 151936, 40960 positions, rope_theta
1e6, rms_norm_eps 1e-6, untied embeddings (intermediate_size 12288 is unused: no dense layer).

The gpt-oss family (``GptOssForCausalLM``): grouped-query attention with biases and a learned sink
per head, sliding-window layers (128 positions) alternating with full ones, RMSNorm, YaRN rotary
positions, and every MLP a mixture of experts with biases and a clamped SwiGLU (alpha 1.702, limit
7). Shapes of gpt-oss-120b from its published ``config.json`` (openai/gpt-oss-120b; transformers'
``GptOssConfig`` defaults are the same): 36 layers, hidden 2880, 64 query and 8 key/value heads of
head_dim 64, 128 experts of intermediate_size 2880 with 4 active per token, vocabulary 201088,
131072 positions (YaRN factor 32 over 4096, rope_theta 150000), rms_norm_eps 1e-5, untied embeddings.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from ..errors import UsageError


@dataclass(frozen=True)
class ZooModel:
    name: str
    layers: int
    d_model: int
    heads: int
    d_ffn: int
    vocab: int = 50257
    context: int = 2048
    activation: str = "gelu"  # transformers' name: "gelu" is erf GELU, "gelu_new" the tanh form
    family: str = "gpt2"  # "gpt2", "llama", "qwen3_moe" or "gpt_oss"
    kv_heads: int | None = None  # grouped-query attention (llama): key/value heads
    rope_theta: float = 10000.0
    default_seq: int | None = None  # --seq when none is given (None: the whole context)
    head_dim: int | None = None  # qwen3_moe: per-head width (None: d_model / heads)
    experts: int = 0  # qwen3_moe: experts per layer, top_k active per token, each of width d_expert
    top_k: int = 0
    d_expert: int = 0
    window: int = 0  # gpt_oss: the sliding window of every other layer

    @property
    def d_head(self) -> int:
        return self.head_dim or self.d_model // self.heads

    def config(self):
        if self.family == "gpt_oss":
            from transformers import GptOssConfig

            return GptOssConfig(
                vocab_size=self.vocab, hidden_size=self.d_model, intermediate_size=self.d_expert,
                num_hidden_layers=self.layers, num_attention_heads=self.heads, num_key_value_heads=self.kv_heads,
                head_dim=self.d_head, num_local_experts=self.experts, num_experts_per_tok=self.top_k,
                sliding_window=self.window, max_position_embeddings=self.context, rms_norm_eps=1e-5,
                hidden_act="silu", swiglu_alpha=1.702, swiglu_limit=7.0, tie_word_embeddings=False, attention_bias=True,
                # YaRN over 4,096 positions (a tiny test model's shorter context: plain rotary)
                rope_parameters={"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
                                 "truncate": False, "original_max_position_embeddings": 4096,
                                 "rope_theta": self.rope_theta} if self.context > 4096 else
                {"rope_type": "default", "rope_theta": self.rope_theta},
                pad_token_id=min(199999, self.vocab - 1), eos_token_id=min(200002, self.vocab - 1))
        if self.family == "qwen3_moe":
            from transformers import Qwen3MoeConfig

            return Qwen3MoeConfig(
                vocab_size=self.vocab, hidden_size=self.d_model, intermediate_size=self.d_ffn,
                moe_intermediate_size=self.d_expert, num_hidden_layers=self.layers, num_attention_heads=self.heads,
                num_key_value_heads=self.kv_heads, head_dim=self.d_head, num_experts=self.experts,
                num_experts_per_tok=self.top_k, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
                max_position_embeddings=self.context, rms_norm_eps=1e-6, hidden_act="silu", tie_word_embeddings=False,
                attention_bias=False, rope_parameters={"rope_type": "default", "rope_theta": self.rope_theta},
                bos_token_id=min(151643, self.vocab - 1), eos_token_id=min(151645, self.vocab - 1))
        if self.family == "llama":
            from transformers import LlamaConfig

            # meta-llama/Llama-3.1-*/config.json: rope_scaling of type "llama3" (from 8,192 positions up)
            rope = {"rope_type": "default", "rope_theta": self.rope_theta}
            if self.context > 8192:
                rope |= {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192}
            return LlamaConfig(
                vocab_size=self.vocab, hidden_size=self.d_model, intermediate_size=self.d_ffn,
                num_hidden_layers=self.layers, num_attention_heads=self.heads, num_key_value_heads=self.kv_heads,
                max_position_embeddings=self.context, rms_norm_eps=1e-5, hidden_act="silu",
                tie_word_embeddings=False, attention_bias=False, mlp_bias=False, rope_parameters=rope,
                bos_token_id=min(128000, self.vocab - 1), eos_token_id=min(128001, self.vocab - 1))
        from transformers import GPT2Config

        return GPT2Config(
            vocab_size=self.vocab, n_positions=self.context, n_embd=self.d_model,
            n_layer=self.layers, n_head=self.heads, n_inner=self.d_ffn,
            activation_function=self.activation, layer_norm_epsilon=1e-5,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True,
            bos_token_id=min(50256, self.vocab - 1), eos_token_id=min(50256, self.vocab - 1),
        )

    def param_count(self) -> int:
        if self.family == "gpt_oss":  # biases on q, k, v, o, the router and the experts; a sink per head
            q, kv = self.heads * self.d_head, self.kv_heads * self.d_head
            d, f, e = self.d_model, self.d_expert, self.experts
            attention = d * q + q + 2 * (d * kv + kv) + q * d + d + self.heads
            experts = e * (d + 1) + e * (d * 2 * f + 2 * f + f * d + d)
            return 2 * self.vocab * d + self.layers * (attention + experts + 2 * d) + d
        if self.family == "qwen3_moe":  # no dense MLP; per layer the experts, the router, q/k norms
            q, kv = self.heads * self.d_head, self.kv_heads * self.d_head
            experts = self.experts * (3 * self.d_model * self.d_expert + self.d_model) + 2 * self.d_head
            dense = llama_param_count(self.vocab, self.d_model, 0, self.layers, q, kv, True, False)
            return dense + self.layers * experts
        if self.family == "llama":
            return llama_param_count(self.vocab, self.d_model, self.d_ffn, self.layers, self.d_model,
                                     self.kv_heads * self.d_head, gated=True, tied=False)
        return gpt2_param_count(self.vocab, self.context, self.d_model, self.d_ffn, self.layers)


def gpt2_param_count(vocab: int, context: int, d: int, f: int, layers: int) -> int:
    """Closed form for a tied GPT-2: embeddings, per-layer weights and biases, final norm."""
    per_layer = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d)
    return vocab * d + context * d + layers * per_layer + 2 * d


def llama_param_count(vocab: int, d: int, f: int, layers: int, q: int, kv: int, gated: bool, tied: bool) -> int:
    """Closed form for a rotary model without biases: embeddings, per layer two norm scales, the
    query (q features), key and value (kv each) and output projections, a gated (three matrices)
    or plain (two) MLP; a final norm and the output head unless it is tied."""
    per_layer = 2 * d + d * q + 2 * d * kv + q * d + (3 if gated else 2) * d * f
    return vocab * d * (1 if tied else 2) + layers * per_layer + d


ZOO: dict[str, ZooModel] = {m.name: m for m in [
    ZooModel("cerebras-gpt-111m", 10, 768, 12, 3072),
    ZooModel("cerebras-gpt-256m", 14, 1088, 17, 4352),
    ZooModel("cerebras-gpt-590m", 18, 1536, 12, 6144),
    ZooModel("cerebras-gpt-1.3b", 24, 2048, 16, 8192),
    ZooModel("cerebras-gpt-2.7b", 32, 2560, 32, 10240),
    ZooModel("cerebras-gpt-6.7b", 32, 4096, 32, 16384),
    ZooModel("cerebras-gpt-13b", 40, 5120, 40, 20480),
    ZooModel("gpt2", 12, 768, 12, 3072, context=1024, activation="gelu_new"),
    ZooModel("llama-3.1-8b", 32, 4096, 32, 14336, vocab=128256, context=131072, activation="silu", family="llama",
             kv_heads=8, rope_theta=500000.0, default_seq=2048),
    ZooModel("llama-3.1-70b", 80, 8192, 64, 28672, vocab=128256, context=131072, activation="silu", family="llama",
             kv_heads=8, rope_theta=500000.0, default_seq=2048),
    ZooModel("qwen3-235b-a22b", 94, 4096, 64, 12288, vocab=151936, context=40960, activation="silu",
             family="qwen3_moe", kv_heads=4, rope_theta=1000000.0, default_seq=2048, head_dim=128, experts=128, top_k=8,
             d_expert=1536),
    ZooModel("gpt-oss-120b", 36, 2880, 64, 2880, vocab=201088, context=131072, activation="silu", family="gpt_oss",
             kv_heads=8, rope_theta=150000.0, default_seq=2048, head_dim=64, experts=128, top_k=4, d_expert=2880,
             window=128),
    # Small configs for tests: same architecture, shapes a laptop runs in milliseconds.
    ZooModel("tiny", 2, 64, 4, 256, vocab=512, context=128),
    ZooModel("tiny-tanh", 2, 64, 4, 256, vocab=512, context=128, activation="gelu_new"),
    ZooModel("tiny-llama", 2, 64, 4, 128, vocab=512, context=128, activation="silu", family="llama", kv_heads=2),
    ZooModel("tiny-moe", 2, 64, 4, 128, vocab=512, context=128, activation="silu", family="qwen3_moe", kv_heads=2,
             head_dim=16, experts=4, top_k=2, d_expert=32),
    ZooModel("tiny-gpt-oss", 2, 64, 4, 32, vocab=512, context=128, activation="silu", family="gpt_oss", kv_heads=2,
             head_dim=16, experts=4, top_k=2, d_expert=32, window=8),
]}


def lookup(name: str) -> ZooModel:
    try:
        return ZOO[name.lower()]
    except KeyError:
        close = difflib.get_close_matches(name.lower(), ZOO, n=3, cutoff=0.4)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        from ..safe_read import short

        raise UsageError(f"unknown model {short(name)}{hint} (`wafer models` lists them all)") from None
