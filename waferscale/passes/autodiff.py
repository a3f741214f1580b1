"""autodiff: the backward graph of a forward graph, from each op's backward rule (the registry's).

``next_token_loss`` turns a language model's graph (token ids in, logits ``[B, T, V]`` out) into
one whose output is the mean next-token cross-entropy: a new input ``labels`` ``[B, T]`` holds
the token that follows each position (the caller shifts the stream by one, as nanoGPT does).

``backward`` appends to a graph with one scalar output (the loss) the ops of reverse-mode
differentiation: from d(loss) = 1, it walks the ops in reverse; each op that lies between a
parameter and the loss hands the gradient of its result to its backward rule, which builds the
gradients of its operands; the gradients that reach one value are summed (slices of one value
that tile it are put back together with a concat instead). The graph then returns the loss and
the gradient of every parameter, in the order of ``graph.params``.

Backward ops carry the loc of their forward op prefixed with ``backward:`` so that a reader (and
the weight-streaming grouping, which looks for ``h.N``) sees which layer and direction each is.

Sparse weights (``sparsify``: linear ops with ``density`` < 1): each differentiated one gets a
parameter ``mask.P`` (bool, P's shape: True where P is kept), which its weight gradient is masked
by (``linear_grad_w``'s mask operand), so a pruned weight's gradient is exactly zero; ``adamw``
masks the updated weight by it too. The mask is data, like the weights (``sparse_masks``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

from ..errors import UnsupportedError
from ..ir import registry
from ..ir.graph import Graph, Op, Value, make_attrs
from ..ir.ops.grad import MASK
from ..ir.ops.linalg import sparse_params
from ..ir.rewrite import dead_code_elimination
from ..ir.types import FLOAT_DTYPES, TensorType
from .base import GRAPH, CompileState, Pass, option, register

BACKWARD = "backward:"
LABELS = "labels"


class Emitter:
    """Appends typed ops to a graph under fresh names, each with the loc it is given."""

    def __init__(self, g: Graph, prefix: str):
        self.graph, self.prefix, self.loc = g, prefix, None
        self.names = {v.name for v in g.values()}
        self.n = 0
        self.masks: dict[str, Value] = {}  # a sparse weight's mask parameter, by the weight's name
        self.pads: dict[str, tuple[Value, dict]] = {}  # pad results: (the slice's gradient, attrs)

    def __call__(self, kind: str, *operands: Value, **attrs) -> Value:
        frozen = make_attrs(attrs)
        type_ = registry.infer_type(kind, [x.type for x in operands], dict(frozen))
        while f"{self.prefix}{self.n}" in self.names:
            self.n += 1
        result = Value(f"{self.prefix}{self.n}", type_)
        self.names.add(result.name)
        self.graph.ops.append(Op(kind, tuple(operands), frozen, result))
        if self.loc:
            self.graph.meta[result.name] = {"loc": self.loc}
        if kind == "pad":
            self.pads[result.name] = (operands[0], registry.with_defaults(kind, dict(frozen)))
        return result


def copy_graph(g: Graph) -> Graph:
    return Graph(g.name, list(g.inputs), list(g.params), list(g.ops), list(g.outputs),
                 {k: dict(v) for k, v in g.meta.items()})


def next_token_loss(g: Graph) -> Graph:
    """The graph with its logits output replaced by the mean cross-entropy against ``labels``."""
    if len(g.outputs) != 1 or g.outputs[0].type.rank != 3 or g.outputs[0].type.dtype not in FLOAT_DTYPES:
        raise UnsupportedError(f"a next-token loss on graph @{g.name}: it needs one output of logits [batch, seq, "
                               f"vocab], and returns {', '.join(str(v.type) for v in g.outputs) or 'nothing'}")
    logits = g.outputs[0]
    if any(v.name == LABELS for v in g.values()):
        raise UnsupportedError(f"a next-token loss on graph @{g.name}: it already has a value named %{LABELS}")
    out = copy_graph(g)
    labels = Value(LABELS, TensorType(logits.type.shape[:-1], "i64"))
    out.inputs.append(labels)
    emit = Emitter(out, "loss")
    emit.loc = "loss"
    out.outputs = [emit("cross_entropy", logits, labels)]
    return out


def _depends_on_params(g: Graph, wrt: set[str]) -> set[str]:
    """Values computed from a float parameter of ``wrt`` (those a gradient can reach)."""
    live = {p.name for p in g.params if p.type.dtype in FLOAT_DTYPES and p.name in wrt}
    for op in g.ops:
        if any(x.name in live for x in op.operands) and op.type.dtype in FLOAT_DTYPES:
            live.add(op.result.name)
    return live


def _sum(emit: Emitter, parts: list[Value]) -> Value:
    """The gradients that reach one value, summed; slices that tile it become one concat."""
    if len(parts) > 1 and all(p.name in emit.pads for p in parts):
        pads = sorted((emit.pads[p.name] for p in parts), key=lambda s: s[1]["start"])
        axis, size = pads[0][1]["axis"], pads[0][1]["size"]
        at = 0
        for src, a in pads:
            if a["axis"] != axis or a["step"] != 1 or a["start"] != at:
                break
            at = src.type.shape[axis] + at
        else:
            if at == size:
                return emit("concat", *(src for src, _ in pads), axis=axis)
    total = parts[0]
    for p in parts[1:]:
        total = emit("add", total, p)
    return total


def _add_masks(g: Graph, out: Graph, emit: Emitter, wrt: set[str]) -> None:
    """A mask parameter for each differentiated sparse weight (module docstring)."""
    sparse = {p: d for p, d in sparse_params(g).items() if p in wrt}
    for op in g.ops:
        for i, x in enumerate(op.operands):
            if x.name in sparse and not (op.kind == "linear" and i == 1 and op.attr.get("density", 1.0) < 1.0):
                loc = g.loc(op.result)
                raise UnsupportedError(f"not supported: training sparse weight %{x.name}, which {op.kind} "
                                       f"%{op.result.name}" + (f" at {loc}" if loc else "") + " reads dense too "
                                       "(a tied embedding): leave its linear out of sparsify (exclude=...)")
    names = {v.name for v in g.values()}
    for p in (p for p in g.params if p.name in sparse):
        if MASK + p.name in names:
            raise UnsupportedError(f"autodiff of graph @{g.name}: the mask of sparse weight %{p.name} needs the "
                                   f"name %{MASK}{p.name}, which the graph already has")
        emit.masks[p.name] = m = Value(MASK + p.name, p.type.with_dtype("bool"))
        out.params.append(m)


def backward(g: Graph, wrt: set[str] | None = None) -> Graph:
    """g (one scalar output: the loss) returning the loss and the gradient of every parameter in
    ``wrt`` (default: all), in parameter order; each gradient's meta names its parameter
    (``grad_of``). The others are frozen: no gradient is made for them."""
    if len(g.outputs) != 1 or g.outputs[0].type.shape != () or g.outputs[0].type.dtype not in FLOAT_DTYPES:
        raise UnsupportedError(f"autodiff of graph @{g.name}: it needs one scalar float output (a loss), and "
                               f"returns {', '.join(str(v.type) for v in g.outputs) or 'nothing'}")
    out = copy_graph(g)
    emit = Emitter(out, "d")
    loss = g.outputs[0]
    wrt = {p.name for p in g.params} if wrt is None else set(wrt)
    reach = _depends_on_params(g, wrt)
    _add_masks(g, out, emit, wrt)
    emit.loc = BACKWARD + "loss"
    grads: dict[str, list[Value]] = defaultdict(list)
    grads[loss.name].append(emit("constant", value=(1.0,), shape=(), dtype=loss.type.dtype))
    for op in reversed(g.ops):
        parts = grads.pop(op.result.name, None)
        if parts is None or op.result.name not in reach:
            continue
        rule = registry.backward_rule(op.kind)
        loc = g.loc(op.result)
        if rule is None:
            raise UnsupportedError(f"the gradient of %{op.result.name} = {op.kind}" + (f" at {loc}" if loc else "")
                                   + f": op kind {op.kind!r} declares no backward rule"
                                   + (" (run autodiff before fuse)" if op.kind == "fused" else ""))
        emit.loc = BACKWARD + (loc or op.result.name)
        dy = _sum(emit, parts)
        full = Op(op.kind, op.operands, make_attrs(registry.with_defaults(op.kind, op.attr)), op.result)
        ds = rule(emit, full, dy)
        if len(ds) != len(op.operands):
            raise AssertionError(f"backward rule of {op.kind} gave {len(ds)} gradients for {len(op.operands)} operands")
        for x, d in zip(op.operands, ds):
            if d is not None and x.name in reach:
                if d.type != x.type:
                    raise AssertionError(f"backward rule of {op.kind}: gradient {d.type} for operand {x.type}")
                grads[x.name].append(d)
    outputs = [loss]
    for p in g.params:
        if p.name not in wrt:
            continue
        emit.loc = BACKWARD + p.name
        if grads.get(p.name):
            d = _sum(emit, grads[p.name])
        else:  # a parameter the loss does not read: a zero gradient
            d = emit("constant", value=(0.0,), shape=p.type.shape, dtype=p.type.dtype)
        outputs.append(d)
        out.meta.setdefault(d.name, {})["grad_of"] = p.name
    out.outputs = outputs
    kept = dead_code_elimination(out)
    kept.params = list(out.params)  # every parameter stays, read or not: the optimizer updates each
    return kept


def is_backward(g: Graph, v: Value) -> bool:
    return (g.loc(v) or "").startswith(BACKWARD)


@register
@dataclass(frozen=True)
class Autodiff(Pass):
    name = "autodiff"
    stage = GRAPH
    summary = "the backward graph: returns the loss and every parameter's gradient (op backward rules)"
    loss: str = option("next-token", "next-token: mean cross-entropy of the logits against a `labels` input; "
                       "output: the graph's one output is already the loss", choices=("next-token", "output"))
    wrt: str = option("all", "the parameters to differentiate: all, or lora (the adapters of the lora pass; the "
                      "rest frozen)", choices=("all", "lora"))

    def run(self, s: CompileState) -> CompileState:
        g = next_token_loss(s.graph) if self.loss == "next-token" else s.graph
        wrt = None
        if self.wrt == "lora":
            wrt = {p.name for p in g.params if p.name.startswith("lora.")}
            if not wrt:
                raise UnsupportedError("autodiff{wrt=lora} on a graph without adapters: run the lora pass first")
        return replace(s, graph=backward(g, wrt))
