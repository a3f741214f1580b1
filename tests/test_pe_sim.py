"""The PE-level simulator of the mesh GEMM: real numbers, sane cycle counts, conserved wavelets,
and the tile-level model (backends/gemm.py) held to it."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from waferscale.backends.blocks import offsets, split
from waferscale.backends.column_reduce import N2, S2, plan
from waferscale.backends.costs import DEFAULT as COSTS
from waferscale.backends.gemm import gemm_time
from waferscale.backends.machine import get_machine
from waferscale.cli import main
from waferscale.runtime.pe_events import row_arrivals
from waferscale.runtime.pe_fabric import TreeFabric
from waferscale.runtime.pe_fmac import products
from waferscale.runtime.pe_layout import layout
from waferscale.runtime.pe_sim import _max_cycles, simulate_gemm, simulate_gemv
from waferscale.runtime.pe_tree import run_tree


def operands(m, k, n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)


def rel_err(c, a, w):
    ref = a.astype(np.float64) @ w.astype(np.float64)
    return float(np.abs(c - ref).max() / np.abs(ref).max())


ODD = [  # m, k, n, rows, cols
    (1, 7, 5, 3, 2),  # GEMV, primes
    (3, 13, 11, 4, 3),  # K and N not divisible by the mesh
    (5, 37, 29, 5, 7),
    (7, 31, 23, 1, 6),  # a single row of cores
    (6, 29, 41, 9, 1),  # a single column of cores
    (2, 17, 1, 4, 4),  # n = 1: the mesh is cut to one column
    (4, 1, 19, 3, 5),  # k = 1: the mesh is cut to one row
    (1, 1, 1, 1, 1),
    (3, 5, 7, 16, 16),  # mesh larger than the matrix
    (1, 97, 89, 8, 8),
]


@pytest.mark.parametrize("m,k,n,rows,cols", ODD)
def test_product_equals_numpy_on_odd_shapes(m, k, n, rows, cols):
    a, w = operands(m, k, n)
    r = simulate_gemm(a, w, rows, cols, lanes=4, check=True)
    assert r.c.shape == (m, n) and r.c.dtype == np.float32
    assert rel_err(r.c, a, w) <= 1e-5
    assert r.violations == ()
    assert (r.rows, r.cols) == (min(rows, k), min(cols, n))


def test_gemv_is_gemm_with_one_token_and_fractional_lanes_work():
    a, w = operands(1, 53, 47, seed=3)
    v = simulate_gemv(a[0], w, 6, 5, lanes=1.5, check=True)
    g = simulate_gemm(a, w, 6, 5, lanes=1.5)
    assert v.cycles == g.cycles and np.array_equal(v.c, g.c)
    assert rel_err(v.c, a, w) <= 1e-5


def test_cycles_grow_with_k_and_shrink_with_more_cores():
    cycles_k = [simulate_gemm(*operands(4, k, 48), 4, 4, lanes=4).cycles for k in (32, 64, 128, 256)]
    assert cycles_k == sorted(cycles_k) and len(set(cycles_k)) == 4
    a, w = operands(8, 192, 192)
    cycles_mesh = [simulate_gemm(a, w, s, s, lanes=4).cycles for s in (2, 4, 8, 16)]
    assert cycles_mesh == sorted(cycles_mesh, reverse=True) and len(set(cycles_mesh)) == 4
    # More lanes, fewer cycles; never faster than the FMAC peak of the cores used (the roofline).
    for lanes in (1, 2, 4, 8):
        r = simulate_gemm(a, w, 8, 8, lanes=lanes)
        assert r.cycles >= 8 * 192 * 192 / (8 * 8 * lanes)


def test_every_router_sends_on_what_it_receives():
    m, k, n, rows, cols = 5, 37, 29, 5, 7
    r = simulate_gemm(*operands(m, k, n), rows, cols, lanes=2, check=True)
    f = r.fabric
    assert r.violations == ()
    for q in f.queues():  # all drained, and never above the queue depth
        assert not q.any()
    assert 1 <= f.peak <= 4
    ks = np.array([8, 8, 7, 7, 7])  # K = 37 over 5 rows
    ns = np.array([5, 4, 4, 4, 4, 4, 4])  # N = 29 over 7 columns
    # Row color: each router took in (from the west or the edge) and sent on every A element of its row.
    assert np.array_equal(f.row_in, np.repeat(m * ks[:, None], cols, 1))
    assert np.array_equal(f.row_in, f.row_out)
    assert np.array_equal(f.injected, m * ks)
    # Column colors: each router forwarded south all it took from its core, and to its core all it
    # took from the north; the south edge got every element of C exactly once.
    assert np.array_equal(f.col_ramp_in, np.repeat(m * ns[None, :], rows, 0))
    assert np.array_equal(f.col_ramp_in, f.col_south_out)
    assert np.array_equal(f.col_north_in, f.col_ramp_out)
    assert np.array_equal(f.col_north_in[1:], f.col_south_out[:-1]) and not f.col_north_in[0].any()
    assert np.array_equal(f.sunk, m * ns) and f.sunk.sum() == m * n


def test_conservation_check_catches_a_lost_wavelet():
    r = simulate_gemm(*operands(2, 9, 8), 3, 2, lanes=4)
    f = r.fabric
    f.col_north_in[2, 1] -= 1  # pretend one partial sum vanished on the way into router (2, 1)
    bad = f.violations(f.row_out - f.row_core_q, f.col_ramp_out - f.col_core_q)
    assert any("south link" in b for b in bad) and any("north in" in b for b in bad)


def test_shallow_queues_still_compute_the_product_only_slower():
    a, w = operands(6, 40, 30)
    deep = simulate_gemm(a, w, 4, 4, lanes=4, check=True)
    shallow = simulate_gemm(a, w, 4, 4, lanes=4, depth=1, check=True)
    assert shallow.violations == () and shallow.fabric.peak == 1
    assert np.array_equal(shallow.c, deep.c)
    assert shallow.cycles > deep.cycles


TILE_CASES = [  # m, k, n, rows, cols, lanes
    (1, 300, 200, 32, 32, 4),
    (16, 128, 96, 8, 8, 4),
    (16, 189, 50, 8, 20, 4),
    (9, 155, 73, 15, 18, 1.5),
    (32, 64, 64, 64, 8, 4),
    (12, 13, 997, 1, 31, 2),
]


@pytest.mark.parametrize("m,k,n,rows,cols,lanes", TILE_CASES)
def test_tile_level_within_ten_percent_of_pe_level(m, k, n, rows, cols, lanes):
    pe = simulate_gemm(*operands(m, k, n), rows, cols, lanes=lanes).cycles
    tile = gemm_time(m, k, n, rows, cols, lanes).total
    assert abs(tile - pe) / pe <= 0.10, (tile, pe)


def test_tile_level_is_exact_when_the_mesh_divides_the_matrix():
    for m, k, n, s in ((4, 64, 64, 8), (16, 128, 96, 8), (3, 96, 48, 12)):
        assert simulate_gemm(*operands(m, k, n), s, s, lanes=4).cycles == gemm_time(m, k, n, s, s, 4).total


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_simulate_kernel(capsys):
    code, out, _ = run_cli(capsys, "simulate-kernel", "gemm", "--m", "3", "--k", "13", "--n", "11", "--mesh", "4x3")
    assert code == 0
    # a step is the task start, 4 elements of 1 AXPY cycle and the vector overhead each, 4 partial sums
    step = 8 + 4 * (1 + COSTS.vector_issue) + 4
    assert f"tile level: {11 + 3 * step} cycles" in out and f"pe level:   {11 + 3 * step} cycles" in out
    assert "tile vs pe: +0.00%" in out
    assert "numerics: max relative error" in out and ": ok" in out and "none lost" in out
    code, out, _ = run_cli(capsys, "simulate-kernel", "gemv", "--k", "50", "--n", "40", "--mesh", "4x4",
                           "--level", "pe", "--dtype", "f32")
    assert code == 0 and "pe level" in out and "tile level" not in out
    assert "1 FMAC lane(s) per core, 4-byte accumulators" in out
    code, out, _ = run_cli(capsys, "simulate-kernel", "gemv", "--k", "512", "--n", "64", "--mesh", "32x4",
                           "--reduce", "tree", "--resident-a")
    assert code == 0 and "tree reduce, A resident" in out and "tile vs pe: +0.00%" in out
    code, out, _ = run_cli(capsys, "simulate-kernel", "gemv", "--k", "512", "--n", "64", "--mesh", "32x4",
                           "--level", "tile")
    assert code == 0 and "reduce, A streamed" in out
    code, out, _ = run_cli(capsys, "simulate-kernel", "gemm", "--m", "64", "--k", "4096", "--n", "4096",
                           "--mesh", "wse2", "--level", "tile")
    assert code == 0 and "tile level" in out and "pe level" not in out and "994x750" in out


@pytest.mark.parametrize("argv,msg", [
    (["gemv", "--m", "3", "--k", "4", "--n", "4"], "a gemv has m = 1"),
    (["gemm", "--k", "4", "--n", "4"], "needs --m"),
    (["gemm", "--m", "0", "--k", "4", "--n", "4"], "at least 1"),
    (["gemm", "--m", "1", "--k", "4", "--n", "4", "--mesh", "3by3"], "unknown target"),
    (["gemm", "--m", "1", "--k", "100000", "--n", "1000", "--mesh", "2x2", "--level", "pe"], "SRAM"),
])
def test_cli_simulate_kernel_errors_are_one_line(capsys, argv, msg):
    code, _, err = run_cli(capsys, "simulate-kernel", *argv)
    assert code == 2 and err.startswith("wafer: error:") and msg in err and err.count("\n") == 1


# -- the tree reduce (backends/column_reduce.py, runtime/pe_tree.py) and resident A --


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 7, 9, 16, 31, 64, 100, 128, 512])
def test_tree_plan_is_the_two_level_centre_rooted_tree(rows):
    p = plan(rows, "tree")
    g = max(1, round(rows ** 0.5))
    assert list(p.groups) == split(rows, g) and len(p.roots) == g
    assert all(r == s + size // 2 for r, s, size in zip(p.roots, offsets(list(p.groups)), p.groups))
    assert p.top == p.roots[g // 2] and p.order[-1] == p.top and max(map(p.passes, range(rows))) <= 4
    # every row's sums reach the column root along exactly one path, and each stream has one receiver
    for r in range(rows):
        at, seen = r, 0
        while at != p.top:
            at = next(i for i in range(rows) for kind in p.ins[i] if p.src[i][kind] == at)
            seen += 1
            assert seen <= rows
    assert sum(len(ins) for ins in p.ins) == rows - 1
    assert p.color_conflicts() == [] and len(set(p.colors().values())) <= 6
    assert plan(rows, "chain").color_conflicts() == []


TREE_ODD = ODD + [(2, 61, 37, 13, 5), (1, 250, 40, 64, 3)]


@pytest.mark.parametrize("resident", [False, True])
@pytest.mark.parametrize("m,k,n,rows,cols", TREE_ODD)
def test_tree_product_equals_numpy_on_odd_shapes(m, k, n, rows, cols, resident):
    a, w = operands(m, k, n, seed=1)
    r = simulate_gemm(a, w, rows, cols, lanes=4, check=True, reduce="tree", resident_a=resident)
    assert r.c.shape == (m, n) and r.c.dtype == np.float32
    assert rel_err(r.c, a, w) <= 1e-5
    assert r.violations == ()
    assert (r.rows, r.cols) == (min(rows, k), min(cols, n))


def test_chain_plan_on_the_tree_loop_takes_the_chain_loops_cycles():
    """The tree's loop is generic over plans: given the chain as a plan, it must reproduce the
    chain's own loop cycle for cycle and bit for bit (a check of both)."""
    for m, k, n, rows, cols in [(3, 13, 11, 4, 3), (6, 29, 41, 9, 1), (9, 155, 73, 15, 18), (1, 97, 89, 8, 8)]:
        a, w = operands(m, k, n)
        for resident in (False, True):
            lay = layout(a, w, rows, cols, 4)
            p = plan(lay.rows, "chain")
            f = TreeFabric.empty(lay.rows, lay.cols)
            cycles, progress = run_tree(lay, f, p, 4, 2, True, _max_cycles(lay, 4), resident)
            chain = simulate_gemm(a, w, rows, cols, lanes=4, resident_a=resident)
            assert cycles == chain.cycles and np.array_equal(products(lay, p), chain.c)
            assert f.violations(*progress, resident=resident) == []


