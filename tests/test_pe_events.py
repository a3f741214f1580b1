"""The chain solved by event times (runtime/pe_events.py, the default engine) against the cycle
loop it replaces (engine="cycles"): the same cycle counts, the same exit cycles, the same product,
on any small shape, queue depth, datapath, sparse mask, resident A and arrival times."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waferscale.runtime import pe_events
from waferscale.runtime.pe_events import _scan
from waferscale.runtime.pe_sim import simulate_gemm, simulate_gemv


def both(a, w, rows, cols, lanes, **kw):
    ev = simulate_gemm(a, w, rows, cols, lanes, **kw)
    cy = simulate_gemm(a, w, rows, cols, lanes, engine="cycles", **kw)
    assert ev.violations == () and cy.violations == ()
    assert ev.cycles == cy.cycles
    assert np.array_equal(ev.c, cy.c)
    return ev, cy


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 4), k=st.integers(1, 40), n=st.integers(1, 40), rows=st.integers(1, 9),
       cols=st.integers(1, 9), lanes=st.sampled_from([1, 1.5, 4, 8]), depth=st.integers(1, 4),
       resident=st.booleans(), density=st.sampled_from([None, 0.0, 0.2, 0.6]), seed=st.integers(0, 99))
def test_events_take_the_cycle_loops_cycles(m, k, n, rows, cols, lanes, depth, resident, density, seed):
    rng = np.random.default_rng(seed)
    a, w = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)
    mask = None if density is None else rng.random((k, n)) < density
    both(a, w, rows, cols, lanes, depth=depth, resident_a=resident, mask=mask)


@settings(max_examples=25, deadline=None)
@given(k=st.integers(1, 40), n=st.integers(1, 30), rows=st.integers(1, 8), cols=st.integers(1, 8),
       spread=st.integers(0, 300), seed=st.integers(0, 99))
def test_events_take_the_cycle_loops_exit_cycles_with_arrivals(k, n, rows, cols, spread, seed):
    """A chained GEMV (pe_chain): each element of x enters when it arrives; each output leaves at the
    same cycle in both engines."""
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(k, dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)
    arrivals = np.sort(rng.integers(0, spread + 1, k))
    ev = simulate_gemv(x, w, rows, cols, 2, arrivals=arrivals)
    cy = simulate_gemv(x, w, rows, cols, 2, arrivals=arrivals, engine="cycles")
    assert ev.cycles == cy.cycles and np.array_equal(ev.exits, cy.exits)


@pytest.mark.parametrize("block", [7, 64, 1 << 17])
def test_blocks_of_rows_and_columns_change_nothing(monkeypatch, block):
    """A large grid runs in blocks of rows (the FMACs) and of columns (the reduce); forced small,
    uneven blocks (K and N not divisible; 24 columns in blocks of 1, 2, 3 ...) give the same cycles."""
    monkeypatch.setattr(pe_events, "BLOCK", block)
    rng = np.random.default_rng(1)
    a, w = rng.standard_normal((3, 83), dtype=np.float32), rng.standard_normal((83, 50), dtype=np.float32)
    ev, cy = both(a, w, 20, 24, 4)
    assert ev.cycles == cy.cycles > 0


def test_the_event_engine_is_chosen_for_the_chain_only():
    """check=True counts every queue every cycle: the cycle loop; the tree has its own loop."""
    rng = np.random.default_rng(2)
    a, w = rng.standard_normal((2, 12), dtype=np.float32), rng.standard_normal((12, 10), dtype=np.float32)
    assert simulate_gemm(a, w, 3, 3, 4, check=True).fabric.peak >= 1  # only the loop tracks the peak
    assert simulate_gemm(a, w, 3, 3, 4).fabric.peak == 0
    with pytest.raises(ValueError, match="unknown engine"):
        simulate_gemm(a, w, 3, 3, 4, engine="warp")


def test_a_bound_below_the_cycles_is_a_deadlock_as_in_the_loop():
    rng = np.random.default_rng(3)
    a, w = rng.standard_normal((2, 12), dtype=np.float32), rng.standard_normal((12, 10), dtype=np.float32)
    cycles = simulate_gemm(a, w, 3, 3, 4).cycles
    assert simulate_gemm(a, w, 3, 3, 4, max_cycles=cycles).cycles == cycles
    for engine in ("events", "cycles"):
        with pytest.raises(RuntimeError, match="no progress"):
            simulate_gemm(a, w, 3, 3, 4, max_cycles=cycles - 1, engine=engine)


@pytest.mark.parametrize("axis,step", [(0, 3), (1, 1)])
@pytest.mark.parametrize("shape", [(5, 7), (300, 600)])  # accumulate, doubling
def test_scan_is_the_running_max_with_a_step(axis, step, shape):
    x = np.random.default_rng(4).integers(-50, 50, shape).astype(np.int32)
    want = x.copy()
    for j in range(1, shape[axis]):
        idx = (slice(j, j + 1), slice(None)) if axis == 0 else (slice(None), slice(j, j + 1))
        prev = (slice(j - 1, j), slice(None)) if axis == 0 else (slice(None), slice(j - 1, j))
        want[idx] = np.maximum(want[idx], want[prev] + step)
    _scan(x, step, axis=axis)
    assert np.array_equal(x, want)
