"""fuse: group each matmul or embedding with the ops around it that its rectangle can do, into
one ``fused`` op (``ir/ops/fused.py``) that lowers to one kernel (``backends/kernels/fusion.py``).

- **Epilogues** (``epilogues=true``): the chain of elementwise ops applied to a matmul's or an
  embedding's result (bias, GELU, residual add, scaling, casts), as long as each value in the
  chain has that one reader and each other operand is a constant, a per-feature weight vector,
  or an activation of the output's shape (a residual). They run on the cores that finish the
  outputs, instead of on a rectangle of their own behind a fabric hop.
- **Prologues** (``prologues=true``): a layernorm or an RMSNorm over the last axis, with its scale
  (and shift) resident weights, is folded into the input stage of the matmuls it feeds, if every
  reader of it is one: a matmul with a resident weight, reading the norm (through reshapes that
  keep the last axis, each read once) as its activation. A norm feeding several projections (q, k
  and v; gate and up) is folded into each of them: each GEMM computes the statistics of the raw
  activation it receives (``backends/kernels/matmul.py``), so the norm's own kernel and its fabric
  hop are gone. A norm with any other reader stays a kernel of its own.

What attention already covers (q k^T, scale, mask, softmax, the product with v) is one kernel
already; between it and the output projection there are only layout ops, so nothing remains to
fuse there. Numbers do not change: a fused op means what its body computes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..ir import registry
from ..ir.graph import Graph, Op, make_attrs
from ..ir.rewrite import Uses
from ..ir.types import broadcast_shapes
from .base import GRAPH, CompileState, Pass, option, register

ANCHORS = {"linear", "matmul", "embedding"}
NORMS = {"layernorm", "rmsnorm"}  # the prologues a GEMM folds (backends/kernels/matmul.py)


def _keeps_last_axis(op: Op) -> bool:
    return op.kind == "reshape" and op.type.rank > 0 and op.operands[0].type.shape[-1:] == op.type.shape[-1:]


class _Finder:
    def __init__(self, g: Graph):
        self.uses = Uses(g)
        self.params = {p.name for p in g.params}
        # a quantised weight (passes/quantize.py) is resident too: its GEMM holds the codes and scales
        self.params |= {op.result.name for op in g.ops
                        if op.kind == "dequantize" and all(x.name in self.params for x in op.operands)}
        self.taken: set[str] = set()  # results of ops already in a region
        self.shared: set[str] = set()  # norms folded into every GEMM that reads them (in several regions)

    def _free(self, op: Op | None) -> bool:
        return op is not None and op.result.name not in self.taken

    def _gemm(self, op: Op) -> bool:
        """A matmul or linear with a resident weight, not yet in a region."""
        return (op.kind in ANCHORS and op.kind != "embedding" and op.operands[1].name in self.params
                and self._free(op))

    def _foldable_norm(self, norm: Op) -> bool:
        """A norm over the last axis with resident scale (and shift) whose every reader is a GEMM
        reading it as its activation only, directly or through reshapes that keep the last axis
        (each read once)."""
        if norm.kind not in NORMS or not self._free(norm) or any(x.name not in self.params for x in norm.operands[1:]):
            return False
        if norm.kind == "layernorm" and registry.with_defaults("layernorm", norm.attr)["axes"] != 1:
            return False
        if norm.result.name in self.uses.outputs:
            return False
        readers = self.uses.users(norm.result)
        if not readers:
            return False
        for op in readers:
            v = norm.result
            while _keeps_last_axis(op) and self._free(op):
                nxt = self.uses.only_user(op.result)
                if nxt is None:
                    return False
                v, op = op.result, nxt
            if not self._gemm(op) or op.operands[0].name != v.name or any(x.name == v.name for x in op.operands[1:]):
                return False
        return True

    def prologue(self, anchor: Op) -> list[Op]:
        """[norm, reshape...] feeding the anchor's activation, each reshape read only by the next;
        a norm is shared by the regions of all its readers (``_foldable_norm``)."""
        chain, v, reader = [], anchor.operands[0], anchor
        while True:
            p = self.uses.producer(v)
            if p is None:
                return []
            if p.kind in NORMS:
                if p.result.name not in self.shared and not self._foldable_norm(p):
                    return []
                self.shared.add(p.result.name)
                chain.append(p)
                return chain[::-1]
            if not self._free(p) or self.uses.only_user(v) is not reader or not _keeps_last_axis(p):
                return []
            chain.append(p)
            v, reader = p.operands[0], p

    def _side_operand_ok(self, x, out) -> bool:
        """A constant, a per-feature weight vector, or an activation that broadcasts to the output
        along the same last axis (a residual)."""
        p = self.uses.producer(x)
        if p is not None and p.kind == "constant":
            return True
        if x.name in self.params:
            return x.type.numel == out.shape[-1] and x.type.shape[-1:] == out.shape[-1:]
        try:
            return x.type.shape[-1:] == out.shape[-1:] and broadcast_shapes(x.type.shape, out.shape) == out.shape
        except ValueError:
            return False

    def epilogue(self, anchor: Op) -> list[Op]:
        chain, v = [], anchor.result
        while True:
            u = self.uses.only_user(v)
            if not self._free(u):
                break
            category = registry.category(u.kind)
            if category == "layout":
                if not _keeps_last_axis(u):
                    break
            elif category != "elementwise" or u.type.shape != v.type.shape or not all(
                    self._side_operand_ok(x, u.type) for x in u.operands if x.name != v.name):
                break
            chain.append(u)
            v = u.result
        while chain and chain[-1].kind == "reshape":  # a trailing reshape is layout, not the kernel's work
            chain.pop()
        return chain

    def region(self, op: Op, epilogues: bool, prologues: bool) -> list[Op]:
        if op.kind not in ANCHORS or op.result.name in self.taken:
            return []
        gemm = op.kind != "embedding"
        if gemm and op.operands[1].name not in self.params:
            return []  # a product of two activations is not a mesh GEMM
        pro = self.prologue(op) if prologues and gemm else []
        epi = self.epilogue(op) if epilogues else []
        if not pro and not epi:
            return []
        ops = [*pro, op, *epi]
        self.taken.update(o.result.name for o in ops if o.result.name not in self.shared)
        return ops


def fused_op(ops: list[Op], g: Graph, norm_copy: bool = False) -> Op:
    """One ``fused`` op computing what ops compute; its body keeps their names and locations.
    ``norm_copy``: its prologue norm is also in an earlier fused op, which counts its FLOPs."""
    inside = {o.result.name for o in ops}
    operands = list(dict.fromkeys(x for o in ops for x in o.operands if x.name not in inside))
    name = ".".join(o.kind for o in ops if registry.category(o.kind) != "layout")
    meta = {o.result.name: dict(g.meta[o.result.name]) for o in ops if o.result.name in g.meta}
    body = Graph(name, operands, [], list(ops), [ops[-1].result], meta)
    attrs = {"body": body, "norm_copy": True} if norm_copy else {"body": body}
    return Op("fused", tuple(operands), make_attrs(attrs), ops[-1].result)


def fuse(g: Graph, epilogues: bool = True, prologues: bool = True) -> Graph:
    finder = _Finder(g)
    regions = [r for r in (finder.region(op, epilogues, prologues) for op in g.ops) if r]
    last = {r[-1].result.name: r for r in regions}
    dropped = {o.result.name for r in regions for o in r[:-1]}  # a shared norm: in each of its readers' regions
    ops, meta, counted = [], dict(g.meta), set()
    for op in g.ops:
        if op.result.name in dropped:
            meta.pop(op.result.name, None)
        elif op.result.name in last:
            region = last[op.result.name]
            anchor = next(o for o in region if o.kind in ANCHORS)
            norm = next((o.result.name for o in region if o.kind in NORMS), None)
            ops.append(fused_op(region, g, norm_copy=norm is not None and norm in counted))
            counted.add(norm)
            loc = g.loc(anchor.result)
            if loc:
                meta[op.result.name] = {"loc": loc}
        else:
            ops.append(op)
    return Graph(g.name, list(g.inputs), list(g.params), ops, list(g.outputs), meta)


@register
@dataclass(frozen=True)
class Fuse(Pass):
    name = "fuse"
    stage = GRAPH
    summary = ("matmul/embedding + elementwise epilogue (bias, GELU, residual, scale) and layernorm/RMSNorm prologue "
               "(folded into every GEMM the norm feeds)")
    epilogues: bool = option(True, "fuse the elementwise ops on a matmul's or embedding's result into its kernel")
    prologues: bool = option(True, "fold a layernorm or RMSNorm into the input stage of the matmuls it feeds")

    def run(self, s: CompileState) -> CompileState:
        return replace(s, graph=fuse(s.graph, self.epilogues, self.prologues))