def test_chain_plan_on_the_tree_loop_takes_the_chain_loops_arrivals_and_exits():
    """A GEMV fed by the kernel before it (pe_chain): the tree's loop with the chain plan, which runs
    it at hops of several cycles, injects and exits as the chain's loop does."""
    rng = np.random.default_rng(4)
    for k, n, rows, cols in [(97, 89, 8, 8), (155, 73, 15, 18), (40, 300, 5, 3)]:
        a, w = operands(1, k, n)
        arrivals = np.cumsum(rng.integers(0, 4, k)) + 7  # a producer's elements, some late
        lay = layout(a, w, rows, cols, 4)
        exits = np.zeros(n, np.int64)
        f = TreeFabric.empty(lay.rows, lay.cols)
        top = _max_cycles(lay, 4) + int(arrivals.max())
        cycles, _ = run_tree(lay, f, plan(lay.rows, "chain"), 4, 2, True, top, False,
                             avail=row_arrivals(lay, arrivals), exits=exits)
        chain = simulate_gemv(a[0], w, rows, cols, lanes=4, arrivals=arrivals, engine="cycles")
        assert cycles == chain.cycles > simulate_gemv(a[0], w, rows, cols, lanes=4).cycles
        assert np.array_equal(exits, chain.exits)


def test_tree_conserves_wavelets_and_shares_links_one_at_a_time():
    m, k, n, rows, cols = 4, 200, 45, 25, 4
    r = simulate_gemm(*operands(m, k, n), rows, cols, lanes=2, check=True, reduce="tree")  # check: <= 1 per link
    f, p = r.fabric, plan(rows, "tree")
    assert r.violations == () and f.contended > 0  # phase-2 streams did wait for phase-1 ones
    for q in f.queues():
        assert not q.any()
    ns = np.array(split(n, cols))
    assert np.array_equal(f.sunk, m * ns)
    # each core sent its one stream once per token; each router took in what it gave on
    assert np.array_equal(f.ramp_in.sum(axis=0), np.repeat(m * ns[None, :], rows, 0))
    assert np.array_equal(f.ramp_in + f.link_in, f.link_out + f.ramp_out)
    through = f.link_out[S2] - f.ramp_in[S2]  # S2 passed on by routers: between roots and below the column root
    assert set(np.flatnonzero(through[:, 0])) == set(p.through(S2))
    # the column root received four streams, a chain row at most one
    assert np.array_equal(f.ramp_out[:, p.top].sum(axis=0), 4 * m * ns)
    f.link_in[N2, 3, 1] -= 1  # pretend one phase-2 wavelet vanished on its way into router (3, 1)
    bad = f.violations(f.row_out - f.row_core_q, f.ramp_in.sum(axis=0), f.ramp_out - f.core_q, f.ramp_in > 0)
    assert any("N2: link sent" in b for b in bad) and any("router in" in b for b in bad)


