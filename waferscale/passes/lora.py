"""lora: low-rank adapters beside chosen linear ops, the base weights frozen (LoRA, Hu et al. 2021,
as Hugging Face ``peft`` applies it).

Each ``linear`` whose loc ends with one of ``targets`` (GPT-2's ``c_attn``, ``attn.c_proj``,
``mlp.c_fc``, ``mlp.c_proj``; peft's default for GPT-2 is ``c_attn``) gains two parameters,
``lora.A.W`` ``[in, rank]`` and ``lora.B.W`` ``[rank, out]``, and its result becomes

    y = linear(x, W, b) + (x @ A @ B) * (alpha / rank)

Only the adapters train: ``autodiff{wrt=lora}`` differentiates the ``lora.`` parameters alone (the
backward still carries the activations' gradients through the frozen weights, but makes no
gradient for them), so the optimizer keeps state for the adapters only and, in weight streaming,
nothing streams back for a frozen weight. peft initializes A at random and B at zero, so the
first step's output equals the base model's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import UsageError
from ..ir.graph import Graph, Op, Value
from .autodiff import Emitter
from .base import GRAPH, CompileState, Pass, option, register

PREFIX = "lora."
TARGETS = ("c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


def _targeted(loc: str | None, targets: tuple[str, ...]) -> bool:
    return bool(loc) and any(loc == t or loc.endswith("." + t) for t in targets)


def add_lora(g: Graph, rank: int, alpha: float, targets: tuple[str, ...]) -> Graph:
    if rank < 1:
        raise UsageError(f"--lora {rank}: the adapters' rank must be at least 1")
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise UsageError(f"--lora-targets {','.join(unknown)}: not a GPT-2 projection (choose from "
                         f"{', '.join(TARGETS)})")
    out = Graph(g.name, list(g.inputs), list(g.params), [], list(g.outputs), {k: dict(v) for k, v in g.meta.items()})
    emit = Emitter(out, "lora")
    subst: dict[str, Value] = {}
    for op in g.ops:
        op = Op(op.kind, tuple(subst.get(x.name, x) for x in op.operands), op.attrs, op.result)
        out.ops.append(op)
        loc = g.loc(op.result)
        if op.kind != "linear" or not _targeted(loc, targets):
            continue
        x, w = op.operands[:2]
        k, n = w.type.shape[::-1] if op.attr.get("transpose_w") else w.type.shape
        if rank > min(k, n):
            raise UsageError(f"--lora {rank} is more than the smaller side of {w} ({min(k, n)})")
        a = Value(f"{PREFIX}A.{w.name}", w.type.with_shape((k, rank)))
        b = Value(f"{PREFIX}B.{w.name}", w.type.with_shape((rank, n)))
        out.params += [a, b]
        emit.loc = loc + ".lora"
        low = emit("linear", emit("linear", x, a), b)
        scaled = emit("mul", low, emit("constant", value=(alpha / rank,), shape=(), dtype=op.type.dtype))
        subst[op.result.name] = emit("add", op.result, scaled)
    if not subst:
        raise UsageError(f"--lora: no linear op of graph @{g.name} is at {', '.join(targets)}")
    out.outputs = [subst.get(v.name, v) for v in g.outputs]
    return out


@register
@dataclass(frozen=True)
class Lora(Pass):
    name = "lora"
    stage = GRAPH
    summary = "low-rank adapters beside the chosen linear ops (run autodiff{wrt=lora} after it)"
    rank: int = option(8, "rank of the adapters")
    alpha: float = option(8.0, "the adapters' output is multiplied by alpha / rank (peft's lora_alpha)")
    targets: str = option("c_attn", "the projections, '+'-separated: c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj")

    def run(self, s: CompileState) -> CompileState:
        return replace(s, graph=add_lora(s.graph, self.rank, self.alpha, tuple(self.targets.split("+"))))
