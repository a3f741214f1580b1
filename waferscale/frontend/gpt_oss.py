"""gpt-oss through torch.export: its experts and its attention as leaves (``gpt_oss_as_leaves``).

- **Experts** (``GptOssExperts``): weights ``gate_up_proj [E, d, 2f]`` with gate and up interleaved
  (even columns gate, odd up), ``down_proj [E, f, d]``, a bias for each, and the clamped SwiGLU
  ``(clamp(up, -l, l) + 1) * g * sigmoid(alpha g)`` with ``g = min(gate, l)`` (``swiglu_alpha``,
  ``swiglu_limit``). transformers loops over the experts hit (shapes that depend on the data), so
  the module runs as one custom op while traced, which the converter turns into ``moe_dispatch``,
  two ``moe_linear`` (grouped GEMMs with the biases), strided slices, ``minimum``/``maximum`` against
  the limit, ``sigmoid``, products and ``moe_combine``: every piece an existing op with its rules.
- **Attention**: ``eager_attention_forward`` (gpt-oss supports no SDPA) concatenates a learned sink
  logit per head to the scores and drops its probability; sliding-window layers alternate with full
  ones (``layer_types``). While traced it is one custom op, converted to ``sink_attention``
  (``ir/ops/sinks.py``) with the layer's window. Its mask argument is not read: the traced programs
  have no padding (``CausalLM``), so the mask is the causal (or sliding) one the op applies itself.

- **Rotary positions**: gpt-oss rotates the halves with half-width tables (``_apply_rotary_emb``); while
  traced it is written in Llama's form, ``x * [cos, cos] + rotate_half(x) * [sin, sin]`` (the same
  products and sums), which ``canonicalize`` names ``rotary`` (so the mesh computes its tables in place,
  YaRN's scaling of them included).

The router (a linear with a bias, ``topk`` of the logits, a softmax over the k values) traces as it is.
"""

from __future__ import annotations

import types
from contextlib import ExitStack, contextmanager

import torch

from .aten import checked, converts


@torch.library.custom_op("waferscale::gpt_oss_experts", mutates_args=())
def _gpt_oss_experts(hidden: torch.Tensor, index: torch.Tensor, weights: torch.Tensor, gate_up: torch.Tensor,
                     gate_up_bias: torch.Tensor, down: torch.Tensor, down_bias: torch.Tensor, alpha: float,
                     limit: float) -> torch.Tensor:
    """As ``GptOssExperts.forward`` (eager use only; tracing sees the fake)."""
    out = torch.zeros_like(hidden)
    for e in index.unique().tolist():
        pos, tok = torch.where(index.T == e)
        h = hidden[tok] @ gate_up[e] + gate_up_bias[e]
        gate, up = h[..., ::2].clamp(max=limit), h[..., 1::2].clamp(-limit, limit)
        y = ((up + 1) * gate * torch.sigmoid(gate * alpha)) @ down[e] + down_bias[e]
        out.index_add_(0, tok, (y * weights[tok, pos, None]).to(out.dtype))
    return out


@_gpt_oss_experts.register_fake
def _gpt_oss_experts_fake(hidden, index, weights, gate_up, gate_up_bias, down, down_bias, alpha, limit):
    return torch.empty_like(hidden)


@torch.library.custom_op("waferscale::sink_attention", mutates_args=())
def _sink_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, sinks: torch.Tensor, scale: float,
                    window: int) -> torch.Tensor:
    """[B, H, L, Ev]: as ``eager_attention_forward`` of gpt-oss without padding (eager use only)."""
    g = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
    s = (q @ k.transpose(-1, -2)) * scale
    i, j = torch.arange(s.shape[-2])[:, None], torch.arange(s.shape[-1])[None, :]
    keep = (j <= i) & ((i - j < window) if window else True)
    s = s.masked_fill(~keep, float("-inf"))
    sink = sinks.reshape(1, -1, 1, 1).expand(s.shape[0], -1, s.shape[2], 1).to(s.dtype)
    p = torch.softmax(torch.cat([s, sink], dim=-1), dim=-1)[..., :-1]
    return p.to(v.dtype) @ v


