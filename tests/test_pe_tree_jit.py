"""The tree's cycle loop compiled (runtime/pe_tree_jit.py, the default engine up to 256 x 256 cores
where numba is installed) against the loop it stands for (runtime/pe_tree.py, engine="cycles"): the
same cycle counts and the same count of cycles phase-2 wavelets waited for phase-1 ones, on any small
shape, queue depth, datapath, sparse mask, resident A, tree or chain plan; through simulate_gemm the
same product with every wavelet accounted for; and the NumPy engines where it does not run."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waferscale.backends.column_reduce import plan
from waferscale.runtime import pe_tree_events, pe_tree_jit
from waferscale.runtime.pe_fabric import TreeFabric
from waferscale.runtime.pe_layout import layout
from waferscale.runtime.pe_sim import _max_cycles, simulate_gemm
from waferscale.runtime.pe_tree import run_tree
from waferscale.runtime.pe_tree_jit import run_tree_jit

pytestmark = pytest.mark.skipif(not pe_tree_jit.available(), reason="numba (the jit extra) is not installed")

SHAPES = dict(m=st.integers(1, 5), k=st.integers(1, 90), n=st.integers(1, 40), rows=st.integers(1, 40),
              cols=st.integers(1, 6), lanes=st.sampled_from([1, 1.5, 4, 8]), depth=st.integers(1, 4),
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
def test_the_compiled_loop_takes_the_loops_cycles_and_waits(m, k, n, rows, cols, lanes, depth, resident, density, seed,
                                                            reduce):
    a, w, mask = operands(m, k, n, density, seed)
    lay = layout(a, w, rows, cols, lanes, mask)
    p = plan(lay.rows, reduce)
    assert run_tree_jit(lay, p, depth, 2, _max_cycles(lay, 4), resident) == loop(lay, p, depth, resident)


@pytest.mark.parametrize("m,k,n,rows,cols,lanes", [(4, 200, 45, 25, 4, 2), (3, 400, 30, 100, 3, 4),
                                                   (5, 130, 12, 130, 2, 1.5), (2, 300, 7, 150, 7, 8)])
def test_deep_columns_with_phase_2_waits(m, k, n, rows, cols, lanes):
    """Deep columns (phase-2 waits included), and simulate_gemm's default engine is this loop there."""
    a, w, _ = operands(m, k, n, None, 3)
    lay = layout(a, w, rows, cols, lanes)
    p = plan(lay.rows, "tree")
    got = run_tree_jit(lay, p, 4, 2, _max_cycles(lay, 4), False)
    assert got == loop(lay, p, 4, False) and got[1] > 0
    r = simulate_gemm(a, w, rows, cols, lanes, reduce="tree")
    cy = simulate_gemm(a, w, rows, cols, lanes, reduce="tree", engine="cycles")
    assert (r.cycles, r.fabric.contended) == got and r.violations == ()
    assert np.array_equal(r.c, cy.c)


def test_the_default_engine_runs_it_up_to_its_size(monkeypatch):
    """solve_tree hands a grid of at most JIT_MAX_CORES cores to the compiled loop, a larger one (or
    any, without numba) to the NumPy engines: the same cycles and waits either way."""
    a, w, _ = operands(3, 120, 24, None, 5)
    lay = layout(a, w, 30, 4, 4)
    p = plan(lay.rows, "tree")
    calls = []
    real = pe_tree_events.run_tree_jit
    monkeypatch.setattr(pe_tree_events, "run_tree_jit", lambda *args: calls.append(1) or real(*args))
    ran = pe_tree_events.solve_tree(lay, p, 4, 2, False, "events", _max_cycles(lay, 4), False)
    assert calls == [1]
    monkeypatch.setattr(pe_tree_events, "JIT_MAX_CORES", lay.rows * lay.cols - 1)
    big = pe_tree_events.solve_tree(lay, p, 4, 2, False, "events", _max_cycles(lay, 4), False)
    monkeypatch.setattr(pe_tree_events, "JIT_MAX_CORES", 10**9)
    monkeypatch.setattr(pe_tree_events, "available", lambda: False)
    without = pe_tree_events.solve_tree(lay, p, 4, 2, False, "events", _max_cycles(lay, 4), False)
    assert calls == [1]
    for f, cycles, _ in (big, without):
        assert (cycles, f.contended) == (ran[1], ran[0].contended)
        assert np.array_equal(f.link_out, ran[0].link_out)


def test_a_deadlock_bound_is_kept():
    a, w, _ = operands(3, 60, 20, None, 0)
    lay = layout(a, w, 12, 3, 4)
    with pytest.raises(RuntimeError, match="no progress"):
        run_tree_jit(lay, plan(lay.rows, "tree"), 4, 2, 50, False)


def test_what_it_does_not_hold_is_left_to_the_other_engines():
    a, w, _ = operands(2, 40, 10, None, 0)
    lay = layout(a, w, 9, 2, 4)
    assert run_tree_jit(lay, plan(lay.rows, "tree"), 300, 2, _max_cycles(lay, 4), False) is None  # over a byte
    r = simulate_gemm(a, w, 9, 2, 4, reduce="tree", depth=300)
    assert r.cycles == simulate_gemm(a, w, 9, 2, 4, reduce="tree", depth=300, engine="cycles").cycles
