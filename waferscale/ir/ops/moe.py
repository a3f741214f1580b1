"""Mixture-of-experts ops: the router's top-k, the dispatch of each token to its k experts, the
experts' feed-forward networks, and the weighted combine of their outputs.

A MoE layer (Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE) in our IR, for T tokens, E experts, k of them
per token, hidden d and expert width f::

    %logits = linear %x, %router            : [T, E]     (the router: a plain linear)
    %p      = softmax %logits               : [T, E]
    %w      = topk %p {k, indices=false}    : [T, k]     (then renormalised by the frontend's ops)
    %i      = topk %p {k, indices=true}     : i64[T, k]
    %xr     = moe_dispatch %x, %i           : [T*k, d]   (row t*k+j: token t for its j-th expert)
    %yr     = moe_experts %xr, %i, %w13, %w2 : [T*k, d]  (row t*k+j through expert i[t, j])
    %y      = moe_combine %yr, %w           : [T, d]     (sum over j of w[t, j] * yr[t*k+j])

Every shape is static: what depends on the data (which expert a row goes to) is the values of
``%i``, not a shape. FLOPs count only the routed experts: ``T * k`` rows through one expert each,
not ``T * E`` (docs/moe.md). Their backward rules, and the ops only backward graphs use, are in
``moe_grad.py``.
"""

from __future__ import annotations

import numpy as np

from ..registry import Attr, define, evaluate
from ..types import FLOAT_DTYPES, TensorType
from .moe_grad import ACTIVATIONS, combine_backward, dispatch_backward, experts_backward, topk_backward

__all__ = ["ACTIVATIONS", "experts_flops_per_row"]  # ACTIVATIONS lives in moe_grad.py, which both use



def _topk_infer(ins, a):
    x = ins[0]
    if x.rank < 1 or x.dtype not in FLOAT_DTYPES:
        raise ValueError(f"topk needs a float operand of rank >= 1, got {x}")
    if not 1 <= a["k"] <= x.shape[-1]:
        raise ValueError(f"topk k={a['k']} must be between 1 and the last axis' {x.shape[-1]}")
    return TensorType(x.shape[:-1] + (a["k"],), "i64" if a["indices"] else x.dtype)


def _topk_ref(args, a):
    x = args[0]
    # largest first; among equal values the lower index first (as torch.topk on the CPU)
    order = np.argsort(-x.astype(np.float64), axis=-1, kind="stable")[..., :a["k"]]
    return order.astype(np.int64) if a["indices"] else np.take_along_axis(x, order, axis=-1)


define("topk", "normalization", _topk_infer, _topk_ref,
       # a running top-k over the last axis: one compare per element and slot
       flops=lambda ins, out, a: ins[0].numel * a["k"],
       attrs={"k": Attr("int"), "indices": Attr("bool", False)}, backward=topk_backward,
       doc="the k largest values of the last axis, largest first (indices=true: their positions)")


def _routed(x: TensorType, idx: TensorType, what: str) -> int:
    if idx.rank != 2 or idx.dtype not in ("i64", "i32"):
        raise ValueError(f"{what}: the expert indices must be an integer [tokens, k], got {idx}")
    return idx.shape[0] * idx.shape[1]


def _dispatch_infer(ins, a):
    x, idx = ins
    if x.rank != 2 or x.shape[0] != idx.shape[0]:
        raise ValueError(f"moe_dispatch: tokens {x} and expert indices {idx} must be [T, d] and [T, k]")
    return TensorType((_routed(x, idx, "moe_dispatch"), x.shape[1]), x.dtype)


define("moe_dispatch", "gather", _dispatch_infer, lambda args, a: np.repeat(args[0], args[1].shape[1], axis=0),
       arity=(2, 2), backward=dispatch_backward,
       bytes_moved=lambda ins, out, a: (ins[0].nbytes + ins[1].nbytes, out.nbytes),
       doc="each token sent to its k experts: row t*k+j of the result is token t, bound for expert index[t, j]")