def test_resident_a_moves_nothing_on_the_row_color_and_gemv_passes_the_options_on():
    x, w = operands(1, 70, 33, seed=2)
    for reduce in ("chain", "tree"):
        v = simulate_gemv(x[0], w, 9, 4, lanes=2, reduce=reduce, resident_a=True, check=True)
        g = simulate_gemm(x, w, 9, 4, lanes=2, reduce=reduce, resident_a=True)
        assert v.cycles == g.cycles and np.array_equal(v.c, g.c) and v.violations == ()
        assert not v.fabric.row_out.any() and not v.fabric.injected.any()
        streamed = simulate_gemm(x, w, 9, 4, lanes=2, reduce=reduce)
        assert v.cycles < streamed.cycles and np.array_equal(v.c, streamed.c)


TREE_TILE_CASES = [  # m, k, n, mesh, dtype, resident_a
    (1, 1, 1, "1x1", "f16", True),
    (1, 13, 997, "1x31", "f16", False),
    (1, 997, 13, "31x1", "f32", True),
    (1, 101, 103, "7x11", "f16", False),
    (1, 1000, 997, "32x31", "f16", False),
    (1, 3072, 768, "96x24", "f32", False),
    (1, 4096, 4096, "64x64", "f16", True),
    (1, 4096, 4096, "128x128", "f16", True),
    (1, 190, 474, "3x64", "f32", False),  # the narrow columns held back by the wide ones' multicast
    (4, 97, 89, "8x8", "f16", False),
    (16, 128, 96, "8x8", "f16", True),
    (9, 155, 73, "15x18", "f32", False),
    (24, 4096, 64, "64x16", "f16", False),
    (7, 13, 997, "1x31", "f16", False),
    (6, 29, 41, "9x1", "f32", True),
    (8, 2048, 2048, "128x128", "f16", True),
    (32, 773, 25, "100x31", "f16", True),
]


