"""The tree's fast cycle loops, fused (runtime/pe_tree_fused.py, the default engine where the event
solver does not fit) and compiled (runtime/pe_tree_jit.py, the default where numba is installed up to
256 x 256 cores, or 192 x 192 at a hop of several cycles), against the loop they stand for
(runtime/pe_tree.py, engine="cycles"): the same cycle counts and the same count of cycles phase-2
wavelets waited for phase-1 ones, on any small shape, queue depth, datapath, sparse mask, resident
A, tree or chain plan, at any hop; and through simulate_gemm the same product, with every wavelet
accounted for."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waferscale.backends.column_reduce import plan
from waferscale.backends.machine import get_machine
from waferscale.runtime import pe_tree_events, pe_tree_jit
from waferscale.runtime.pe_fabric import TreeFabric
from waferscale.runtime.pe_fmac import uint
from waferscale.runtime.pe_layout import layout
from waferscale.runtime.pe_sim import _max_cycles, simulate_gemm
from waferscale.runtime.pe_tree import run_tree
from waferscale.runtime.pe_tree_events import fits
from waferscale.runtime.pe_tree_fused import roles, run_tree_fused
from waferscale.runtime.pe_tree_jit import run_tree_jit

# the compiled loop where numba is installed (the test extra has it)
ENGINES = [run_tree_fused] + ([run_tree_jit] if pe_tree_jit.available() else [])
engines = pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.__name__)

SHAPES = dict(m=st.integers(1, 5), k=st.integers(1, 90), n=st.integers(1, 40), rows=st.integers(1, 40),
              cols=st.integers(1, 5), lanes=st.sampled_from([1, 1.5, 4, 8]), depth=st.integers(1, 4),
              resident=st.booleans(), density=st.sampled_from([None, 0.0, 0.3, 0.7]), seed=st.integers(0, 99),
              reduce=st.sampled_from(["tree", "tree", "chain"]))


DEEP = [(4, 200, 45, 25, 4, 2), (3, 400, 30, 100, 3, 4), (5, 130, 12, 130, 2, 1.5), (2, 300, 7, 150, 7, 8)]


def operands(m, k, n, density, seed):
    rng = np.random.default_rng(seed)
    a, w = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)
    return a, w, (None if density is None else rng.random((k, n)) < density)


def loop(lay, p, depth, resident):
    f = TreeFabric.empty(lay.rows, lay.cols)
    cycles, _ = run_tree(lay, f, p, depth, 2, False, _max_cycles(lay, 4), resident)
    return cycles, f.contended


@engines
@settings(max_examples=120, deadline=None)
@given(**SHAPES)
def test_the_fast_loops_take_the_loops_cycles_and_waits(engine, m, k, n, rows, cols, lanes, depth, resident, density,
                                                        seed, reduce):
    a, w, mask = operands(m, k, n, density, seed)
    lay = layout(a, w, rows, cols, lanes, mask)
    p = plan(lay.rows, reduce)
    assert roles(p) is not None  # every plan of column_reduce has the shape the fused loop takes
    assert engine(lay, p, depth, 2, _max_cycles(lay, 4), resident) == loop(lay, p, depth, resident)


@engines
@pytest.mark.parametrize("m,k,n,rows,cols,lanes", DEEP)
def test_deep_columns_where_the_solver_does_not_fit(engine, m, k, n, rows, cols, lanes):
    """Columns deep enough that pe_sim hands the tree to a fast loop (phase-2 waits included)."""
    a, w, _ = operands(m, k, n, None, 3)
    lay = layout(a, w, rows, cols, lanes)
    p = plan(lay.rows, "tree")
    got = engine(lay, p, 4, 2, _max_cycles(lay, 4), False)
    assert got == loop(lay, p, 4, False) and got[1] > 0
    if not fits(lay, p, 4):
        r = simulate_gemm(a, w, rows, cols, lanes, reduce="tree")
        assert r.cycles == got[0] and r.fabric.contended == got[1] and r.violations == ()
        assert np.array_equal(r.c, simulate_gemm(a, w, rows, cols, lanes, reduce="tree", engine="cycles").c)


@engines
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("resident", [False, True])
def test_a_countdown_wider_than_a_byte(engine, sparse, resident):
    """Elements of more than 255 datapath cycles (300 columns a core at one lane): the loop counts them
    down in uint16, where the compiled loop keeps int32 masked to that width. Sparse: every other row
    of W full (the dense AXPY, 318 cycles), the rest at 5% (indexed, some 30 cycles), so the costs
    vary across the uint8 range."""
    a, w, _ = operands(2, 30, 600, None, 5)
    mask = np.random.default_rng(5).random(w.shape) < np.where(np.arange(30) % 2 == 0, 1.0, 0.05)[:, None]
    lay = layout(a, w, 6, 2, 1, mask if sparse else None)
    assert uint(lay.peak_cycles) == np.uint16
    if sparse:
        assert lay.element_cycles.min() < 64 and lay.element_cycles.max() > 255
    p = plan(lay.rows, "tree")
    assert engine(lay, p, 4, 2, _max_cycles(lay, 4), resident) == loop(lay, p, 4, resident)


@engines
def test_a_deadlock_bound_is_kept(engine):
    a, w, _ = operands(3, 60, 20, None, 0)
    lay = layout(a, w, 12, 3, 4)
    with pytest.raises(RuntimeError, match="no progress"):
        engine(lay, plan(lay.rows, "tree"), 4, 2, 50, False)


@pytest.mark.parametrize("engine,depth", [(e, {run_tree_fused: 200}.get(e, 300)) for e in ENGINES],
                         ids=lambda x: getattr(x, "__name__", str(x)))
def test_very_deep_queues_are_left_to_the_loop(engine, depth):
    """Queues deeper than the fused loop's sentinel allows (127) or than a byte holds (the compiled
    loop's): the engine declines, simulate_gemm runs the loop itself."""
    a, w, _ = operands(2, 40, 10, None, 0)
    lay = layout(a, w, 9, 2, 4)
    assert engine(lay, plan(lay.rows, "tree"), depth, 2, _max_cycles(lay, 4), False) is None
    r = simulate_gemm(a, w, 9, 2, 4, reduce="tree", depth=depth)
    assert r.cycles == simulate_gemm(a, w, 9, 2, 4, reduce="tree", depth=depth, engine="cycles").cycles


