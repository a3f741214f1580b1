"""The tree reduce solved by event times (runtime/pe_tree_events.py, the default engine where it
fits) against the cycle loop it replaces (engine="cycles"): the same cycle counts, the same count of
cycles phase-2 wavelets waited for phase-1 ones, the same product, on any small shape, queue
depth, datapath, sparse mask and resident A; and the solver, called directly, gives the loop's
answer or none (then pe_sim runs the loop), never another."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waferscale.backends.column_reduce import plan
from waferscale.runtime.pe_fabric import TreeFabric
from waferscale.runtime.pe_layout import layout
from waferscale.runtime.pe_sim import _max_cycles, simulate_gemm
from waferscale.runtime.pe_tree_events import fits, run_tree_events

SHAPES = dict(m=st.integers(1, 5), k=st.integers(1, 60), n=st.integers(1, 40), rows=st.integers(1, 19),
              cols=st.integers(1, 5), lanes=st.sampled_from([1, 1.5, 4, 8]), depth=st.integers(1, 4),
              resident=st.booleans(), density=st.sampled_from([None, 0.0, 0.3, 0.7]), seed=st.integers(0, 99))


def operands(m, k, n, density, seed):
    rng = np.random.default_rng(seed)
    a, w = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)
    return a, w, (None if density is None else rng.random((k, n)) < density)


@settings(max_examples=80, deadline=None)
@given(**SHAPES)
def test_the_event_solver_takes_the_loops_cycles_or_none(m, k, n, rows, cols, lanes, depth, resident, density, seed):
    a, w, mask = operands(m, k, n, density, seed)
    cy = simulate_gemm(a, w, rows, cols, lanes, reduce="tree", depth=depth, resident_a=resident, mask=mask,
                       engine="cycles")
    lay = layout(a, w, rows, cols, lanes, mask)
    f = TreeFabric.empty(lay.rows, lay.cols)
    done = run_tree_events(lay, f, plan(lay.rows, "tree"), depth, 2, _max_cycles(lay, 4), resident)
    if done is not None:
        cycles, progress = done
        assert cycles == cy.cycles
        assert f.contended == cy.fabric.contended
        assert f.violations(*progress, resident=resident) == []


@settings(max_examples=40, deadline=None)
@given(**SHAPES)
def test_simulate_gemm_gives_the_loops_cycles_on_either_engine(m, k, n, rows, cols, lanes, depth, resident, density,
                                                               seed):
    a, w, mask = operands(m, k, n, density, seed)
    kw = dict(reduce="tree", depth=depth, resident_a=resident, mask=mask)
    ev = simulate_gemm(a, w, rows, cols, lanes, **kw)
    cy = simulate_gemm(a, w, rows, cols, lanes, engine="cycles", **kw)
    assert ev.violations == () and cy.violations == ()
    assert ev.cycles == cy.cycles and ev.fabric.contended == cy.fabric.contended
    assert np.array_equal(ev.c, cy.c)


@pytest.mark.parametrize("m,k,n,rows,cols,lanes", [(4, 200, 45, 25, 4, 2), (16, 1024, 1024, 64, 64, 4),
                                                   (6, 300, 90, 30, 6, 1.5), (3, 50, 20, 9, 3, 4)])
def test_the_solver_itself_solves_the_mesh_cases(m, k, n, rows, cols, lanes):
    """Not the loop in disguise: on these (the 64 x 64 one is benchmarks/pe_speed.py's) the solver
    finds the loop's cycles and waits itself, phase-2 waits included."""
    a, w, _ = operands(m, k, n, None, 1)
    lay = layout(a, w, rows, cols, lanes)
    p = plan(lay.rows, "tree")
    assert fits(lay, p, 4)
    f = TreeFabric.empty(lay.rows, lay.cols)
    done = run_tree_events(lay, f, p, 4, 2, _max_cycles(lay, 4), False)
    cy = simulate_gemm(a, w, rows, cols, lanes, reduce="tree", engine="cycles")
    assert done is not None and done[0] == cy.cycles and f.contended == cy.fabric.contended