@pytest.mark.parametrize("m,k,n,mesh,dtype,resident", TREE_TILE_CASES)
def test_tree_tile_level_within_five_percent_of_pe_level(m, k, n, mesh, dtype, resident):
    machine = get_machine(f"mesh:{mesh}")
    dp = machine.datapath(dtype)
    pe = simulate_gemm(*operands(m, k, n), machine.rows, machine.cols, dp, reduce="tree", resident_a=resident)
    tile = gemm_time(m, k, n, machine.rows, machine.cols, dp, reduce="tree", resident_a=resident)
    assert abs(tile.total - pe.cycles) / pe.cycles <= 0.05, (tile, pe.cycles)
    if m == 1:  # a GEMV's critical path is exact
        assert tile.total == pe.cycles


def test_tree_is_faster_than_the_chain_for_a_gemv_down_a_deep_column():
    dp = get_machine("mesh:128x128").datapath("f16")
    x, w = operands(1, 4096, 4096)
    tree = simulate_gemm(x, w, 128, 128, dp, reduce="tree", resident_a=True).cycles
    chain = simulate_gemm(x, w, 128, 128, dp, resident_a=True).cycles
    # the column root's 4 passes of nt = 32 beat 3 cycles x 127 rows of the chain: 156 cycles saved
    # in the reduce, whatever the local GEMV before it costs
    assert chain - tree >= 150
    # ... but not when nt is as long as the column: at 64 x 64 (nt = 64) the chain wins
    t64 = gemm_time(1, 4096, 4096, 64, 64, dp, reduce="tree", resident_a=True).total
    assert t64 > gemm_time(1, 4096, 4096, 64, 64, dp, resident_a=True).total