@engines
@settings(max_examples=50, deadline=None)
@given(**SHAPES, hop=st.sampled_from([2, 3, 5]), deep=st.integers(0, 6))
def test_the_fast_loops_take_the_loops_cycles_and_waits_at_any_hop(engine, m, k, n, rows, cols, lanes, depth,
                                                                    resident, density, seed, reduce, hop, deep):
    """Links of several cycles (a WSE-3's 2): delay lines in the loop (pe_links), their rule in the fast
    loops, queues shallower than the credit round trip (2 x hop) included, where the links slow down."""
    a, w, mask = operands(m, k, n, density, seed)
    lay = layout(a, w, rows, cols, lanes, mask)
    p = plan(lay.rows, reduce)
    depth += deep
    bound = _max_cycles(lay, 4) * hop
    f = TreeFabric.empty(lay.rows, lay.cols)
    want = run_tree(lay, f, p, depth, 2, False, bound, resident, hop)[0], f.contended
    assert engine(lay, p, depth, 2, bound, resident, hop=hop) == want


@pytest.mark.parametrize("resident", [False, True])
def test_a_wse3_tree_runs_a_fast_loop(resident, monkeypatch):
    """simulate_gemm at a 2-cycle hop takes the compiled loop up to JIT_HOP_MAX_CORES cores (where numba
    is installed), else the fused loop from FUSED_HOP_MIN_CORES cores, not the loop itself (here made
    to fail): the same cycles, waits and product as engine="cycles", and no wavelet lost or
    duplicated. Below both, the loop itself."""
    a, w, _ = operands(3, 400, 30, None, 4)
    machine = get_machine("mesh:100x3,core=wse3")
    run = lambda **kw: simulate_gemm(a, w, 100, 3, machine.datapath("f16"), reduce="tree", machine=machine,
                                     resident_a=resident, **kw)
    ref = run(engine="cycles")
    assert 100 * 3 < pe_tree_events.FUSED_HOP_MIN_CORES
    fail = lambda name: lambda *args, **kw: pytest.fail(f"the {name} ran")
    with monkeypatch.context() as mp:
        mp.setattr(pe_tree_events, "run_tree_fused", fail("fused loop"))
        mp.setattr(pe_tree_events, "run_tree_jit", fail("compiled loop"))
        mp.setattr(pe_tree_events, "JIT_HOP_MAX_CORES", 0)
        assert run().cycles == ref.cycles
    monkeypatch.setattr(pe_tree_events, "run_tree", fail("loop itself"))
    fused, compiled = {"FUSED_HOP_MIN_CORES": 0, "JIT_HOP_MAX_CORES": 0}, {"run_tree_fused": fail("fused loop")}
    for patch in [fused] + ([compiled] if pe_tree_jit.available() else []):
        with monkeypatch.context() as mp:
            for name, value in patch.items():
                mp.setattr(pe_tree_events, name, value)
            fast = run()
        assert (fast.cycles, fast.fabric.contended) == (ref.cycles, ref.fabric.contended) and fast.fabric.contended > 0
        assert fast.violations == () and np.array_equal(fast.c, ref.c)


