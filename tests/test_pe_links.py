"""Links of several cycles a hop at the PE level (``runtime/pe_links.py``): a WSE-3's hop is 2 cycles
(wse3.yaml), and the GEMM's and GEMV's cycle loop (``pe_tree.run_tree``, the chain as a plan on it)
runs it with delay lines, so the tile level's WSE-3 kernels have a ground truth again."""

from dataclasses import replace

import numpy as np
import pytest

from waferscale.backends.gemm import gemm_time, sparse_gemm_time
from waferscale.backends.machine import WSE2, WSE3
from waferscale.backends.sparse import SparseWeight, draw_mask
from waferscale.runtime.pe_links import DelayLine
from waferscale.runtime.pe_sim import simulate_gemm


def operands(m, k, n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)


def hop(h: int, **kw):
    return replace(WSE2, name=f"hop-{h}", hop_cycles=h, **kw)


def test_a_wavelet_and_its_credit_each_take_a_hop():
    line = DelayLine(3, (1,))
    q = np.zeros(1, np.uint8)
    got = [int(line.push(np.array([c == 0], np.uint8))[0]) for c in range(4)]
    assert got == [0, 0, 1, 0]  # sent in cycle 0, in the queue from the start of cycle 3 (added in cycle 2)
    assert line.held[0] == 0 and line.room(q, 1)[0]
    line.push(np.array([1], np.uint8))  # sent: the sender counts its place as taken ...
    assert not line.room(q, 1)[0]
    for _ in range(2):
        line.push(np.zeros(1, np.uint8), np.array([_ == 1], np.uint8))  # ... it arrives, is taken out
    assert not line.room(q, 1)[0]  # the place is free but its credit is still on its way back
    line.push(np.zeros(1, np.uint8), np.zeros(1, np.uint8))
    assert not line.room(q, 1)[0]
    line.push(np.zeros(1, np.uint8), np.zeros(1, np.uint8))
    assert line.room(q, 1)[0]  # freed in cycle c, seen from cycle c + 3
    one = DelayLine(1, (1,))  # a one-cycle hop: no stages, the queue's own room
    sent = np.array([1], np.uint8)
    assert one.push(sent) is sent and one.room(q, 1)[0] and not one.room(q + 1, 1)[0]
    with pytest.raises(ValueError):
        DelayLine(0, (1,))


WSE3_CASES = [  # m, k, n, rows, cols, dtype
    (1, 4096, 4096, 64, 64, "f16"),
    (1, 1000, 997, 32, 31, "f16"),  # N split unevenly: the narrow columns' gain is cycles, not hops
    (1, 101, 103, 7, 11, "f32"),
    (4, 97, 89, 8, 8, "f16"),
    (9, 155, 73, 15, 18, "f32"),
    (16, 128, 96, 8, 8, "f16"),
]


@pytest.mark.parametrize("reduce", ["chain", "tree"])
@pytest.mark.parametrize("resident", [False, True])
@pytest.mark.parametrize("m,k,n,rows,cols,dtype", WSE3_CASES)
def test_on_a_wse3_the_tile_level_takes_the_pe_levels_cycles(m, k, n, rows, cols, dtype, reduce, resident):
    a, w = operands(m, k, n)
    dp = WSE3.datapath(dtype)
    pe = simulate_gemm(a, w, rows, cols, dp, reduce=reduce, resident_a=resident, machine=WSE3,
                       check=m * k * n < 10**6)
    assert pe.violations == ()
    np.testing.assert_allclose(pe.c, a @ w, rtol=1e-4, atol=1e-4 * np.sqrt(k))
    tile = gemm_time(m, k, n, rows, cols, dp, reduce=reduce, resident_a=resident, machine=WSE3)
    assert tile.total == pe.cycles, (tile, pe.cycles)


@pytest.mark.parametrize("reduce", ["chain", "tree"])
def test_each_cycle_of_a_hop_adds_one_cycle_per_hop_on_the_longest_path(reduce):
    """A GEMV whose mesh divides it, with queues that cover the credit round trip (2 x hop): the step
    is the same and the fill grows by the hops of its critical path (the chain: injector to the first
    router, along the row to the last column, down the column, out of the south edge)."""
    m, k, n, rows, cols = 1, 512, 384, 16, 12
    a, w = operands(m, k, n)
    c = [simulate_gemm(a, w, rows, cols, WSE2.datapath("f16"), reduce=reduce, machine=hop(h), depth=2 * h)
         for h in (1, 2, 3)]
    assert np.array_equal(c[0].c, c[1].c) and np.array_equal(c[0].c, c[2].c)
    assert c[2].cycles - c[1].cycles == c[1].cycles - c[0].cycles > 0
    if reduce == "chain":
        assert c[1].cycles - c[0].cycles == 1 + (cols - 1) + (rows - 1) + 1


