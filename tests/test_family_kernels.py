"""The mesh kernels of the newer families' parts held to hand counts: RMSNorm as layernorm's row
algorithm with one statistic, the rotary kernel's tables and passes, grouped-query attention's
key/value cache and stream, an elementwise op after the head split paying for every head, and
position tables that no kernel but the rotary one may read."""

import numpy as np
import pytest

from waferscale.backends import assumptions as A
from waferscale.backends.costs import DEFAULT as COSTS
from waferscale.backends.kernels.attention import Attention
from waferscale.backends.kernels.rotary import Rotary
from waferscale.backends.kernels.rowwise import (
    LN_STATS,
    Rowwise,
    element_cycles,
    layernorm_allreduce_cycles,
    layernorm_tasks,
)
from waferscale.backends.lowering import lower
from waferscale.backends.machine import WSE2, WSE3, get_machine
from waferscale.errors import UnsupportedError
from waferscale.ir import parse
from waferscale.runtime.interpreter import run
from waferscale.runtime.placed_run import run_placed


def test_rmsnorm_is_layernorms_algorithm_with_one_statistic():
    ft, lanes = 100, 4
    vec = COSTS.vector_issue + 25
    finish = element_cycles("mul") + element_cycles("add") + element_cycles("rsqrt")  # 1/f, + eps, rsqrt
    want = (COSTS.task_start + vec, COSTS.task_start + finish + 2 * vec)
    assert layernorm_tasks(ft, lanes, "rmsnorm") == want
    ln, rms = layernorm_tasks(ft, lanes), layernorm_tasks(ft, lanes, "rmsnorm")
    assert sum(rms) < sum(ln) and rms[0] < ln[0]
    assert layernorm_allreduce_cycles(8, 1) == layernorm_allreduce_cycles(8, LN_STATS) - COSTS.psum_add
    kernel = dict(tokens=256, dtype="f16", elem=2, features=4096, inputs=1, params=1, flops_per_token=4 * 4096)
    for rows, cols in [(8, 16), (64, 64), (1, 128)]:
        r = Rowwise(op="rmsnorm", **kernel).chunk(rows, cols, 0, 256, WSE2)
        n = Rowwise(op="layernorm", **kernel).chunk(rows, cols, 0, 256, WSE2)
        assert r.roofline <= r.cycles <= n.cycles
        if rows == 1:  # a long row is bound by its schedule: fewer passes and stats are fewer cycles
            assert r.cycles < 0.85 * n.cycles  # (elsewhere both meet the fabric roofline)


def test_the_rotary_kernel_computes_its_tables_once_per_token_and_rotates_each_head():
    k = Rotary(tokens=2048, dtype="f16", elem=2, heads=32, d_head=128, flops_per_token=3 * 32 * 128)
    lanes = 4  # f16 on a WSE-2
    tables = 3 * COSTS.vector_issue + 16 * (1 + 2 * A.TRANSCENDENTAL_CYCLES)  # 64 angles, their cos and sin
    head = 2 * (COSTS.vector_issue + 128 // lanes)
    for cols, heads_per_core in [(32, 1), (8, 4), (1, 32)]:
        assert k.token_cycles(cols, WSE2) == COSTS.task_start + tables + heads_per_core * head
    assert k.sram(1, 8)["weights"] == 64 * 4  # the frequencies, f32
    for rows, cols in [(16, 32), (128, 8), (1, 1)]:
        c = k.chunk(rows, cols, 0, 64, WSE3)
        assert c.cycles >= c.roofline > 0


def test_grouped_attention_keeps_each_key_value_head_once_per_column():
    full = Attention(tokens=2048, dtype="f16", elem=2, heads=32, d_head=128, causal=True)
    gqa = Attention(tokens=2048, dtype="f16", elem=2, heads=32, d_head=128, causal=True, kv_heads=8)
    assert [gqa.kv_per_column(c) for c in (32, 8, 4, 1)] == [1, 1, 2, 8]  # groups of 4 query heads
    assert gqa.sram(64, 8)["kv_cache"] * 4 == full.sram(64, 8)["kv_cache"]
    assert gqa.sram(64, 32)["kv_cache"] == full.sram(64, 32)["kv_cache"]  # one head a column either way
    w, wf = gqa.work(0, 64), full.work(0, 64)
    assert w.flops == wf.flops and w.delivered == 64 * (32 + 2 * 8) * 128 and wf.delivered == 64 * 3 * 32 * 128
    for rows, cols in [(64, 8), (256, 32)]:
        assert gqa.chunk(rows, cols, 0, 64, WSE2).cycles <= full.chunk(rows, cols, 0, 64, WSE2).cycles


GRAPH = """
graph @heads(%x: f32[1,4,6,8], %q: f32[1,4,6,8], %k: f32[1,2,6,8], %v: f32[1,2,6,8]) {
  %0 = iota {axis=1, dtype="i64", shape=[1, 6, 4]} : i64[1,6,4]
  %1 = cast %0 {dtype="f32"} : f32[1,6,4]
  %2 = constant {dtype="f32", shape=[4], value=[1.0, 0.1, 0.01, 0.001]} : f32[4]
  %3 = mul %1, %2 : f32[1,6,4]
  %4 = concat %3, %3 {axis=2} : f32[1,6,8]
  %5 = cos %4 : f32[1,6,8]
  %6 = sin %4 : f32[1,6,8]
  %7 = reshape %5 {shape=[1, 1, 6, 8]} : f32[1,1,6,8]
  %8 = reshape %6 {shape=[1, 1, 6, 8]} : f32[1,1,6,8]
  %9 = rotary %q, %7, %8 : f32[1,4,6,8]
  %10 = attention %9, %k, %v {causal=true} : f32[1,4,6,8]
  %11 = mul %x, %10 : f32[1,4,6,8]
  return %11
}
"""


def test_position_tables_are_no_kernels_and_the_placed_numbers_are_the_interpreters():
    from waferscale.driver import run_passes

    g = parse(GRAPH)
    prog = lower(g, samples=1, tokens=6)
    assert [k.op.kind for k in prog.kernels] == ["rotary", "attention", "mul"]
    rot, att, mul = (k.model for k in prog.kernels)
    assert (rot.heads, rot.d_head, att.heads, att.kv_heads) == (4, 8, 4, 2)
    assert (mul.features, mul.groups) == (8, 4)  # after the head split a token holds 4 rows of 8
    assert mul.work(0, 6).sram_write == 6 * 4 * 8 * 4
    s = run_passes(g, "lower,place,route,simulate", seq=6, target="mesh:8x8")
    rng = np.random.default_rng(0)
    feed = {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}
    (want,) = run(g, feed, {})
    (got,) = run_placed(s.program, s.placement, feed, {})
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


def test_a_kernel_other_than_rotary_may_not_read_a_position_table():
    g = parse(GRAPH.replace("%9 = rotary %q, %7, %8", "%9 = mul %q, %7"))
    with pytest.raises(UnsupportedError, match=r"reads a table computed from the positions \(%7\)"):
        lower(g, samples=1, tokens=6)


def test_a_whole_wafer_holds_the_gqa_cache_of_llama_8b_columns():
    # llama-3.1-8b's attention at 2,048 tokens on 64 rows: 32 key/value positions a core; with a head a
    # column each core keeps one key/value head's cache, 16 KiB, a third of its SRAM
    a = Attention(tokens=2048, dtype="f16", elem=2, heads=32, d_head=128, causal=True, kv_heads=8)
    assert a.sram(64, 32)["kv_cache"] == 2 * 32 * 128 * 2 == 16384 < get_machine("wse3").usable_sram_bytes