@pytest.mark.parametrize("engine", ["events", "cycles"])
def test_the_tree_loops_report_their_progress(engine, monkeypatch):
    """At a 2-cycle hop the tree runs its fused loop (engine "events", from FUSED_HOP_MIN_CORES cores,
    here 0, past the compiled loop's JIT_HOP_MAX_CORES, here 0) or the loop itself ("cycles"): each
    calls ``progress`` with the cycles done, every 1,024, until the last output is out."""
    monkeypatch.setattr(pe_tree_events, "FUSED_HOP_MIN_CORES", 0)
    monkeypatch.setattr(pe_tree_events, "JIT_HOP_MAX_CORES", 0)
    a, w, _ = operands(1, 1024, 1024, None, 0)
    machine = get_machine("mesh:16x16,core=wse3")
    seen = []
    r = simulate_gemm(a, w, 16, 16, machine.datapath("f16"), reduce="tree", machine=machine, engine=engine,
                      progress=seen.append)
    assert r.cycles > 2048 and seen == list(range(1024, r.cycles, 1024))


def test_the_hop_benchmark_runs_the_loops_on_one_case(monkeypatch):
    """benchmarks/pe_tree_hop.py (what FUSED_HOP_MIN_CORES and JIT_HOP_MAX_CORES rest on) on a small
    case: the loops ran, agreed, and the thresholds are put back."""
    import importlib.util
    from pathlib import Path

    bench = Path(__file__).resolve().parent.parent / "benchmarks"
    monkeypatch.syspath_prepend(str(bench))
    spec = importlib.util.spec_from_file_location("bench_pe_tree_hop", bench / "pe_tree_hop.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    keep = pe_tree_events.FUSED_HOP_MIN_CORES, pe_tree_events.JIT_HOP_MAX_CORES
    compiled = pe_tree_jit.available()
    row = mod.run(2, 256, 128, "mesh:16x16,core=wse3", False, 1, compiled=compiled)
    assert (pe_tree_events.FUSED_HOP_MIN_CORES, pe_tree_events.JIT_HOP_MAX_CORES) == keep
    assert row["cycles"] > 0 and row["fused_s"] > 0 and row["loop_s"] > 0 and row["cores"] == 256
    assert (row["compiled_s"] > 0) if compiled else row["compiled_s"] is None
    assert "| mesh:16x16,core=wse3 | 2x256x128 | streamed |" in mod.markdown(
        {"command": "c", "machine": "m", "fused_hop_min_cores": keep[0], "jit_max_cores": keep[1], "rows": [row]})