def test_queues_shorter_than_the_credit_round_trip_slow_the_links():
    """A link runs at one wavelet a cycle only if its queue covers a wavelet there and its credit back
    (2 x hop): a 3-cycle hop with the 4-deep queues is slower than the tile level, which assumes full
    rate, and with 6 it is the tile level's; at a WSE-3's 2 cycles, 4 is enough."""
    m, k, n, rows, cols = 1, 1024, 1024, 16, 16
    a, w = operands(m, k, n)
    dp = WSE2.datapath("f16")
    for reduce in ("chain", "tree"):
        tile = gemm_time(m, k, n, rows, cols, dp, reduce=reduce, machine=hop(3)).total
        run = lambda d: simulate_gemm(a, w, rows, cols, dp, reduce=reduce, machine=hop(3), depth=d).cycles
        assert run(4) > run(6) == run(8) == tile
        two = gemm_time(m, k, n, rows, cols, dp, reduce=reduce, machine=WSE3).total
        assert simulate_gemm(a, w, rows, cols, dp, reduce=reduce, machine=WSE3, depth=4).cycles == two


@pytest.mark.parametrize("resident", [False, True])
def test_a_sparse_weight_on_a_wse3_takes_the_tile_levels_cycles(resident):
    m, k, n, rows, cols, density = 3, 512, 1024, 8, 16, 0.25
    a, w = operands(m, k, n)
    mask = draw_mask(k, n, density, 3, "w")
    dp = WSE3.datapath("f16")
    pe = simulate_gemm(a, w, rows, cols, dp, mask=mask, resident_a=resident, machine=WSE3)
    assert pe.violations == ()
    np.testing.assert_allclose(pe.c, a @ (w * mask), rtol=1e-4, atol=1e-3)
    tile = sparse_gemm_time(m, SparseWeight("w", k, n, density, mask=mask), rows, cols, dp, resident_a=resident,
                            machine=WSE3)
    assert tile.total == pe.cycles


@pytest.mark.parametrize("h", [2, 3, 12])  # 12: a credit over the row takes longer than an element
def test_the_chain_by_event_times_takes_the_delay_lines_cycles(h):
    """Two formulations of a hop of several cycles: the chain's event times (pe_events, each link's
    move and credit ``hop`` cycles) and the tree's loop with the chain as its plan (pe_tree, delay
    lines); every cycle, exit and number alike, queues from 1 to 2 x hop deep, sparse and fed."""
    rng = np.random.default_rng(h)
    machine = hop(h)
    for m, k, n, rows, cols in [(1, 300, 200, 32, 32), (16, 189, 50, 8, 20), (9, 155, 73, 15, 18), (6, 29, 41, 9, 1),
                                (4, 64, 2, 4, 1)]:  # (one column: only the injector holds back the row)
        a, w = operands(m, k, n, seed=k)
        for resident in (False, True):
            for depth in (1, 2, 2 * h):
                mask = draw_mask(k, n, 0.2, 1, "w") if depth == 2 else None
                kw = {"resident_a": resident, "machine": machine, "depth": depth, "mask": mask}
                events = simulate_gemm(a, w, rows, cols, 4, **kw)
                loop = simulate_gemm(a, w, rows, cols, 4, engine="cycles", **kw)
                assert events.cycles == loop.cycles and np.array_equal(events.c, loop.c)
                assert events.violations == loop.violations == ()
        if m == 1:  # a GEMV fed by the kernel before it (pe_chain)
            arrivals = np.cumsum(rng.integers(0, 4, k)) + 5
            events, loop = (simulate_gemm(a, w, rows, cols, 4, machine=machine, arrivals=arrivals, engine=e)
                            for e in ("events", "cycles"))
            assert events.cycles == loop.cycles and np.array_equal(events.exits, loop.exits)