@_sink_attention.register_fake
def _sink_attention_fake(q, k, v, sinks, scale, window):
    return q.new_empty(q.shape[:-1] + (v.shape[-1],))


def _experts_forward(self, hidden_states, router_indices=None, routing_weights=None):
    return torch.ops.waferscale.gpt_oss_experts(hidden_states, router_indices, routing_weights, self.gate_up_proj,
                                                self.gate_up_proj_bias, self.down_proj, self.down_proj_bias,
                                                float(self.alpha), float(self.limit))


def _attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    window = getattr(module, "sliding_window", None) or 0
    out = torch.ops.waferscale.sink_attention(query, key, value, module.sinks, float(scaling), int(window))
    return out.transpose(1, 2).contiguous(), None


def _rotary(x, cos, sin):
    """gpt-oss's [x1 cos - x2 sin, x2 cos + x1 sin] in Llama's spelling."""
    h = x.shape[-1] // 2
    return x * torch.cat([cos, cos], dim=-1) + torch.cat([-x[..., h:], x[..., :h]], dim=-1) * torch.cat([sin, sin],
                                                                                                       dim=-1)


def is_gpt_oss(model: torch.nn.Module) -> bool:
    return getattr(getattr(model, "config", None), "model_type", None) == "gpt_oss"


@contextmanager
def gpt_oss_as_leaves(model: torch.nn.Module):
    """While this lasts, a gpt-oss model's experts and attention run as the custom ops above."""
    if not is_gpt_oss(model):
        yield
        return
    from transformers.models.gpt_oss import modeling_gpt_oss as mg

    patched = [m for m in model.modules() if type(m).__name__ == "GptOssExperts"]
    with ExitStack() as stack:
        saved = mg.eager_attention_forward
        mg.eager_attention_forward = _attention_forward
        stack.callback(setattr, mg, "eager_attention_forward", saved)
        saved_rotary = mg._apply_rotary_emb
        mg._apply_rotary_emb = _rotary
        stack.callback(setattr, mg, "_apply_rotary_emb", saved_rotary)
        for m in patched:
            m.forward = types.MethodType(_experts_forward, m)
            stack.callback(delattr, m, "forward")
        yield


@converts("waferscale.gpt_oss_experts.default")
def _experts(imp, args, kwargs):
    hidden, index, weights, gate_up, gub, down, db = (imp.tensor(a) for a in args[:7])
    alpha, limit = float(args[7]), float(args[8])
    f2 = gate_up.type.shape[2]
    dtype = hidden.type.dtype

    def const(x):
        return imp.op("constant", value=(x,), shape=(), dtype=dtype)

    routed = imp.op("moe_dispatch", hidden, index)
    h = imp.op("moe_linear", routed, index, gate_up, gub)
    gate = imp.op("minimum", imp.op("slice", h, axis=1, start=0, stop=f2, step=2), const(limit))
    up = imp.op("maximum", imp.op("minimum", imp.op("slice", h, axis=1, start=1, stop=f2, step=2), const(limit)),
                const(-limit))
    glu = imp.op("mul", gate, imp.op("sigmoid", imp.op("mul", gate, const(alpha))))
    y = imp.op("moe_linear", imp.op("mul", imp.op("add", up, const(1.0)), glu), index, down, db)
    if weights.type.dtype != dtype:
        weights = imp.op("cast", weights, dtype=dtype)
    return checked(imp, imp.op("moe_combine", y, weights))


@converts("waferscale.sink_attention.default")
def _attention(imp, args, kwargs):
    q, k, v, sinks = (imp.tensor(a) for a in args[:4])
    if sinks.type.dtype != q.type.dtype:
        sinks = imp.op("cast", sinks, dtype=q.type.dtype)
    return checked(imp, imp.op("sink_attention", q, k, v, sinks, scale=float(args[4]), window=int(args[5])))
