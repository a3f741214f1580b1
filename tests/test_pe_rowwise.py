"""The PE-level layernorm (runtime/pe_rowwise.py): NumPy's numbers, the tile-level model
(backends/kernels/rowwise.py) held to its cycles, and bounds its cycles must respect."""

from dataclasses import replace
from math import ceil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waferscale.backends.blocks import split
from waferscale.backends.costs import DEFAULT as COSTS
from waferscale.backends.kernels import rowwise
from waferscale.backends.kernels.rowwise import (
    LN_STATS,
    Rowwise,
    layernorm_allreduce_cycles,
    layernorm_row,
    layernorm_tasks,
)
from waferscale.backends.machine import WSE2, WSE3, get_machine
from waferscale.runtime.pe_rowwise import simulate_layernorm, token_slots


def operands(m, f, seed=0, offset=0.5):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, f), dtype=np.float32) + np.float32(offset)
    return x, rng.standard_normal(f, dtype=np.float32), rng.standard_normal(f, dtype=np.float32)


def layernorm(x, w, b, eps=1e-5):
    x = x.astype(np.float64)
    mean = x.mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(x.var(-1, keepdims=True) + eps) * w + b


def tile_total(m, f, target, dtype="f16"):
    machine = get_machine(target)
    k = Rowwise(tokens=m, dtype=dtype, elem=2 if dtype == "f16" else 4, op="layernorm", features=f, inputs=1,
                params=2, flops_per_token=8 * f)
    return k.fill(machine.rows, machine.cols, machine) + k.model_cycles(machine.rows, machine.cols, 0, m, machine)


ODD = [  # m, f, rows, cols
    (1, 7, 1, 1),  # one core
    (5, 7, 2, 3),  # nothing divides
    (3, 13, 4, 5),  # more rows than tokens: cut to 3 rows
    (6, 29, 1, 6),  # a single row of cores
    (7, 31, 5, 1),  # a single column: no all-reduce
    (4, 3, 2, 8),  # more columns than features: cut to 3
    (9, 100, 3, 7),
    (2, 1, 2, 2),  # one feature: the output is the bias
]


@pytest.mark.parametrize("m,f,rows,cols", ODD)
def test_layernorm_equals_numpy_and_every_core_did_its_work(m, f, rows, cols):
    x, w, b = operands(m, f)
    r = simulate_layernorm(x, rows, cols, lanes=4, weight=w, bias=b, check=True)
    ref = layernorm(x, w, b)
    assert r.y.shape == (m, f) and r.y.dtype == np.float32
    assert np.abs(r.y - ref).max() <= 1e-5 * max(np.abs(ref).max(), 1)
    assert (r.rows, r.cols) == (min(rows, m), min(cols, f))
    assert 1 <= r.peak <= WSE2.pe_queue_depth
    # Each core's datapath ran exactly its tokens' two tasks and, on a row of several cores, the
    # two sends (or add-and-forwards) of the statistics per token.
    sends = LN_STATS * COSTS.psum_add if r.cols > 1 else 0
    per_token = np.array([sum(layernorm_tasks(ft, 4)) + sends for ft in split(f, r.cols)])
    tokens = np.array([len(range(i, m, r.rows)) for i in range(r.rows)])
    assert np.array_equal(r.busy, tokens[:, None] * per_token[None, :])


def test_without_weight_and_bias_and_with_f32_lanes():
    x, _, _ = operands(11, 50, seed=2, offset=3.0)  # a mean of 3 sigma: E[x^2] - mean^2 still holds in f32
    r = simulate_layernorm(x, 3, 4, lanes=1)
    ones, zeros = np.ones(50), np.zeros(50)
    assert np.abs(r.y - layernorm(x, ones, zeros)).max() <= 1e-4


SHAPES = [  # m, f, target, dtype
    (1, 7, "mesh:1x1", "f16"),
    (5, 7, "mesh:2x3", "f16"),
    (16, 96, "mesh:4x4", "f16"),
    (12, 100, "mesh:3x7", "f32"),
    (9, 300, "mesh:1x16", "f16"),  # one row, latency-bound: the buffers cannot hide the round trip
    (20, 130, "mesh:4x1", "f16"),
    (24, 768, "mesh:6x31,fmac=8", "f16"),
]


@pytest.mark.parametrize("m,f,target,dtype", SHAPES)
def test_the_tile_level_takes_the_pe_levels_cycles(m, f, target, dtype):
    machine = get_machine(target)
    r = simulate_layernorm(operands(m, f)[0], machine.rows, machine.cols, machine.datapath(dtype).rate)
    assert tile_total(m, f, target, dtype) == r.cycles


