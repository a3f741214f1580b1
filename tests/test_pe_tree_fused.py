"""The tree's cycle loop fused (runtime/pe_tree_fused.py, the default engine where the event solver
does not fit) against the loop it stands for (runtime/pe_tree.py, engine="cycles"): the same cycle
counts and the same count of cycles phase-2 wavelets waited for phase-1 ones, on any small shape,
queue depth, datapath, sparse mask, resident A, tree or chain plan; and through simulate_gemm the
same product, with every wavelet accounted for."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waferscale.backends.column_reduce import plan
from waferscale.runtime.pe_fabric import TreeFabric
from waferscale.runtime.pe_layout import layout
from waferscale.runtime.pe_sim import _max_cycles, simulate_gemm
from waferscale.runtime.pe_tree import run_tree
from waferscale.runtime.pe_tree_events import fits
from waferscale.runtime.pe_tree_fused import roles, run_tree_fused

SHAPES = dict(m=st.integers(1, 5), k=st.integers(1, 90), n=st.integers(1, 40), rows=st.integers(1, 40),
              cols=st.integers(1, 5), lanes=st.sampled_from([1, 1.5, 4, 8]), depth=st.integers(1, 4),
              resident=st.booleans(), density=st.sampled_from([None, 0.0, 0.3, 0.7]), seed=st.integers(0, 99),
              reduce=st.sampled_from(["tree", "tree", "chain"]))


def operands(m, k, n, density, seed):
    rng = np.random.default_rng(seed)
    a, w = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)
    return a, w, (None if density is None else rng.random((k, n)) < density)


def loop(lay, p, depth, resident):
    f = TreeFabric.empty(lay.rows, lay.cols)
    cycles, _ = run_tree(lay, f, p, depth, 2, False, _max_cycles(lay, 4), resident)
    return cycles, f.contended


@settings(max_examples=120, deadline=None)
@given(**SHAPES)
def test_the_fused_loop_takes_the_loops_cycles_and_waits(m, k, n, rows, cols, lanes, depth, resident, density, seed,
                                                         reduce):
    a, w, mask = operands(m, k, n, density, seed)
    lay = layout(a, w, rows, cols, lanes, mask)
    p = plan(lay.rows, reduce)
    assert roles(p) is not None  # every plan of column_reduce has the shape the fused loop takes
    assert run_tree_fused(lay, p, depth, 2, _max_cycles(lay, 4), resident) == loop(lay, p, depth, resident)


@pytest.mark.parametrize("m,k,n,rows,cols,lanes", [(4, 200, 45, 25, 4, 2), (3, 400, 30, 100, 3, 4),
                                                   (5, 130, 12, 130, 2, 1.5), (2, 300, 7, 150, 7, 8)])
def test_deep_columns_where_the_solver_does_not_fit(m, k, n, rows, cols, lanes):
    """Columns deep enough that pe_sim hands the tree to the fused loop (phase-2 waits included)."""
    a, w, _ = operands(m, k, n, None, 3)
    lay = layout(a, w, rows, cols, lanes)
    p = plan(lay.rows, "tree")
    fused = run_tree_fused(lay, p, 4, 2, _max_cycles(lay, 4), False)
    assert fused == loop(lay, p, 4, False) and fused[1] > 0
    if not fits(lay, p, 4):
        r = simulate_gemm(a, w, rows, cols, lanes, reduce="tree")
        assert r.cycles == fused[0] and r.fabric.contended == fused[1] and r.violations == ()
        assert np.array_equal(r.c, simulate_gemm(a, w, rows, cols, lanes, reduce="tree", engine="cycles").c)


def test_a_deadlock_bound_is_kept():
    a, w, _ = operands(3, 60, 20, None, 0)
    lay = layout(a, w, 12, 3, 4)
    with pytest.raises(RuntimeError, match="no progress"):
        run_tree_fused(lay, plan(lay.rows, "tree"), 4, 2, 50, False)


def test_very_deep_queues_are_left_to_the_loop():
    a, w, _ = operands(2, 40, 10, None, 0)
    lay = layout(a, w, 9, 2, 4)
    assert run_tree_fused(lay, plan(lay.rows, "tree"), 200, 2, _max_cycles(lay, 4), False) is None
    r = simulate_gemm(a, w, 9, 2, 4, reduce="tree", depth=200)
    assert r.cycles == simulate_gemm(a, w, 9, 2, 4, reduce="tree", depth=200, engine="cycles").cycles