def test_chain_is_faster_per_token_than_the_tree_in_steady_state():
    dp = get_machine("mesh:16x16").datapath("f16")
    per_token = {}
    for reduce in ("chain", "tree"):
        c16, c48 = (simulate_gemm(*operands(m, 256, 256), 16, 16, dp, reduce=reduce).cycles for m in (16, 48))
        per_token[reduce] = (c48 - c16) / 32
        assert per_token[reduce] == gemm_time(48, 256, 256, 16, 16, dp, reduce=reduce).step
    assert per_token["chain"] < per_token["tree"]  # 88 vs 136: one pass of nt per token against four


# -- golden cycles: 40 shapes recorded before the simulator was rewritten for speed (issue 18) --
# (their product is held to float32 rounding, not to its bits: see assert_float32_product)

GOLDEN = json.loads((Path(__file__).parent / "pe_golden.json").read_text())


@pytest.mark.parametrize("case", GOLDEN, ids=lambda c: "{m}x{k}x{n}-{rows}x{cols}-{reduce}-{dtype}".format(**c)
                         + ("-res" if c["resident_a"] else "") + f"-d{c['depth']}")
def test_cycles_match_the_recorded_golden_run_and_the_product_is_within_float32_error(case):
    """Chain and tree, A streamed and resident, f16 and f32, queue depths 4 and 1: the cycle count
    and the links the tree's phase-2 streams waited for, unchanged; C within float32 rounding."""
    c = case
    # recorded at one f32 element per cycle, the cost table before issue 27 (costs.py: now 2)
    dp = replace(get_machine(f"mesh:{c['rows']}x{c['cols']}").datapath(c["dtype"]),
                 costs=replace(COSTS, f32_elem_cycles=1.0))
    rng = np.random.default_rng(c["m"] * 1000 + c["k"])
    a = rng.standard_normal((c["m"], c["k"]), dtype=np.float32)
    w = rng.standard_normal((c["k"], c["n"]), dtype=np.float32)
    r = simulate_gemm(a, w, c["rows"], c["cols"], dp, depth=c["depth"], reduce=c["reduce"], resident_a=c["resident_a"])
    assert r.violations == ()
    assert r.cycles == c["cycles"]
    assert getattr(r.fabric, "contended", 0) == c["contended"]
    assert_float32_product(r.c, a, w)


