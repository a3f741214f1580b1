"""A small language for matching a tree of ops, in the spirit of tinygrad's ``UPat``.

``P("mul", P.any("x"), P.const(0.5))`` matches ``mul(v, c)`` or ``mul(c, v)`` (add, mul, maximum,
minimum, eq, ne, and, or are commutative) where c is a constant op holding 0.5 (to a relative
1e-3, so that an f16-rounded literal still matches) and binds v to ``x``. A name bound twice must
be the same value both times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .graph import Op, Value

COMMUTATIVE = frozenset({"add", "mul", "maximum", "minimum", "eq", "ne", "and", "or"})


@dataclass(frozen=True)
class P:
    kind: str | None = None  # the op kind; None matches any value
    src: tuple[P, ...] = ()  # patterns of the operands
    name: str | None = None  # bind the matched value under this name
    value: float | None = None  # for a constant: its value

    def __init__(self, kind: str | None = None, *src: P, name: str | None = None, value: float | None = None):
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "src", src)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "value", value)

    @staticmethod
    def any(name: str | None = None) -> P:
        return P(None, name=name)

    @staticmethod
    def const(value: float) -> P:
        return P("constant", value=value)


def scalar(op: Op | None) -> float | None:
    """The value of a constant op that holds one value (broadcast to its shape), else None."""
    if op is None or op.kind != "constant":
        return None
    values = set(op.attr["value"])
    return float(values.pop()) if len(values) == 1 and not isinstance(next(iter(op.attr["value"])), bool) else None


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-12)


def match(p: P, v: Value, producer, binds: dict[str, Value] | None = None) -> dict[str, Value] | None:
    """The bindings if v matches p, else None. ``producer(value)`` gives the op defining a value."""
    binds = {} if binds is None else binds
    if p.name is not None:
        if p.name in binds and binds[p.name] != v:
            return None
        binds = {**binds, p.name: v}
    if p.kind is None:
        return binds
    op = producer(v)
    if op is None or op.kind != p.kind:
        return None
    if p.value is not None:
        c = scalar(op)
        return binds if c is not None and _close(c, p.value) else None
    if len(p.src) != len(op.operands):
        return None
    orders = [op.operands]
    if p.kind in COMMUTATIVE and len(op.operands) == 2:
        orders.append(op.operands[::-1])
    for operands in orders:
        b = binds
        for sub, x in zip(p.src, operands):
            b = match(sub, x, producer, b)
            if b is None:
                break
        else:
            return b
    return None
