"""Element streaming between kernels in the tile runtime (tile_sim.py), held to the PE level on chains
of GEMVs (runtime/pe_chain.py): a consumer starts on the first elements its producer emits, and
finishes its last element's work (then its fill) after the last arrives."""

from __future__ import annotations

import numpy as np
import pytest

from waferscale.backends.lowering import lower
from waferscale.backends.machine import get_machine
from waferscale.backends.program import Placement, Rect
from waferscale.ir import GraphBuilder
from waferscale.ir.types import TensorType
from waferscale.passes.route import route
from waferscale.runtime.pe_chain import simulate_chain
from waferscale.runtime.pe_sim import simulate_gemv
from waferscale.runtime.tile_sim import simulate


def tile_chain(dims, meshes, gap, target="mesh:16x64"):
    """The tile runtime's time for a chain of GEMVs side by side in one band, from the first one's start."""
    m = get_machine(target)
    b = GraphBuilder("chain")
    v = b.input("x", TensorType((1, 1, dims[0]), "f32"))
    for i, n in enumerate(dims[1:]):
        v = b.op("matmul", v, b.param(f"w{i}", TensorType((v.type.shape[-1], n), "f32")), loc=f"l{i}")
    prog = lower(b.output(v), 1, 1)
    rects, col = [], 0
    for r, c in meshes:
        rects.append(Rect(0, col, r, c))
        col += c + gap
    pl = Placement(m, "pipelined", tuple(rects), m.rows, tuple(0 for _ in rects))
    rt = route(prog, pl)
    sim = simulate(prog, pl, rt, chunk=1)
    assert all(k.model.reduce(r.rows, r.cols, m) == "chain" for k, r in zip(prog.kernels, rects))
    hops = {r.hops for r in rt.routes if prog.flows[r.flow].src >= 0}
    start = min(s[3] for s in sim.spans if s[0] == 0)
    return sim.cycles - start, hops.pop() if len(hops) == 1 else None, m


@pytest.mark.parametrize("dims,meshes,gap", [
    ((64, 96, 48), [(8, 8), (8, 6)], 2),  # GEMV -> GEMV
    ((256, 256, 256), [(16, 16), (16, 16)], 3),
    ((128, 512, 128), [(16, 32), (16, 8)], 1),
    ((64, 96, 48, 96), [(8, 8), (8, 6), (8, 8)], 2),  # GEMV -> GEMV -> GEMV
])
def test_streaming_chain_matches_the_pe_level(dims, meshes, gap):
    tile, hops, m = tile_chain(dims, meshes, gap)
    assert hops is not None  # one crossing length, which the PE chain takes between every two grids
    rng = np.random.default_rng(1)
    ws = [rng.standard_normal((a, b)).astype(np.float32) for a, b in zip(dims, dims[1:])]
    x = rng.standard_normal(dims[0]).astype(np.float32)
    pe = simulate_chain(x, [(w, r, c) for w, (r, c) in zip(ws, meshes)], m.datapath("f32"), hops)
    ref = x
    for w in ws:
        ref = ref @ w
    np.testing.assert_allclose(pe.y, ref, rtol=1e-3, atol=1e-2)
    assert abs(tile / pe.cycles - 1) <= 0.05, (tile, pe.cycles)
    # streaming is real: the chain beats its stages run one after another (store and forward)
    alone, y = 0, x
    for w, (r, c) in zip(ws, meshes):
        alone += simulate_gemv(y, w, r, c, m.datapath("f32")).cycles
        y = y @ w
    assert pe.cycles < alone + (len(ws) - 1) * hops


def test_arrivals_delay_a_gemv_by_its_late_elements():
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal(32).astype(np.float32), rng.standard_normal((32, 24)).astype(np.float32)
    now = simulate_gemv(x, w, 4, 4, 4, arrivals=np.zeros(32, np.int64))
    assert now.cycles == simulate_gemv(x, w, 4, 4, 4).cycles and now.exits.max() == now.cycles
    late = simulate_gemv(x, w, 4, 4, 4, arrivals=np.full(32, 100, np.int64))
    assert late.cycles == now.cycles + 100
    np.testing.assert_allclose(late.c, now.c)
