"""The text form: round trips of every attribute kind, and errors with line and column."""

import math

import pytest

from waferscale.errors import ParseError
from waferscale.ir import GraphBuilder, TensorType, parse, print_graph, verify


def test_attribute_values_round_trip_bit_for_bit():
    b = GraphBuilder("attrs")
    x = b.input("x", TensorType((1, 4), "f32"))
    consts = [b.op("constant", value=(v,), shape=(), dtype="f32")
              for v in (0.1, 1e-05, 1e300, -0.0, math.inf, -math.inf, 0.7978845608028654)]
    y = b.op("attention", x, x, x, causal=False, scale=None, loc='odd "name" \\ here')
    s = b.op("slice", y, axis=1, start=1, stop=3, step=2)
    g = b.output(s, *consts)
    text = print_graph(g)
    again = parse(text)
    assert print_graph(again) == text
    assert [op.attrs for op in again.ops] == [op.attrs for op in g.ops]
    assert again.loc(again.ops[-2].result) == 'odd "name" \\ here'
    verify(again)


def test_nan_attribute_round_trips():
    b = GraphBuilder("nan")
    c = b.op("constant", value=(math.nan,), shape=(2,), dtype="f16")
    text = print_graph(b.output(c))
    assert "value=[nan]" in text and print_graph(parse(text)) == text


def test_comments_and_blank_lines_are_ignored():
    g = parse("# a comment\n\ngraph @g(%x: f32[]) {   # trailing\n  %0 = neg %x : f32[]\n\n  return %0\n}\n")
    assert [op.kind for op in g.ops] == ["neg"]


@pytest.mark.parametrize("text,line,col,message", [
    ("graph @g(%x: f32[2]) {\n  %0 = neg %x : f32[2]\n  return %0\n", 4, 1, "expected '}', found end of input"),
    ("graph @g(%x: f33[2]) {\n", 1, 14, "unknown dtype 'f33'"),
    ("graph @g(%x: f32[2]) {\n  %0 = neg %x f32[2]\n  return %0\n}\n", 2, 15, "expected ':', found 'f32'"),
    ("graph @g(%x: f32[2]) {\n  %0 = neg %x : f32[2] $\n  return %0\n}\n", 2, 24, "unexpected character '\\$'"),
    ("graph @g(%x: f32[2]) {\n  %0 = neg %y : f32[2]\n  return %0\n}\n", 2, 12, "value %y is never defined"),
    ("graph @g(%x: f32[2.5]) {\n", 1, 18, "dimension '2.5' must be a non-negative integer"),
    ("graph @g(%x: f32[2]) {\n  %0 = neg %x {a=} : f32[2]\n", 2, 18, "expected an attribute value"),
    ("graph @g(%x: f32[2]) {\n  return %x\n}\n}\n", 4, 1, "unexpected '}' after the end of the graph"),
    ("graf @g() {}", 1, 1, "expected 'graph', found 'graf'"),
])
def test_malformed_text_names_line_and_column(text, line, col, message):
    with pytest.raises(ParseError, match=message) as e:
        parse(text, source="bad.ir")
    assert (e.value.line, e.value.col) == (line, col)
    assert str(e.value).startswith(f"bad.ir:{line}:{col}: parse error: ")
