"""Mesh kernels: how each op (or fused region) runs on a rectangle of cores, what it costs, and
the numbers it computes. One module per kernel family; each registers its lowering rule in
``base.RULES`` when imported."""

from . import attention, embedding, fused, grads, matmul, moe, moe_grad, rotary, rowwise, sinks  # noqa: F401  (register their rules)
from .attention import Attention
from .base import RULES, ChunkCost, Kernel, LowerCtx, Work, roofline_cycles, rule_for
from .embedding import Embedding
from .fused import label
from .matmul import Gemm
from .rotary import Rotary
from .rowwise import Rowwise

__all__ = ["RULES", "Attention", "ChunkCost", "Embedding", "Gemm", "Kernel", "LowerCtx", "Rotary", "Rowwise", "Work",
           "label", "roofline_cycles", "rule_for"]
