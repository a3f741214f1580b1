"""The textual form of a graph. Example:

    graph @tiny(%input_ids: i64[1,8]) {
      param %wte : f32[512,64]
      %0 = embedding %wte, %input_ids : f32[1,8,64] loc("transformer.wte")
      %1 = gelu %0 {approximate="tanh"} : f32[1,8,64]
      return %1
    }

Attributes print sorted by name; floats print with ``repr`` so they parse back bit for bit. A
graph-valued attribute (the body of a ``fused`` op) prints as a nested graph.
"""

from __future__ import annotations

import json
from typing import Any

from .graph import Graph, Op


def format_attr(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        r = repr(v)
        return r if any(c in r for c in ".en") else r + ".0"  # 'inf', 'nan', '1e-05', '2.0'
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, tuple):
        return "[" + ", ".join(format_attr(x) for x in v) + "]"
    if isinstance(v, Graph):  # a fused op's body, printed inline and indented one level
        return print_graph(v).rstrip("\n").replace("\n", "\n  ")
    raise TypeError(f"cannot print attribute value {v!r}")


def format_op(op: Op, loc: str | None = None) -> str:
    text = f"{op.result} = {op.kind}"
    if op.operands:
        text += " " + ", ".join(map(str, op.operands))
    if op.attrs:
        text += " {" + ", ".join(f"{k}={format_attr(v)}" for k, v in op.attrs) + "}"
    text += f" : {op.type}"
    if loc:
        text += f" loc({json.dumps(loc)})"
    return text


def print_graph(g: Graph) -> str:
    head = ", ".join(f"{v}: {v.type}" for v in g.inputs)
    lines = [f"graph @{g.name}({head}) {{"]
    lines += [f"  param {p} : {p.type}" for p in g.params]
    lines += ["  " + format_op(op, g.loc(op.result)) for op in g.ops]
    lines.append("  return " + ", ".join(map(str, g.outputs)))
    lines.append("}")
    return "\n".join(lines) + "\n"
