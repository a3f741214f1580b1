"""The lowering rule of a ``fused`` op: the kernel of its anchor, carrying its prologue and
epilogue (``fusion.py``)."""

from __future__ import annotations

from ...errors import UnsupportedError
from ...ir import registry
from ...ir.graph import Op
from .base import LowerCtx, lowers
from .embedding import fused_embedding
from .fusion import NORMS, Epilogue, region, sources
from .matmul import fused_gemm

ANCHOR_RULES = {"linear": fused_gemm, "matmul": fused_gemm, "embedding": fused_embedding}


@lowers("fused")
def lower_fused(op: Op, ctx: LowerCtx):
    body = op.attr["body"]
    reg = region(body)
    build = ANCHOR_RULES.get(reg.anchor.kind)
    if build is None:
        raise UnsupportedError(f"lowering {ctx.where}: a fused region anchored on {reg.anchor.kind}")
    if (any(p.kind not in (*NORMS, "reshape") for p in reg.prologue) or sum(p.kind in NORMS for p in reg.prologue) > 1
            or (reg.prologue and build is not fused_gemm)):
        raise UnsupportedError(f"lowering {ctx.where}: a prologue of {', '.join(p.kind for p in reg.prologue)} "
                               f"before {reg.anchor.kind} (a GEMM folds one layernorm or RMSNorm)")
    src = sources(body, ctx.sources)
    anchor_ctx = LowerCtx(ctx.tokens, ctx.samples, tuple(src[x.name] for x in reg.anchor.operands), ctx.where,
                         machine=ctx.machine, traced=ctx.traced)
    epilogue = Epilogue.of(reg.epilogue, src, reg.anchor.result.name)
    return build(reg, anchor_ctx, epilogue, ctx.flops_per_token(op))


def label(op: Op) -> str:
    """What a kernel computes, for its name: the op kind, or a fused region's kinds joined by '+'."""
    if op.kind != "fused":
        return op.kind
    return "+".join(x.kind for x in op.attr["body"].ops if registry.category(x.kind) != "layout")