def assert_float32_product(c, a, w):
    """C against the float64 product, element by element. Its bits are not a contract: each core's
    partial sums come from NumPy's float32 matmul, whose summation order (and so the last bits) is
    up to the BLAS that NumPy ships (a golden hash of C's bytes broke with numpy 2.4.6 while every
    cycle count held). What any order of K float32 multiply-adds guarantees is the classic bound
    |C - AW| <= gamma_K * (|A| @ |W|), gamma_K = K u / (1 - K u), u = 2**-24 (Higham, Accuracy and
    Stability of Numerical Algorithms, 3.1); the float64 reference's own error (the same bound with
    u = 2**-53; the products of float32 numbers are exact in float64) is added. The bound is per
    element and scaled by that element's |A| @ |W|, so it also catches a sum that drops or doubles a
    term of ordinary size, which a tolerance relative to max |C| may miss in a small element."""
    k = a.shape[1]
    a64, w64 = a.astype(np.float64), w.astype(np.float64)
    gamma = sum(k * u / (1 - k * u) for u in (2.0**-24, 2.0**-53))
    assert c.dtype == np.float32 and c.shape == (a.shape[0], w.shape[1])
    err, bound = np.abs(c - a64 @ w64), gamma * (np.abs(a64) @ np.abs(w64))
    assert (err <= bound).all(), float((err / np.where(bound > 0, bound, 1)).max())
@pytest.mark.parametrize("resident", [False, True])
def test_leaving_out_rows_that_cannot_act_changes_nothing(monkeypatch, resident):
    """The chain's loop leaves out the drained rows at the top and the rows still waiting for the
    reduce's first wave at the bottom (``pe_sim.SPAN``): on a tall grid, where both happen, every
    cycle count and counter is what the loop gives when it visits every row every cycle."""
    import waferscale.runtime.pe_sim as pe_sim

    a, w = operands(12, 600, 16, seed=5)
    runs = []
    for span in (pe_sim.SPAN, 10**9):
        monkeypatch.setattr(pe_sim, "SPAN", span)
        runs.append(simulate_gemm(a, w, 150, 4, lanes=4, resident_a=resident, check=True))
    cut, full = runs
    assert cut.cycles == full.cycles and np.array_equal(cut.c, full.c) and cut.violations == ()
    for name in ("row_in", "row_out", "col_ramp_in", "col_south_out", "col_north_in", "col_ramp_out", "sunk"):
        assert np.array_equal(getattr(cut.fabric, name), getattr(full.fabric, name)), name
