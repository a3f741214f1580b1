"""Rewriting graphs: use-def information, replace-all-uses, dead-code elimination, and the
pattern-rewrite driver that graph passes are written on.

A pattern is a function ``pattern(op, rw) -> Value | None``. It sees one op (its operands already
replaced by whatever earlier rewrites of the same sweep put in their place) and ``rw``, which
answers use-def questions (``rw.producer(v)``, ``rw.users(v)``) and builds new ops in front of the
matched one (``rw.op(kind, *operands, **attrs)``). Returning a value replaces every use of the
op's result with it; returning None leaves the op alone. ``rewrite`` sweeps the graph in order,
trying the patterns on each op, then drops what nothing reads, and repeats until a sweep changes
nothing (tinygrad's ``graph_rewrite`` and xDSL's ``PatternRewriteWalker`` work the same way).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from .graph import Graph, Op, Value, make_attrs
from .registry import infer_type


class Uses:
    """Use-def information of a graph: the op defining each value and the ops reading it."""

    def __init__(self, g: Graph):
        self.defs: dict[str, Op] = {op.result.name: op for op in g.ops}
        self.readers: dict[str, list[Op]] = defaultdict(list)
        for op in g.ops:
            for x in dict.fromkeys(op.operands):
                self.readers[x.name].append(op)
        self.outputs = {v.name for v in g.outputs}

    def producer(self, v: Value) -> Op | None:
        """The op that defines v (None for an input or a parameter)."""
        return self.defs.get(v.name)

    def users(self, v: Value) -> list[Op]:
        return self.readers.get(v.name, [])

    def only_user(self, v: Value) -> Op | None:
        """The one op that reads v, if exactly one does and v is not a graph output."""
        users = self.users(v)
        return users[0] if len(users) == 1 and v.name not in self.outputs else None


def substitute(op: Op, subst: dict[str, Value]) -> Op:
    """op with each operand replaced by subst[name] where there is one."""
    if not any(x.name in subst for x in op.operands):
        return op
    return Op(op.kind, tuple(subst.get(x.name, x) for x in op.operands), op.attrs, op.result)


def replace_all_uses(g: Graph, subst: dict[str, Value]) -> Graph:
    """g with every use of a value named in subst (by an op or as an output) replaced."""
    return Graph(g.name, list(g.inputs), list(g.params), [substitute(op, subst) for op in g.ops],
                 [subst.get(v.name, v) for v in g.outputs], dict(g.meta))


def dead_code_elimination(g: Graph) -> Graph:
    """g without the ops whose results nothing reads, and without parameters no op reads."""
    live = {v.name for v in g.outputs}
    kept = []
    for op in reversed(g.ops):
        if op.result.name in live:
            kept.append(op)
            live.update(x.name for x in op.operands)
    return Graph(g.name, list(g.inputs), [p for p in g.params if p.name in live], kept[::-1],
                 list(g.outputs), {k: v for k, v in g.meta.items() if k in live})


class Rewriter:
    """What a pattern gets besides the op it looks at (see the module docstring)."""

    def __init__(self, g: Graph, names: Iterable[str]):
        self.graph = g
        self.uses = Uses(g)
        self.memo: dict[Any, Any] = {}  # per-sweep state a pattern may keep (CSE's table)
        self.new_ops: list[Op] = []
        self.meta: dict[str, dict] = {}
        self.current: Op | None = None
        numeric = [int(n) for n in names if n.isdigit()]
        self._next = max(numeric, default=-1) + 1

    # use-def, as of the start of the sweep (and kept up to date with the replacements made)
    def producer(self, v: Value) -> Op | None:
        return self.uses.producer(v)

    def users(self, v: Value) -> list[Op]:
        return self.uses.users(v)

    def only_user(self, v: Value) -> Op | None:
        return self.uses.only_user(v)

    def loc(self, v: Value) -> str | None:
        return self.meta.get(v.name, self.graph.meta.get(v.name, {})).get("loc")

    def op(self, kind: str, *operands: Value, loc: str | None = None, **attrs) -> Value:
        """A new op, typed by the registry, placed just before the matched op; its loc defaults to
        the matched op's."""
        frozen = make_attrs(attrs)
        result = Value(str(self._next), infer_type(kind, [x.type for x in operands], dict(frozen)))
        self._next += 1
        op = Op(kind, tuple(operands), frozen, result)
        self.new_ops.append(op)
        self.uses.defs[result.name] = op
        for x in dict.fromkeys(operands):
            self.uses.readers[x.name].append(op)
        where = loc if loc is not None else self.loc(self.current.result)
        if where:
            self.meta[result.name] = {"loc": where}
        return result

    def replaced(self, old: Value, new: Value) -> None:
        """Record that the readers of old now read new."""
        self.uses.readers[new.name].extend(self.uses.readers.pop(old.name, []))
        if old.name in self.uses.outputs:
            self.uses.outputs.add(new.name)


Pattern = Callable[[Op, Rewriter], "Value | None"]


def rewrite(g: Graph, patterns: list[Pattern], max_sweeps: int = 100) -> tuple[Graph, int]:
    """Apply the patterns to a fixed point; returns the graph and the number of rewrites made."""
    total = 0
    names = {v.name for v in g.values()}
    for _ in range(max_sweeps):
        rw = Rewriter(g, names)
        subst: dict[str, Value] = {}
        ops: list[Op] = []
        changed = 0
        for op in g.ops:
            op = substitute(op, subst)
            rw.uses.defs[op.result.name] = op  # patterns look at producers with their operands replaced
            rw.current = op
            for pattern in patterns:
                rw.new_ops = []
                new = pattern(op, rw)
                if new is not None and new != op.result:
                    if new.type != op.type:
                        raise AssertionError(f"pattern {pattern.__name__} replaced {op.result} ({op.type}) by "
                                             f"{new} ({new.type})")
                    ops.extend(rw.new_ops)
                    subst[op.result.name] = new
                    rw.replaced(op.result, new)
                    changed += 1
                    break
                ops.extend(rw.new_ops)  # a pattern that built ops and then declined: they are dead code
            else:
                ops.append(op)
        names |= {op.result.name for op in ops}
        g = Graph(g.name, list(g.inputs), list(g.params), ops, [subst.get(v.name, v) for v in g.outputs],
                  {**g.meta, **rw.meta})
        g = dead_code_elimination(g)
        total += changed
        if not changed:
            return g, total
    raise AssertionError(f"rewriting did not reach a fixed point in {max_sweeps} sweeps")
