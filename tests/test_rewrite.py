"""The rewriting helpers passes are written on: use-def, replace-all-uses, DCE, the fixed-point
pattern driver, and the tree matcher."""

import pytest

from waferscale.ir import parse, print_graph, verify
from waferscale.ir.pattern import P, match
from waferscale.ir.rewrite import Uses, dead_code_elimination, replace_all_uses, rewrite

G = parse("""graph @g(%x: f32[4], %y: f32[4]) {
  %0 = neg %x : f32[4]
  %1 = add %0, %y : f32[4]
  %2 = mul %1, %1 : f32[4]
  %3 = exp %0 : f32[4]
  return %2, %3
}
""")


def test_use_def():
    u = Uses(G)
    x, v0, v1, v2 = G.inputs[0], G.ops[0].result, G.ops[1].result, G.ops[2].result
    assert u.producer(x) is None and u.producer(v1).kind == "add"
    assert [op.kind for op in u.users(v0)] == ["add", "exp"] and u.only_user(v0) is None
    assert u.only_user(v1).kind == "mul"  # read twice, by one op
    assert u.only_user(v2) is None  # a graph output


def test_replace_all_uses_and_dce():
    g = replace_all_uses(G, {"1": G.inputs[1]})  # every reader of %1 reads %y instead
    assert "%2 = mul %y, %y" in print_graph(g)
    g = verify(dead_code_elimination(g))
    assert [op.kind for op in g.ops] == ["neg", "mul", "exp"]


def test_rewrite_runs_patterns_to_a_fixed_point():
    def neg_neg(op, rw):  # neg(neg(x)) -> x
        inner = rw.producer(op.operands[0]) if op.kind == "neg" else None
        return inner.operands[0] if inner is not None and inner.kind == "neg" else None

    def exp_to_mul(op, rw):  # exp(x) -> mul(x, x), only to have something that builds ops
        return rw.op("mul", op.operands[0], op.operands[0]) if op.kind == "exp" else None

    g = parse("""graph @g(%x: f32[4]) {
  %0 = neg %x : f32[4]
  %1 = neg %0 : f32[4]
  %2 = neg %1 : f32[4]
  %3 = neg %2 : f32[4]
  %4 = exp %3 : f32[4] loc("here")
  return %4
}
""")
    out, n = rewrite(g, [neg_neg, exp_to_mul])
    assert print_graph(out) == 'graph @g(%x: f32[4]) {\n  %5 = mul %x, %x : f32[4] loc("here")\n  return %5\n}\n'
    assert n == 3


def test_a_pattern_may_not_change_a_type():
    def bad(op, rw):
        return rw.op("cast", op.result, dtype="f16") if op.kind == "neg" else None

    with pytest.raises(AssertionError, match="replaced %0"):
        rewrite(parse("graph @g(%x: f32[4]) {\n  %0 = neg %x : f32[4]\n  return %0\n}\n"), [bad])


def test_the_matcher_commutes_and_binds_consistently():
    g = parse("""graph @g(%x: f32[4], %y: f32[4]) {
  %0 = constant {dtype="f32", shape=[], value=[0.5]} : f32[]
  %1 = mul %0, %x : f32[4]
  %2 = add %x, %1 : f32[4]
  %3 = add %y, %1 : f32[4]
  return %2, %3
}
""")
    u = Uses(g)
    pat = P("add", P.any("a"), P("mul", P.any("a"), P.const(0.5)))
    assert match(pat, g.ops[2].result, u.producer) == {"a": g.inputs[0]}
    assert match(pat, g.ops[3].result, u.producer) is None  # 'a' would be both %y and %x
    assert match(P("add", P.any(), P("mul", P.any(), P.const(0.25))), g.ops[2].result, u.producer) is None
