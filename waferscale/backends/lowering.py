"""Lowering a graph to mesh kernels and the flows between them.

Every op that computes becomes a kernel (``kernels.py`` says how it spreads over a rectangle of
cores). Layout ops (reshape, transpose, slice, expand, concat) and constants do no work of their
own: a reshape or transpose is the order in which a producer sends its wavelets, a slice is the
part of them a consumer asks for. They vanish into the flows, so a flow from the QKV projection
to attention carries only its slice of the QKV output.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from ..errors import UnsupportedError
from ..ir import registry
from ..ir.graph import Graph, Op
from ..ir.types import TensorType
from . import kernels as K

LAYOUT = {"reshape", "transpose", "slice", "expand", "concat", "constant", "iota"}
ELEMENTWISE = {
    "add", "sub", "mul", "div", "pow", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge", "and", "or",
    "neg", "exp", "log", "tanh", "erf", "sqrt", "rsqrt", "relu", "sigmoid", "gelu", "not", "cast", "where",
}
ROWWISE = ELEMENTWISE | {"layernorm", "softmax", "reduce_sum", "reduce_mean", "reduce_max"}
IO = -1  # the source id of a flow from the system I/O (a graph input)


@dataclass(frozen=True)
class KernelNode:
    id: int
    name: str  # the op's module location and kind, unique in the program
    op: Op
    model: K.Kernel
    weights: tuple[str, ...]  # parameter names held in the kernel's SRAM
    weight_bytes: int
    flops: int  # model FLOPs of the op (registry rules), for the report


@dataclass(frozen=True)
class Flow:
    src: int  # kernel id, or IO
    dst: int
    value: str  # the IR value the consumer reads
    bytes_per_token: float
    elements_per_token: float


@dataclass(frozen=True)
class Program:
    graph: Graph
    kernels: tuple[KernelNode, ...]
    flows: tuple[Flow, ...]
    samples: int
    tokens: int  # per sample
    outputs: tuple[int, ...]  # kernels whose results are graph outputs

    @property
    def weight_bytes(self) -> int:
        return sum(k.weight_bytes for k in self.kernels)


def _where(g: Graph, op: Op) -> str:
    loc = g.loc(op.result)
    return f"%{op.result.name} = {op.kind}" + (f" at {loc}" if loc else "")


def _kernel_model(g: Graph, op: Op, origins: list[set], tokens: int, samples: int) -> K.Kernel:
    t: TensorType = op.type
    dtype, elem = t.dtype, t.nbytes // max(t.numel, 1) or 1
    is_param = [bool(o) and all(kind == "param" for kind, _ in o) for o in origins]
    a = op.attr
    if op.kind in ("linear", "matmul"):
        w = op.operands[1].type
        if not is_param[1] or w.rank != 2:
            raise UnsupportedError(f"lowering {_where(g, op)} to the mesh: only products with a resident "
                                   "2-D weight are lowered (a product of two activations is not yet)")
        k, n = (w.shape[::-1] if a.get("transpose_w") else w.shape)
        return K.Gemm(tokens=tokens, dtype=dtype, elem=elem, k=k, n=n, bias=len(op.operands) > 2)
    if op.kind == "embedding":
        vocab, d = op.operands[0].type.shape
        return K.Embedding(tokens=tokens, dtype=dtype, elem=elem, vocab=vocab, d=d)
    if op.kind == "attention":
        q = op.operands[0].type
        if len(op.operands) > 3:
            raise UnsupportedError(f"lowering {_where(g, op)} to the mesh: attention with an explicit mask "
                                   "operand (only causal=true or no mask)")
        if q.shape[-2] != op.operands[1].type.shape[-2]:
            raise UnsupportedError(f"lowering {_where(g, op)}: cross-attention (queries and keys of different length)")
        heads = prod(q.shape[:-2]) * q.shape[-2] // (tokens * samples)  # per sample
        return K.Attention(tokens=tokens, dtype=dtype, elem=elem, heads=max(heads, 1), d_head=q.shape[-1],
                           causal=bool(a.get("causal")))
    if op.kind in ROWWISE:
        src = op.operands[0].type
        if op.kind.startswith("reduce") and tuple(a.get("axes", ())) not in ((src.rank - 1,), (-1,)):
            raise UnsupportedError(f"lowering {_where(g, op)}: reductions other than over the last axis")
        if op.kind == "softmax" and a.get("axis", -1) not in (-1, src.rank - 1):
            raise UnsupportedError(f"lowering {_where(g, op)}: softmax over an axis other than the last")
        features = src.shape[-1] if src.rank else 1
        acts = sum(1 for o, p in zip(origins, is_param) if o and not p)
        params = sum(is_param)
        return K.Rowwise(tokens=tokens, dtype=dtype, elem=elem, op=op.kind, features=features,
                         inputs=max(acts, 1), params=params)
    raise UnsupportedError(f"lowering {_where(g, op)} to the mesh (no mesh kernel for op kind {op.kind!r})")


def lower(g: Graph, samples: int, tokens: int) -> Program:
    """Kernels and flows of a graph that processes ``samples`` samples of ``tokens`` tokens."""
    origins: dict[str, set] = {v.name: {("in", v.name)} for v in g.inputs}
    origins.update({v.name: {("param", v.name)} for v in g.params})
    params = {v.name: v for v in g.params}
    total = samples * tokens
    kernels: list[KernelNode] = []
    flows: list[Flow] = []
    names: dict[str, int] = {}
    for op in g.ops:
        ins = [origins[x.name] for x in op.operands]
        if op.kind in LAYOUT:
            origins[op.result.name] = set().union(*ins) if ins else set()
            continue
        kid = len(kernels)
        model = _kernel_model(g, op, ins, tokens, samples)
        base = f"{g.loc(op.result) or op.result.name}/{op.kind}"
        names[base] = names.get(base, 0) + 1
        name = base if names[base] == 1 else f"{base}#{names[base]}"
        weights = sorted({n for o in ins for kind, n in o if kind == "param"})
        flops = registry.flops(op.kind, [x.type for x in op.operands], op.type, op.attr)
        kernels.append(KernelNode(kid, name, op, model, tuple(weights),
                                  sum(params[w].type.nbytes for w in weights), flops))
        for x, o in zip(op.operands, ins):
            for src in sorted({n if kind == "k" else IO for kind, n in o if kind in ("k", "in")}):
                flows.append(Flow(src, kid, x.name, x.type.nbytes / total, x.type.numel / total))
        origins[op.result.name] = {("k", kid)}
    outputs = []
    for v in g.outputs:
        ks = sorted(n for kind, n in origins[v.name] if kind == "k")
        if not ks:
            raise UnsupportedError(f"graph output %{v.name} is computed by no kernel (a constant or an input)")
        outputs.extend(ks)
    return Program(g, tuple(kernels), tuple(flows), samples, tokens, tuple(dict.fromkeys(outputs)))