def test_one_token_takes_the_closed_form_latency():
    """Delivery (hop, ramp, ft cycles), statistics, the all-reduce, normalize, ft cycles out and a
    hop to the sink: nothing else is on the path of a token alone."""
    for f, cols in [(7, 1), (64, 4), (100, 7), (4096, 64)]:
        ft = ceil(f / cols)
        stat, norm = layernorm_tasks(ft, 4)
        hop, ramp = WSE2.hop_cycles, WSE2.ramp_cycles
        want = hop + ramp + ft + stat + layernorm_allreduce_cycles(cols) + norm + ft + hop
        assert simulate_layernorm(operands(1, f)[0], 1, cols, 4).cycles == want


@pytest.mark.parametrize("m,f,target,dtype", SHAPES)
def test_on_wse3_cores_the_tile_level_takes_the_pe_levels_cycles(m, f, target, dtype):
    """A 2-cycle hop (delay lines at the PE level, runtime/pe_links.py): source to router, the
    all-reduce's hops east and west, router to sink. Exact on these shapes (as on WSE-2 cores)."""
    machine = get_machine(f"{target},core=wse3")
    r = simulate_layernorm(operands(m, f)[0], machine.rows, machine.cols, machine.datapath(dtype).rate,
                           machine=machine, check=True)
    assert tile_total(m, f, machine.name, dtype) == r.cycles
    one_cycle_hops = simulate_layernorm(operands(m, f)[0], machine.rows, machine.cols, machine.datapath(dtype).rate)
    assert r.cycles > one_cycle_hops.cycles  # a WSE-2's hop, the same lanes


def test_a_row_whose_columns_take_their_tasks_in_different_orders():
    """61 tokens of 2,048 features on 31 x 13 WSE-3 cores (docs/fidelity.md, "Layernorm's column
    orders"): column 0 gets token 0's totals back just after token 1 is in and computes token 1's
    statistics first; the last columns hear back earlier and normalize token 0 first, so token 1's
    all-reduce waits a normalize for them. Column 0's schedule alone gave 903 cycles; every
    column's gives the PE level's 967."""
    machine = get_machine("mesh:31x13,core=wse3")
    r = simulate_layernorm(operands(61, 2048)[0], machine.rows, machine.cols, machine.datapath("f16").rate,
                           machine=machine)
    assert r.cycles == 967
    assert tile_total(61, 2048, machine.name) == r.cycles


# Rows on which a column other than column 0 decides the time, each found by a sweep against the PE
# level. Each fails if the tile level drops one rule: a task held a cycle by each add-and-forward
# that falls within it (the first three), a token's time its latest column's and not column 0's
# (the first, second and fourth), no task started in an add's cycle (the third).
OTHER_COLUMNS = [(7, 2064, "mesh:1x31,core=wse3"), (4, 1126, "mesh:1x13,core=wse3"),
                 (21, 1724, "mesh:1x64,core=wse3"), (9, 19, "mesh:8x13")]


@pytest.mark.parametrize("m,f,target", OTHER_COLUMNS)
def test_rows_whose_time_another_column_decides(m, f, target):
    machine = get_machine(target)
    r = simulate_layernorm(operands(m, f)[0], machine.rows, machine.cols, machine.datapath("f16").rate,
                           machine=machine)
    assert tile_total(m, f, machine.name) == r.cycles


@settings(max_examples=40, deadline=None, derandomize=True)
@given(m=st.integers(1, 12), f=st.integers(1, 300), rows=st.integers(1, 3), cols=st.integers(1, 9),
       core=st.sampled_from(["", ",core=wse3", ",fmac=8", ",fmac=1"]), dtype=st.sampled_from(["f16", "f32"]))
def test_the_tile_level_takes_the_pe_levels_cycles_on_any_small_shape(m, f, rows, cols, core, dtype):
    machine = get_machine(f"mesh:{rows}x{cols}{core}")
    r = simulate_layernorm(operands(m, f)[0], rows, cols, machine.datapath(dtype).rate, machine=machine)
    assert tile_total(m, f, machine.name, dtype) == r.cycles


