"""Check a graph against the rules of the IR. Each failure names the rule and the op.

Rules: ``ssa-defined`` (every operand and output defined before use), ``ssa-single``
(every name assigned once), ``op-kind`` (the registry knows the kind), ``arity``, ``attrs``,
``type`` (each declared result type equals the registry's inference). A graph-valued attribute
(the body of a ``fused`` op) is verified by the same rules, and a failure inside it names the
op that holds it.
"""

from __future__ import annotations

from ..errors import VerifyError
from . import registry
from .graph import Graph, Op
from .printer import format_op


def _where(g: Graph, op: Op) -> str:
    loc = g.loc(op.result)
    return f"op {op.result} ({op.kind}){f' at {loc}' if loc else ''}"


def verify(g: Graph) -> Graph:
    """Return the graph unchanged if it is valid; raise VerifyError on the first broken rule."""
    defined: dict[str, object] = {}
    for v in [*g.inputs, *g.params]:
        if v.name in defined:
            raise VerifyError("ssa-single", f"{v} is declared twice among inputs and parameters")
        defined[v.name] = v.type
    for v in g.params:
        if 0 in getattr(v.type, "shape", ()):  # a weight of no elements: nothing to place
            raise VerifyError("type", f"parameter {v} has a dimension of 0 ({v.type})")
    for op in g.ops:
        where = _where(g, op)
        for x in op.operands:
            if x.name not in defined:
                raise VerifyError("ssa-defined", f"{where} uses {x} before it is defined")
            if defined[x.name] != x.type:
                raise VerifyError("type", f"{where} uses {x} as {x.type} but it is {defined[x.name]}")
        if op.result.name in defined:
            raise VerifyError("ssa-single", f"{where} assigns {op.result}, which is already defined")
        if not registry.known(op.kind):
            raise VerifyError("op-kind", f"{where}: unknown op kind {op.kind!r}")
        attrs = op.attr
        for rule, problem in (("arity", registry.check_arity(op.kind, len(op.operands))),
                              ("attrs", registry.check_attrs(op.kind, attrs))):
            if problem:
                raise VerifyError(rule, f"{where} {problem}: {format_op(op)}")
        try:
            inferred = registry.infer_type(op.kind, [x.type for x in op.operands], attrs)
        except ValueError as e:
            raise VerifyError("type", f"{where}: {e}") from None
        if inferred != op.type:
            raise VerifyError("type", f"{where} declares {op.type} but its operands give {inferred}")
        for name, body in attrs.items():
            if isinstance(body, Graph):
                try:
                    verify(body)
                except VerifyError as e:
                    raise VerifyError(e.rule, f"{where}, in its {name} @{body.name}: {e.detail}") from None
        defined[op.result.name] = op.type
    for v in g.outputs:
        if v.name not in defined:
            raise VerifyError("ssa-defined", f"output {v} is never defined")
    if not g.outputs:
        raise VerifyError("outputs", f"graph @{g.name} returns nothing")
    return g
