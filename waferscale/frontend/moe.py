"""Mixture-of-experts models through torch.export: the experts module as a leaf.

transformers 5.x runs a MoE layer's experts (``MixtralExperts``, ``Qwen2MoeExperts``,
``Qwen3MoeExperts``, ``OlmoeExperts``: weights ``gate_up_proj [E, 2f, d]`` and ``down_proj [E, d, f]``)
as a loop over the experts that a batch hits, with ``nonzero``, ``torch.where`` and ``index_add_``:
shapes that depend on the data, which torch.export cannot trace on the meta device. The router
(a linear, softmax, ``topk``, the renormalisation) has static shapes and traces as it is.

So while a model is traced (``experts_as_leaves``), every experts module's ``forward`` calls one
custom op, ``waferscale::moe_experts(hidden, top_k_index, top_k_weights, gate_up, down)``, whose
fake implementation gives the result's shape; the converters below turn it into ``moe_dispatch``,
``moe_experts`` and ``moe_combine`` (``ir/ops/moe.py``) and ``aten.topk`` into two ``topk`` ops.
"""

from __future__ import annotations

import types
from contextlib import contextmanager

import torch

from ..errors import UnsupportedError
from ..ir.ops.moe import ACTIVATIONS
from .aten import checked, converts, operands


@torch.library.custom_op("waferscale::moe_experts", mutates_args=())
def _moe_experts(hidden: torch.Tensor, index: torch.Tensor, weights: torch.Tensor, gate_up: torch.Tensor,
                 down: torch.Tensor, act: str) -> torch.Tensor:
    """The experts' output, computed as transformers does (eager use only; tracing sees the fake)."""
    from transformers.activations import ACT2FN

    out = torch.zeros_like(hidden)
    f = gate_up.shape[1] // 2
    for e in index.unique().tolist():
        pos, tok = torch.where(index.T == e)
        h = torch.nn.functional.linear(hidden[tok], gate_up[e])
        y = torch.nn.functional.linear(ACT2FN[act](h[:, :f]) * h[:, f:], down[e])
        out.index_add_(0, tok, (y * weights[tok, pos, None]).to(out.dtype))
    return out


@_moe_experts.register_fake
def _moe_experts_fake(hidden, index, weights, gate_up, down, act):
    return torch.empty_like(hidden)


def _leaf_forward(self, hidden_states, top_k_index, top_k_weights):
    return torch.ops.waferscale.moe_experts(hidden_states, top_k_index, top_k_weights, self.gate_up_proj,
                                            self.down_proj, self._waferscale_act)


def experts_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if type(m).__name__.endswith("Experts")]


@contextmanager
def experts_as_leaves(model: torch.nn.Module, act: str | None = None):
    """Each experts module of ``model`` runs as the one ``waferscale::moe_experts`` op while this lasts;
    ``act`` is the experts' activation by transformers' name (the config's ``hidden_act``)."""
    patched = []
    try:
        for m in experts_modules(model):
            if type(m).__name__ == "GptOssExperts":  # its own leaf (frontend/gpt_oss.py)
                continue
            if not (isinstance(getattr(m, "gate_up_proj", None), torch.nn.Parameter) and getattr(m, "down_proj", None)
                    is not None and m.gate_up_proj.dim() == 3 and m.gate_up_proj.shape[-1] == m.down_proj.shape[1]):
                raise UnsupportedError(f"the experts module {type(m).__name__} (we trace experts with "
                                       "gate_up_proj [E, 2f, d] and down_proj [E, d, f], gate rows first: Mixtral, "
                                       "Qwen2-MoE, Qwen3-MoE, OLMoE; and gpt-oss's own, frontend/gpt_oss.py)")
            if act not in ACTIVATIONS:
                raise UnsupportedError(f"the experts' activation {act!r} of {type(m).__name__} "
                                       f"(supported: {', '.join(sorted(ACTIVATIONS))})")
            m._waferscale_act = act
            m.forward = types.MethodType(_leaf_forward, m)
            patched.append(m)
        yield
    finally:
        for m in patched:
            del m.forward
            del m._waferscale_act


@converts("aten.topk.default")
def _topk(imp, args, kwargs):
    x = imp.tensor(args[0])
    k = int(args[1])
    dim = (args[2] if len(args) > 2 else kwargs.get("dim", -1)) % x.type.rank
    largest = args[3] if len(args) > 3 else kwargs.get("largest", True)
    if dim != x.type.rank - 1 or not largest:
        raise UnsupportedError(f"{imp.where()}: topk other than the largest along the last axis")
    return (imp.op("topk", x, k=k, indices=False), imp.op("topk", x, k=k, indices=True))


def _in_place(kind):
    """``a /= b`` as the router renormalises its top-k weights: a new value, as long as nothing reads
    ``a`` after it (its later readers would expect the mutated tensor)."""
    def conv(imp, args, kwargs):
        target = imp.node.args[0]
        later = [u.name for u in getattr(target, "users", ()) if u is not imp.node and u.name not in imp.env]
        if later:
            raise UnsupportedError(f"{imp.where()}: an in-place {kind} whose operand is read again after it "
                                   f"({', '.join(later)})")
        a, b = operands(imp, args[0], args[1])
        return checked(imp, imp.op(kind, a, b))
    return conv


for _kind in ("add", "sub", "mul", "div"):
    converts(f"aten.{_kind}_.Tensor", f"aten.{_kind}_.Scalar")(_in_place(_kind))


@converts("waferscale.moe_experts.default")
def _experts(imp, args, kwargs):
    hidden, index, weights, gate_up, down = (imp.tensor(a) for a in args[:5])
    act = args[5] if len(args) > 5 else kwargs["act"]
    routed = imp.op("moe_dispatch", hidden, index)
    out = imp.op("moe_experts", routed, index, gate_up, down, act=act)
    if weights.type.dtype != out.type.dtype:
        weights = imp.op("cast", weights, dtype=out.type.dtype)
    return checked(imp, imp.op("moe_combine", out, weights))


def moe_config(cfg) -> dict | None:
    """The MoE facts of a Hugging Face config (experts, active per token, expert width), or None."""
    experts = next((v for n in ("num_local_experts", "num_experts") if isinstance(v := getattr(cfg, n, None), int)),
                   None)
    if not experts:
        return None
    f = getattr(cfg, "moe_intermediate_size", None) or cfg.intermediate_size
    shared = getattr(cfg, "shared_expert_intermediate_size", None) or 0
    return {"experts": experts, "top_k": cfg.num_experts_per_tok, "d_expert": f, "d_shared_expert": shared}


def moe_param_count(cfg, dense_per_layer_mlp: int) -> int:
    """Parameters a MoE config adds over a dense one whose per-layer MLP takes ``dense_per_layer_mlp``:
    per layer, E experts of three [d, f] matrices, the router, a shared expert and its gate."""
    m = moe_config(cfg)
    if m is None:
        return 0
    d = cfg.hidden_size
    per_layer = m["experts"] * 3 * d * m["d_expert"] + m["experts"] * d
    if m["d_shared_expert"]:
        per_layer += 3 * d * m["d_shared_expert"] + d
    return cfg.num_hidden_layers * (per_layer - dense_per_layer_mlp)