def test_one_token_on_a_wse3_takes_the_closed_form_latency():
    for f, cols in [(7, 1), (64, 4), (100, 7), (4096, 64)]:
        ft = ceil(f / cols)
        stat, norm = layernorm_tasks(ft, 4)
        hop, ramp = WSE3.hop_cycles, WSE3.ramp_cycles
        want = hop + ramp + ft + stat + layernorm_allreduce_cycles(cols, machine=WSE3) + norm + ft + hop
        assert simulate_layernorm(operands(1, f)[0], 1, cols, 4, machine=WSE3).cycles == want


def test_cycles_respect_the_datapath_the_streams_and_the_buffers():
    """A row of K tokens can beat neither its widest core's datapath nor its streams; and a token
    holds a buffer from its first element in to its last out, so with S buffers every S tokens
    take at least one whole round trip."""
    for m, f, cols in [(12, 64, 4), (12, 4096, 64), (9, 768, 64), (10, 40, 1)]:
        r = simulate_layernorm(operands(m, f)[0], 1, cols, 4)
        ft = ceil(f / cols)
        stat, norm = layernorm_tasks(ft, 4)
        sends = LN_STATS * COSTS.psum_add if cols > 1 else 0
        assert r.cycles >= m * max(stat + norm + sends, ft)
        trip = ft + stat + layernorm_allreduce_cycles(cols) + norm + ft
        assert r.cycles >= ceil(m / token_slots(f, cols)) * trip
        assert r.slots == 4


def test_rows_are_independent_and_wide_rows_stop_helping():
    x = operands(24, 256)[0]
    one_row = simulate_layernorm(x[:6], 1, 8, 4).cycles
    assert simulate_layernorm(x, 4, 8, 4).cycles == one_row  # 24 tokens on 4 rows: 6 a row
    # One token of 4,096 features: more columns shorten the blocks until the round trip (4 cycles
    # a column) costs more than they save.
    x = operands(1, 4096)[0]
    cycles = [simulate_layernorm(x, 1, c, 4).cycles for c in (8, 16, 32, 64, 128)]
    assert cycles[:4] == sorted(cycles[:4], reverse=True) and cycles[4] > cycles[3]


def test_tile_chunks_add_up_to_the_whole():
    machine = get_machine("mesh:8x16")
    k = Rowwise(tokens=200, dtype="f16", elem=2, op="layernorm", features=1000, inputs=1, params=2,
                flops_per_token=8000)
    whole = k.model_cycles(8, 16, 0, 200, machine)
    parts = sum(k.model_cycles(8, 16, p, min(p + 24, 200), machine) for p in range(0, 200, 24))
    assert parts == pytest.approx(whole) and whole > 0


def test_bad_arguments():
    with pytest.raises(ValueError):
        simulate_layernorm(np.zeros((0, 4), np.float32), 2, 2, 4)
    with pytest.raises(ValueError):
        simulate_layernorm(np.zeros((2, 4), np.float32), 2, 2, 0)


def test_past_the_limit_a_row_is_scheduled_by_column_0_alone(monkeypatch):
    """LN_SCHEDULE_LIMIT column-tokens: beyond it the first model (column 0, its totals back
    layernorm_allreduce_cycles after its statistics), which misses the column-order case."""
    machine = get_machine("mesh:31x13,core=wse3")
    layernorm_row.cache_clear()
    monkeypatch.setattr(rowwise, "LN_SCHEDULE_LIMIT", 0)
    assert tile_total(61, 2048, machine.name) == 903
    layernorm_row.cache_clear()
    monkeypatch.undo()
    assert tile_total(61, 2048, machine.name) == 967


def test_an_add_of_several_cycles_costs_alike_in_both_schedules(monkeypatch):
    """A machine whose partial-sum add takes 3 cycles (the tile level models it; the PE level
    refuses it): on one token every column's schedule and column 0's closed form agree."""
    machine = replace(WSE2, costs=replace(WSE2.costs, psum_add=3))
    for cols in (1, 2, 5, 13, 64):
        every = layernorm_row.__wrapped__(4096, cols, 4, 4, 1, machine=machine)
        monkeypatch.setattr(rowwise, "LN_SCHEDULE_LIMIT", 0)
        assert layernorm_row.__wrapped__(4096, cols, 4, 4, 1, machine=machine) == every
        monkeypatch.undo()
        ft, (stat, norm) = ceil(4096 / cols), layernorm_tasks(ceil(4096 / cols), 4, costs=machine.costs)
        want = 2 + ft + stat + layernorm_allreduce_cycles(cols, machine=machine) + norm + ft + 1
        assert every == (want,)
