"""Where the tree's cycle loop compiled (runtime/pe_tree_jit.py) runs: simulate_gemm's default
engine on grids of up to JIT_MAX_CORES cores (JIT_HOP_MAX_CORES at a hop of several cycles) where
numba is installed, the NumPy engines elsewhere,
with the same cycles and waits (tests/test_pe_tree_fused.py holds both fast loops to the loop itself)."""

import numpy as np
import pytest

from waferscale.backends.column_reduce import plan
from waferscale.runtime import pe_tree_events, pe_tree_jit
from waferscale.runtime.pe_fabric import TreeFabric
from waferscale.runtime.pe_layout import layout
from waferscale.runtime.pe_sim import _max_cycles
from waferscale.runtime.pe_tree import run_tree

from .test_pe_tree_fused import operands

pytestmark = pytest.mark.skipif(not pe_tree_jit.available(), reason="numba (the jit extra) is not installed")


def test_the_default_engine_runs_it_up_to_its_size(monkeypatch):
    """solve_tree hands a grid of at most JIT_MAX_CORES cores to the compiled loop, a larger one (or
    any, without numba) to the NumPy engines: the same cycles and waits either way."""
    a, w, _ = operands(3, 120, 24, None, 5)
    lay = layout(a, w, 30, 4, 4)
    p = plan(lay.rows, "tree")
    calls = []
    real = pe_tree_events.run_tree_jit
    monkeypatch.setattr(pe_tree_events, "run_tree_jit", lambda *args, **kw: calls.append(1) or real(*args, **kw))
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


def test_it_counts_its_visits():
    """stats["visits"] (benchmarks/pe_tree_profile.py): every core is visited in the first cycle, no core
    twice in a cycle, and a core asleep is not visited, so fewer visits than core-cycles."""
    a, w, _ = operands(4, 160, 40, None, 1)
    lay = layout(a, w, 10, 4, 4)
    stats = {}
    cycles, _ = pe_tree_jit.run_tree_jit(lay, plan(lay.rows, "tree"), 4, 2, _max_cycles(lay, 4), False, stats)
    assert lay.rows * lay.cols <= stats["visits"] < cycles * lay.rows * lay.cols


def test_a_dense_core_sleeps_through_its_element_ends():
    """A dense core's element ends that change no decision are made up, not visited (``_chain``):
    on the profile's 16 x 16 case (16 A elements and 16 columns a core) a core is visited 61.0
    times a token, where visiting every element end took 75.5 (benchmarks/results/pe_tree_profile.md);
    the cycles and waits stay the loop's (tests/test_pe_tree_fused.py)."""
    a, w, _ = operands(4, 256, 256, None, 0)
    lay = layout(a, w, 16, 16, 4)
    p, stats = plan(lay.rows, "tree"), {}
    got = pe_tree_jit.run_tree_jit(lay, p, 4, 2, _max_cycles(lay, 4), False, stats)
    f = TreeFabric.empty(lay.rows, lay.cols)
    assert got == (run_tree(lay, f, p, 4, 2, False, _max_cycles(lay, 4), False)[0], f.contended)
    assert stats["visits"] / (lay.rows * lay.cols * lay.m) < 65


def test_at_a_hop_of_several_cycles_it_runs_up_to_its_own_size(monkeypatch):
    """At a WSE-3's 2-cycle hop solve_tree hands a grid of at most JIT_HOP_MAX_CORES cores to the
    compiled loop, a larger one to the NumPy loops, with the same cycles and waits; past the deadlock
    bound it raises, as the loop does, even where the last wavelet is still on the link to the edge."""
    a, w, _ = operands(3, 60, 20, None, 0)
    lay = layout(a, w, 12, 3, 4)
    p, cores = plan(lay.rows, "tree"), lay.rows * lay.cols
    calls = []
    real = pe_tree_events.run_tree_jit
    monkeypatch.setattr(pe_tree_events, "run_tree_jit", lambda *args, **kw: calls.append(1) or real(*args, **kw))
    solve = lambda: pe_tree_events.solve_tree(lay, p, 4, 2, False, "events", 10**6, False, hop=2)
    monkeypatch.setattr(pe_tree_events, "JIT_HOP_MAX_CORES", cores)
    ran = solve()
    assert calls == [1]
    monkeypatch.setattr(pe_tree_events, "JIT_HOP_MAX_CORES", cores - 1)
    f, cycles, _ = solve()
    assert calls == [1] and (cycles, f.contended) == (ran[1], ran[0].contended)
    with pytest.raises(RuntimeError, match="no progress"):
        pe_tree_jit.run_tree_jit(lay, p, 4, 2, ran[1] - 1, False, hop=2)
    assert pe_tree_jit.run_tree_jit(lay, p, 4, 2, ran[1], False, hop=2) == (ran[1], ran[0].contended)
