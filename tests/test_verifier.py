"""Each rule of the verifier, broken once, with the message it gives."""

import pytest

from waferscale.errors import VerifyError
from waferscale.ir import parse, verify

GOOD = """graph @g(%x: f32[2,3]) {
  param %w : f32[3,4]
  %0 = linear %x, %w : f32[2,4]
  %1 = gelu %0 {approximate="tanh"} : f32[2,4]
  return %1
}
"""


def broken(old, new):
    assert old in GOOD
    return parse(GOOD.replace(old, new))


def test_good_graph_verifies():
    verify(parse(GOOD))


@pytest.mark.parametrize("old,new,rule,message", [
    # SSA: a value used before the op that defines it
    ("%0 = linear %x, %w : f32[2,4]\n  %1 = gelu %0",
     "%1 = gelu %0 {approximate=\"tanh\"} : f32[2,4]\n  %0 = linear %x, %w : f32[2,4]\n  %2 = gelu %0",
     "ssa-defined", r"op %1 \(gelu\) uses %0 before it is defined"),
    # SSA: one name assigned twice
    ('%1 = gelu %0 {approximate="tanh"} : f32[2,4]\n  return %1',
     '%0 = gelu %0 {approximate="tanh"} : f32[2,4]\n  return %0',
     "ssa-single", r"assigns %0, which is already defined"),
    ("param %w : f32[3,4]", "param %w : f32[3,4]\n  param %w : f32[3,4]", "ssa-single",
     r"%w is declared twice"),
    ("%1 = gelu", "%1 = frobnicate", "op-kind", r"unknown op kind 'frobnicate'"),
    ("linear %x, %w :", "linear %x :", "arity", r"takes 2 to 3 operands, got 1"),
    ('{approximate="tanh"}', '{approximate="fast"}', "attrs", r"approximate='fast' is not one of"),
    ('{approximate="tanh"}', '{approximate="tanh", alpha=1}', "attrs", r"unknown attribute 'alpha'"),
    ('{approximate="tanh"}', '{approximate=1}', "attrs", r"approximate=1 is not of kind str"),
    ("%0 = linear %x, %w : f32[2,4]", "%0 = linear %x, %w : f32[2,5]", "type",
     r"op %0 \(linear\) declares f32\[2,5\] but its operands give f32\[2,4\]"),
    ("param %w : f32[3,4]", "param %w : f32[5,4]", "type", r"linear contracts f32\[2,3\] with weight"),
    ("return %1", "return %9", None, None),  # undefined output: caught by the parser
])
def test_each_rule_names_the_rule_and_the_op(old, new, rule, message):
    if rule is None:
        with pytest.raises(Exception, match=r"%9 is never defined"):
            broken(old, new)
        return
    with pytest.raises(VerifyError, match=message) as e:
        verify(broken(old, new))
    assert e.value.rule == rule
    assert str(e.value).startswith(f"verify [{rule}]")


def test_missing_required_attribute():
    g = parse("""graph @g(%x: f32[2,3]) {
  %0 = reshape %x : f32[6]
  return %0
}
""")
    with pytest.raises(VerifyError, match=r"reshape.*missing required attribute 'shape'"):
        verify(g)


def test_operand_type_must_match_its_definition():
    from waferscale.ir import Graph, Op, TensorType, Value

    x = Value("x", TensorType((2,), "f32"))
    liar = Value("x", TensorType((3,), "f32"))
    g = Graph("g", inputs=[x], ops=[Op("neg", (liar,), (), Value("0", TensorType((3,), "f32")))],
              outputs=[Value("0", TensorType((3,), "f32"))])
    with pytest.raises(VerifyError, match=r"uses %x as f32\[3\] but it is f32\[2\]"):
        verify(g)


def test_graph_must_return_something():
    from waferscale.ir import Graph

    with pytest.raises(VerifyError, match="returns nothing"):
        verify(Graph("empty"))
