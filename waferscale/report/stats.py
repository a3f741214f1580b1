"""Model statistics from a graph: parameters, FLOPs per token, bytes of weights.

FLOPs follow the registry's rules (docs/flops.md): 2 per multiply-accumulate in matmuls and
linears (plus the bias add), both products of the dense attention score matrix (a causal
mask does not halve it), and each elementwise, normalization and softmax op's own count.
They are grouped into three classes by the op's category: ``matmul`` (contractions: linear,
matmul), ``attention``, ``other``; a fused op counts each op of its body in its own class.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ir import Graph, registry
from ..ir.ops.fused import counted_ops

FLOP_CLASSES = {"contraction": "matmul", "attention": "attention"}  # op category -> class; the rest is other


@dataclass(frozen=True)
class ModelStats:
    params: int
    weight_bytes: int
    flops: int  # forward, whole graph
    tokens: int
    flops_by_class: dict[str, int]
    bytes_read: int
    bytes_written: int

    @property
    def flops_per_token(self) -> float:
        return self.flops / self.tokens

    def as_dict(self) -> dict:
        return {
            "params": self.params,
            "weight_bytes": self.weight_bytes,
            "flops": self.flops,
            "flops_per_token": self.flops // self.tokens if self.flops % self.tokens == 0
            else self.flops / self.tokens,
            "flops_per_token_by_class": {k: v / self.tokens for k, v in self.flops_by_class.items()},
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
        }


def op_costs(g: Graph):
    """(op, flops, bytes read, bytes written) for every op of the graph."""
    for op in g.ops:
        ins = [x.type for x in op.operands]
        attrs = op.attr
        yield (op, registry.flops(op.kind, ins, op.type, attrs),
               *registry.bytes_moved(op.kind, ins, op.type, attrs))


def _flops_by_class(g: Graph, by_class: dict[str, int]) -> None:
    for op in g.ops:
        for x in counted_ops(op.attr) if op.kind == "fused" else [op]:  # a shared norm once (ir/ops/fused.py)
            f = registry.flops(x.kind, [v.type for v in x.operands], x.type, x.attr)
            by_class[FLOP_CLASSES.get(registry.category(x.kind), "other")] += f


def model_stats(g: Graph, tokens: int) -> ModelStats:
    """tokens: how many tokens one run of the graph processes (batch x sequence)."""
    by_class = {"matmul": 0, "attention": 0, "other": 0}
    _flops_by_class(g, by_class)
    read = written = 0
    for _, _, r, w in op_costs(g):
        read += r
        written += w
    return ModelStats(
        params=sum(p.type.numel for p in g.params),
        weight_bytes=sum(p.type.nbytes for p in g.params),
        flops=sum(by_class.values()), tokens=tokens, flops_by_class=by_class,
        bytes_read=read, bytes_written=written)
