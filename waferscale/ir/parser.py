"""Parse the textual form back into a graph. Errors name the line and column.

The parser resolves names in two passes (first every definition, then every use), so a value
used before it is defined parses, and the verifier reports it as the SSA rule it breaks. A
graph-valued attribute (a fused op's body) is a nested graph with names of its own scope.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..errors import ParseError
from ..limits import MAX_NUMBER_CHARS
from .graph import Graph, Op, Value, make_attrs
from .types import DTYPES, TensorType

_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r]+|\#[^\n]*)
  | (?P<nl>\n)
  | (?P<value>%[A-Za-z0-9_.\-]+)
  | (?P<symbol>@[A-Za-z0-9_.\-]+)
  | (?P<number>-?(?:\d+\.\d*(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|\d+|inf\b|nan\b))
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[(){}\[\],:=])
""", re.VERBOSE)


@dataclass(frozen=True)
class Tok:
    kind: str
    text: str
    line: int
    col: int


def tokenize(text: str, source: str) -> list[Tok]:
    toks, line, start, pos = [], 1, 0, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ParseError(f"unexpected character {text[pos]!r}", line, pos - start + 1, source)
        kind = m.lastgroup
        if kind == "nl":
            line, start = line + 1, m.end()
        elif kind != "ws":
            toks.append(Tok(kind, m.group(), line, pos - start + 1))
        pos = m.end()
    toks.append(Tok("eof", "", line, pos - start + 1))
    return toks


class _Parser:
    def __init__(self, text: str, source: str):
        self.toks = tokenize(text, source)
        self.i = 0
        self.source = source

    # -- token helpers
    @property
    def tok(self) -> Tok:
        return self.toks[self.i]

    def error(self, message: str, tok: Tok | None = None) -> ParseError:
        t = tok or self.tok
        return ParseError(message, t.line, t.col, self.source)

    def describe(self, t: Tok) -> str:
        return "end of input" if t.kind == "eof" else repr(t.text)

    def next(self) -> Tok:
        t = self.tok
        self.i += 1
        return t

    def accept(self, text: str) -> bool:
        if self.tok.text == text and self.tok.kind in ("punct", "ident"):
            self.i += 1
            return True
        return False

    def expect(self, text: str) -> Tok:
        if not self.accept(text):
            raise self.error(f"expected {text!r}, found {self.describe(self.tok)}")
        return self.toks[self.i - 1]

    def expect_kind(self, kind: str, what: str) -> Tok:
        if self.tok.kind != kind:
            raise self.error(f"expected {what}, found {self.describe(self.tok)}")
        return self.next()

    # -- grammar
    def type(self) -> TensorType:
        t = self.expect_kind("ident", "a type such as f32[2,3]")
        if t.text not in DTYPES:
            raise self.error(f"unknown dtype {t.text!r} (known: {', '.join(DTYPES)})", t)
        self.expect("[")
        dims = []
        while not self.accept("]"):
            if dims:
                self.expect(",")
            d = self.expect_kind("number", "a dimension size")
            self.check_length(d)
            if not d.text.isdigit():
                raise self.error(f"dimension {d.text!r} must be a non-negative integer", d)
            dims.append(int(d.text))
        return TensorType(tuple(dims), t.text)

    def check_length(self, t) -> None:
        """A number too long for int() (Python refuses 4,300 digits) or float() is a parse error."""
        if len(t.text) > MAX_NUMBER_CHARS:
            raise self.error(f"a number of {len(t.text):,} characters, more than {MAX_NUMBER_CHARS}", t)

    def string(self, t) -> str:
        """A string token's value (JSON escapes); a raw control character or a bad escape is an error."""
        try:
            return json.loads(t.text)
        except json.JSONDecodeError as e:
            raise self.error(f"bad string literal ({e.msg}): control characters must be escaped, e.g. \\n", t) from None

    def attr_value(self) -> Any:
        t = self.tok
        if t.kind == "number":
            self.next()
            self.check_length(t)
            is_float = any(c in t.text for c in ".eEn")  # '.', exponent, 'inf', 'nan'
            return float(t.text) if is_float else int(t.text)
        if t.kind == "string":
            self.next()
            return self.string(t)
        if t.kind == "ident" and t.text in ("true", "false", "none"):
            self.next()
            return {"true": True, "false": False, "none": None}[t.text]
        if t.kind == "ident" and t.text == "graph":  # a fused op's body
            return self.graph()
        if self.accept("["):
            items = []
            while not self.accept("]"):
                if items:
                    self.expect(",")
                items.append(self.attr_value())
            return tuple(items)
        raise self.error(f"expected an attribute value, found {self.describe(t)}")

    def attrs(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if not self.accept("{"):
            return out
        while not self.accept("}"):
            if out:
                self.expect(",")
            key = self.expect_kind("ident", "an attribute name")
            if key.text in out:
                raise self.error(f"attribute {key.text!r} given twice", key)
            self.expect("=")
            out[key.text] = self.attr_value()
        return out

    def graph(self) -> Graph:
        """``graph @name(inputs) { params ops return }``, its names resolved in its own scope."""
        self.expect("graph")
        g = Graph(self.expect_kind("symbol", "a graph name such as @model").text[1:])
        self.expect("(")
        while not self.accept(")"):
            if g.inputs:
                self.expect(",")
            name = self.expect_kind("value", "an input name such as %x").text[1:]
            self.expect(":")
            g.inputs.append(Value(name, self.type()))
        self.expect("{")
        while self.accept("param"):
            name = self.expect_kind("value", "a parameter name such as %w").text[1:]
            self.expect(":")
            g.params.append(Value(name, self.type()))
        pending = []  # (op with placeholder operands, operand tokens): resolved once all are defined
        while self.tok.kind == "value":
            name = self.next().text[1:]
            self.expect("=")
            kind = self.expect_kind("ident", "an op kind").text
            uses = []
            if self.tok.kind == "value":
                uses.append(self.next())
                while self.accept(","):
                    uses.append(self.expect_kind("value", "an operand such as %3"))
            attrs = self.attrs()
            self.expect(":")
            result = Value(name, self.type())
            if self.accept("loc"):
                self.expect("(")
                g.meta[name] = {"loc": self.string(self.expect_kind("string", "a location string"))}
                self.expect(")")
            pending.append((Op(kind, (), make_attrs(attrs), result), uses))
        self.expect("return")
        outs = [self.expect_kind("value", "an output such as %9")]
        while self.accept(","):
            outs.append(self.expect_kind("value", "an output such as %9"))
        self.expect("}")
        # Every definition first, then every use: a value used before it is defined parses, and
        # the verifier reports the SSA rule it breaks.
        defined: dict[str, Value] = {}
        for v in [*g.inputs, *g.params, *(op.result for op, _ in pending)]:
            defined.setdefault(v.name, v)

        def resolve(t: Tok) -> Value:
            try:
                return defined[t.text[1:]]
            except KeyError:
                raise self.error(f"value {t.text} is never defined", t) from None

        g.ops = [Op(op.kind, tuple(map(resolve, uses)), op.attrs, op.result) for op, uses in pending]
        g.outputs = [resolve(t) for t in outs]
        return g


def parse(text: str, source: str = "<ir>") -> Graph:
    p = _Parser(text, source)
    try:
        g = p.graph()
    except RecursionError:
        raise ParseError("brackets or fused bodies nested too deep to parse (hundreds of levels)",
                         p.tok.line, p.tok.col, source) from None
    if p.tok.kind != "eof":
        raise p.error(f"unexpected {p.describe(p.tok)} after the end of the graph")
    return g