def _experts_infer(ins, a):
    xr, idx, w13, w2 = ins[:4]
    n = _routed(xr, idx, "moe_experts")
    if xr.rank != 2 or xr.shape[0] != n:
        raise ValueError(f"moe_experts: routed tokens {xr} must be [{n}, d] (tokens x k rows)")
    e, f2, d = w13.shape if w13.rank == 3 else (None, None, None)
    if d != xr.shape[1] or f2 % 2 or w2.shape != (e, d, f2 // 2):
        raise ValueError(f"moe_experts: weights {w13} and {w2} must be [E, 2f, d] (gate and up) and [E, d, f]")
    if len(ins) == 6 and (ins[4].shape != (e, f2) or ins[5].shape != (e, d)):
        raise ValueError(f"moe_experts: biases {ins[4]} and {ins[5]} must be [E, 2f] and [E, d]")
    if a["load"] and len(a["load"]) != e:
        raise ValueError(f"moe_experts: load names {len(a['load'])} experts, the weights hold {e}")
    return xr


def experts_flops_per_row(d: int, f: int, act: str) -> int:
    """One routed token through one gated expert: gate and up (2 d 2f), the activation, the product
    of gate and up (f), down (2 f d)."""
    return 2 * d * 2 * f + ACTIVATIONS[act][2] * f + f + 2 * f * d


def _experts_flops(ins, out, a):
    e, f2, d = ins[2].shape
    return ins[0].shape[0] * experts_flops_per_row(d, f2 // 2, a["act"])


def _experts_bytes(ins, out, a):
    """Each row reads one expert's weights' worth of work, but the weights are read once per expert
    that any row uses: here every expert (an upper bound for the weights), plus the rows in and out."""
    return sum(t.nbytes for t in ins), out.nbytes


def _experts_ref(args, a):
    xr, idx, w13, w2 = args[:4]
    b13, b2 = (args[4], args[5]) if len(args) == 6 else (None, None)
    kind, attrs, _ = ACTIVATIONS[a["act"]]
    flat = idx.reshape(-1)
    f = w13.shape[1] // 2
    x32 = xr.astype(np.float32) if xr.dtype == np.float16 else xr
    out = np.zeros(x32.shape, dtype=x32.dtype)
    for e in np.unique(flat):
        rows = flat == e
        h = x32[rows] @ w13[e].T + (b13[e] if b13 is not None else 0)
        g = np.asarray(evaluate(kind, [h[:, :f]], attrs))
        out[rows] = (g * h[:, f:]) @ w2[e].T + (b2[e] if b2 is not None else 0)
    return out.astype(xr.dtype, copy=False)


define("moe_experts", "contraction", _experts_infer, _experts_ref, arity=(4, 6),
       flops=_experts_flops, bytes_moved=_experts_bytes, backward=experts_backward,
       attrs={"act": Attr("str", "silu", tuple(ACTIVATIONS)),
              # each expert's share of the routed rows on the mesh (empty: uniform); the numbers come from
              # the values of the indices, the time on the mesh from this (backends/routing.py)
              "load": Attr("scalars", ())},
       doc="row t*k+j through expert index[t, j]: down(act(gate(x)) * up(x)); weights [E, 2f, d] (gate rows "
           "first, then up) and [E, d, f], optional biases [E, 2f] and [E, d]")


def _combine_infer(ins, a):
    yr, w = ins
    if w.rank != 2 or yr.rank != 2 or yr.shape[0] != w.shape[0] * w.shape[1]:
        raise ValueError(f"moe_combine: expert outputs {yr} must be [T*k, d] for weights {w} of [T, k]")
    return TensorType((w.shape[0], yr.shape[1]), yr.dtype)


def _combine_ref(args, a):
    yr, w = args
    t, k = w.shape
    y = yr.reshape(t, k, -1).astype(np.float32) * w.astype(np.float32)[:, :, None]
    return y.sum(axis=1).astype(yr.dtype, copy=False)


define("moe_combine", "reduction", _combine_infer, _combine_ref, arity=(2, 2),
       flops=lambda ins, out, a: 2 * ins[0].numel,  # a multiply and an add per routed element
       backward=combine_backward,
       doc="each token's k expert outputs weighted by its routing weights and summed")
