"""adamw: the optimizer step as IR ops, after ``autodiff``: the graph that returned the loss and the
gradients returns the loss, the updated parameters and the updated optimizer state.

It is ``torch.nn.utils.clip_grad_norm_`` followed by ``torch.optim.AdamW`` (one parameter group,
weight decay on every parameter), op for op:

    coef = min(1, clip / (||g||_2 + 1e-6))          # the norm over every gradient at once
    g = g * coef
    p = p * (1 - lr * wd)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    p = p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

with the Cerebras-GPT settings as defaults (arXiv 2304.03208, section 3 and appendix: AdamW with
betas 0.9 and 0.95, eps 1e-8, weight decay 0.1, gradient norm clipped at 1.0). The learning rate
is one constant (the paper's schedule is warm-up then decay; lr 6e-4 is its 111M peak).

A sparse weight P (``sparsify``; autodiff gave it a mask parameter ``mask.P`` and masked its
gradient, so its pruned entries' moments stay zero) has its updated value masked too, the usual
re-masking after the step: its pruned entries stay exactly zero (whatever its initial value there).

Only the parameters autodiff differentiated train (all, or LoRA's adapters); a frozen parameter
keeps its value and has no state.

New graph inputs: ``step`` (f32 scalar, t = 1 at the first step). New parameters, per model
parameter P: ``adam.m.P`` and ``adam.v.P`` (f32), and for a 16-bit P its f32 master copy
``master.P``: the update runs on the master weights and P is their rounding (mixed precision as
Cerebras-GPT was trained). Outputs: the loss, then per parameter its new value, then the new m,
v (and master) of each, in parameter order. Optimizer ops carry the loc ``optimizer:P``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import UnsupportedError
from ..ir.graph import Graph, Value
from ..ir.types import FLOAT_DTYPES, TensorType
from .autodiff import MASK, Emitter, copy_graph
from .base import GRAPH, CompileState, Pass, option, register

OPTIMIZER = "optimizer:"
STEP = "step"


@dataclass(frozen=True)
class AdamWConfig:
    lr: float = 6e-4
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1
    clip: float = 1.0  # max gradient norm; 0 turns clipping off


def state_names(p: str, master: bool) -> list[str]:
    return [f"adam.m.{p}", f"adam.v.{p}"] + ([f"master.{p}"] if master else [])


def trainable(g: Graph) -> list[Value]:
    """The parameters whose gradients g returns after its loss (autodiff's ``grad_of``; without it,
    after a round trip through text, every float parameter in order)."""
    named = [g.meta.get(v.name, {}).get("grad_of") for v in g.outputs[1:]]
    if named and all(named):
        by = {p.name: p for p in g.params}
        return [by[n] for n in named]
    return [p for p in g.params if p.type.dtype in FLOAT_DTYPES]


def adamw(g: Graph, cfg: AdamWConfig = AdamWConfig()) -> Graph:
    """g returns (loss, the gradient of each trainable parameter): the graph of one optimizer step,
    returning the loss and the next value of every parameter in order (a frozen one unchanged), then
    of each trainable one's state."""
    params = trainable(g)
    if len(g.outputs) != 1 + len(params) or not g.outputs or g.outputs[0].type.shape != ():
        raise UnsupportedError(f"adamw on graph @{g.name}: it needs the loss and one gradient per trained "
                               "parameter as outputs: run autodiff first")
    out = copy_graph(g)
    grads = dict(zip((p.name for p in params), g.outputs[1:]))
    out.inputs.append(step := Value(STEP, TensorType((), "f32")))
    e = Emitter(out, "o")

    def c(x: float) -> Value:
        return e("constant", value=(float(x),), shape=(), dtype="f32")

    e.loc = OPTIMIZER + "scalars"
    g32 = {p.name: grads[p.name] if grads[p.name].type.dtype == "f32" else e("cast", grads[p.name], dtype="f32")
           for p in params}
    coef = None
    if cfg.clip > 0:
        total = None
        for p in params:
            e.loc = OPTIMIZER + p.name
            gp = g32[p.name]
            sq = e("reduce_sum", e("mul", gp, gp), axes=tuple(range(gp.type.rank)), keepdim=False)
            total = sq if total is None else e("add", total, sq)
        e.loc = OPTIMIZER + "scalars"
        coef = e("minimum", e("div", c(cfg.clip), e("add", e("sqrt", total), c(1e-6))), c(1.0))
    step_size = e("div", c(cfg.lr), e("sub", c(1.0), e("pow", c(cfg.beta1), step)))
    bc2_sqrt = e("sqrt", e("sub", c(1.0), e("pow", c(cfg.beta2), step)))
    new_p, new_state = {}, []
    masks = {v.name: v for v in g.params if v.name.startswith(MASK)}
    for p in params:
        e.loc = OPTIMIZER + p.name
        master = p.type.dtype != "f32"
        f32 = p.type.with_dtype("f32")
        m, v, *mw = (Value(n, f32) for n in state_names(p.name, master))
        out.params.extend([m, v, *mw])
        w = mw[0] if master else p
        gp = e("mul", g32[p.name], coef) if coef is not None else g32[p.name]
        w1 = e("mul", w, c(1.0 - cfg.lr * cfg.weight_decay))
        m1 = e("add", e("mul", m, c(cfg.beta1)), e("mul", gp, c(1.0 - cfg.beta1)))
        v1 = e("add", e("mul", v, c(cfg.beta2)), e("mul", e("mul", gp, gp), c(1.0 - cfg.beta2)))
        denom = e("add", e("div", e("sqrt", v1), bc2_sqrt), c(cfg.eps))
        w2 = e("sub", w1, e("mul", e("div", m1, denom), step_size))
        if MASK + p.name in masks:
            w2 = e("mul", w2, masks[MASK + p.name])
        new_p[p.name] = e("cast", w2, dtype=p.type.dtype) if master else w2
        new_state.extend([m1, v1] + ([w2] if master else []))
    out.outputs = [g.outputs[0], *(new_p.get(p.name, p) for p in g.params), *new_state]
    return out


@register
@dataclass(frozen=True)
class AdamW(Pass):
    name = "adamw"
    stage = GRAPH
    summary = "one AdamW step with gradient-norm clipping (after autodiff): returns loss, new weights, new state"
    lr: float = option(AdamWConfig.lr, "learning rate")
    beta1: float = option(AdamWConfig.beta1, "first-moment decay")
    beta2: float = option(AdamWConfig.beta2, "second-moment decay")
    eps: float = option(AdamWConfig.eps, "added to the denominator")
    weight_decay: float = option(AdamWConfig.weight_decay, "decoupled weight decay")
    clip: float = option(AdamWConfig.clip, "max global gradient norm (0: no clipping)")

    def run(self, s: CompileState) -> CompileState:
        cfg = AdamWConfig(self.lr, self.beta1, self.beta2, self.eps, self.weight_decay, self.clip)
        return replace(s, graph=adamw(s.graph, cfg))
