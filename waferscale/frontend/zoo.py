"""The model zoo: the Cerebras-GPT family (DESIGN.md section 7), GPT-2 124M, and tiny test configs.

All are GPT-2 architecture (transformers' ``GPT2LMHeadModel``): learned positions,
pre-LayerNorm with eps 1e-5, tied input/output embeddings, no dropout at inference.
Source for the Cerebras-GPT shapes: arXiv 2304.03208, table 1, and the model cards; their HF
configs use the exact (erf) GELU. GPT-2 uses the tanh approximation ("gelu_new").
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

    @property
    def d_head(self) -> int:
        return self.d_model // self.heads

    def config(self):
        from transformers import GPT2Config

        return GPT2Config(
            vocab_size=self.vocab, n_positions=self.context, n_embd=self.d_model,
            n_layer=self.layers, n_head=self.heads, n_inner=self.d_ffn,
            activation_function=self.activation, layer_norm_epsilon=1e-5,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True,
            bos_token_id=min(50256, self.vocab - 1), eos_token_id=min(50256, self.vocab - 1),
        )

    def param_count(self) -> int:
        return gpt2_param_count(self.vocab, self.context, self.d_model, self.d_ffn, self.layers)


def gpt2_param_count(vocab: int, context: int, d: int, f: int, layers: int) -> int:
    """Closed form for a tied GPT-2: embeddings, per-layer weights and biases, final norm."""
    per_layer = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d)
    return vocab * d + context * d + layers * per_layer + 2 * d


ZOO: dict[str, ZooModel] = {m.name: m for m in [
    ZooModel("cerebras-gpt-111m", 10, 768, 12, 3072),
    ZooModel("cerebras-gpt-256m", 14, 1088, 17, 4352),
    ZooModel("cerebras-gpt-590m", 18, 1536, 12, 6144),
    ZooModel("cerebras-gpt-1.3b", 24, 2048, 16, 8192),
    ZooModel("cerebras-gpt-2.7b", 32, 2560, 32, 10240),
    ZooModel("cerebras-gpt-6.7b", 32, 4096, 32, 16384),
    ZooModel("cerebras-gpt-13b", 40, 5120, 40, 20480),
    ZooModel("gpt2", 12, 768, 12, 3072, context=1024, activation="gelu_new"),
    # Small configs for tests: same architecture, shapes a laptop runs in milliseconds.
    ZooModel("tiny", 2, 64, 4, 256, vocab=512, context=128),
    ZooModel("tiny-tanh", 2, 64, 4, 256, vocab=512, context=128, activation="gelu_new"),
]}


def lookup(name: str) -> ZooModel:
    try:
        return ZOO[name.lower()]
    except KeyError:
        close = difflib.get_close_matches(name.lower(), ZOO, n=3, cutoff=0.4)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise UsageError(f"unknown model {name!r}{hint} (`wafer models` lists them all)") from None
