"""Element streaming between kernels in the tile runtime (tile_sim.py), held to the PE level on chains
of GEMVs (runtime/pe_chain.py): a consumer starts on the first elements its producer emits, and
finishes its last element's work (then its fill) after the last arrives. On meshes of WSE-2 cores
and of WSE-3 cores (a 2-cycle hop: the PE level's delay lines, runtime/pe_links.py)."""

from __future__ import annotations

from dataclasses import replace

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


TARGETS = ["mesh:16x64", "mesh:16x64,core=wse3"]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dims,meshes,gap", [
    ((64, 96, 48), [(8, 8), (8, 6)], 2),  # GEMV -> GEMV
    ((256, 256, 256), [(16, 16), (16, 16)], 3),
    ((128, 512, 128), [(16, 32), (16, 8)], 1),
    ((64, 96, 48, 96), [(8, 8), (8, 6), (8, 8)], 2),  # GEMV -> GEMV -> GEMV
])
def test_streaming_chain_matches_the_pe_level(dims, meshes, gap, target):
    tile, hops, m = tile_chain(dims, meshes, gap, target)
    assert hops is not None  # one crossing length, which the PE chain takes between every two grids
    rng = np.random.default_rng(1)
    ws = [rng.standard_normal((a, b)).astype(np.float32) for a, b in zip(dims, dims[1:])]
    x = rng.standard_normal(dims[0]).astype(np.float32)
    pe = simulate_chain(x, [(w, r, c) for w, (r, c) in zip(ws, meshes)], m.datapath("f32"), hops, machine=m)
    ref = x
    for w in ws:
        ref = ref @ w
    np.testing.assert_allclose(pe.y, ref, rtol=1e-3, atol=1e-2)
    assert abs(tile / pe.cycles - 1) <= 0.05, (tile, pe.cycles)
    # streaming is real: the chain beats its stages run one after another (store and forward)
    alone, y = 0, x
    for w, (r, c) in zip(ws, meshes):
        alone += simulate_gemv(y, w, r, c, m.datapath("f32"), machine=m).cycles
        y = y @ w
    assert pe.cycles < alone + (len(ws) - 1) * hops * m.hop_cycles


def test_arrivals_delay_a_gemv_by_its_late_elements():
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal(32).astype(np.float32), rng.standard_normal((32, 24)).astype(np.float32)
    now = simulate_gemv(x, w, 4, 4, 4, arrivals=np.zeros(32, np.int64))
    assert now.cycles == simulate_gemv(x, w, 4, 4, 4).cycles and now.exits.max() == now.cycles
    late = simulate_gemv(x, w, 4, 4, 4, arrivals=np.full(32, 100, np.int64))
    assert late.cycles == now.cycles + 100
    np.testing.assert_allclose(late.c, now.c)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dims,meshes,gap", [
    ((64, 96, 48), [(8, 8), 6, (8, 6)], 2),  # GEMV -> row-wise scale -> GEMV
    ((256, 256, 256), [(16, 16), 16, (16, 16)], 3),
    ((128, 512, 128), [(16, 32), 8, (16, 8)], 1),
])
def test_gemv_rowwise_gemv_streams_as_the_pe_level(dims, meshes, gap, target):
    """A row-wise scale between two GEMVs (RMSNorm's multiply by its weight, unfolded) streams: it
    takes each element as it arrives and sends the result on (``Rowwise.emit``, ``stream_tail``), so
    the chain is within 5% of the PE level, where the scale is ``pe_chain.scale_stage``."""
    m = get_machine(target)
    d0, d1, d2 = dims
    b = GraphBuilder("chain")
    v = b.input("x", TensorType((1, 1, d0), "f32"))
    v = b.op("matmul", v, b.param("w0", TensorType((d0, d1), "f32")), loc="l0")
    v = b.op("mul", v, b.param("g", TensorType((d1,), "f32")), loc="s")
    prog = lower(b.output(b.op("matmul", v, b.param("w1", TensorType((d1, d2), "f32")), loc="l1")), 1, 1)
    g1, cols, g2 = meshes
    rects = [Rect(0, 0, *g1), Rect(0, g1[1] + gap, 1, cols), Rect(0, g1[1] + cols + 2 * gap, *g2)]
    pl = Placement(m, "pipelined", tuple(rects), m.rows, (0, 0, 0))
    rt = route(prog, pl)
    sim = simulate(prog, pl, rt, chunk=1)
    assert [type(k.model).__name__ for k in prog.kernels] == ["Gemm", "Rowwise", "Gemm"]
    tile = sim.cycles - min(s[3] for s in sim.spans if s[0] == 0)
    hops = [r.hops for r in sorted(rt.routes, key=lambda r: prog.flows[r.flow].src) if prog.flows[r.flow].src >= 0]
    rng = np.random.default_rng(3)
    w0, w1 = (rng.standard_normal(s).astype(np.float32) for s in ((d0, d1), (d1, d2)))
    g, x = rng.standard_normal(d1).astype(np.float32), rng.standard_normal(d0).astype(np.float32)
    pe = simulate_chain(x, [(w0, *g1), ("scale", g, cols), (w1, *g2)], m.datapath("f32"), hops, machine=m)
    np.testing.assert_allclose(pe.y, (x @ w0 * g) @ w1, rtol=1e-3, atol=1e-2)
    assert abs(tile / pe.cycles - 1) <= 0.05, (tile, pe.cycles)
    scale = prog.kernels[1].model  # it streams; a norm (a reduction over the token) does not
    assert scale.emit(1, cols) > 0 and scale.stream_tail(1, cols, m) is not None
    assert replace(scale, op="rmsnorm").stream_tail(1, cols, m) is None


def test_the_pe_scale_stage_runs_at_the_datapaths_rate():
    """f32 goes through the datapath at Costs.f32_elem_cycles per element, f16 at one a cycle: with every
    element there from cycle 0, the f32 row finishes about one cycle per element of a core's block later."""
    from waferscale.runtime.pe_chain import scale_stage

    m = get_machine("wse2")
    arrivals = np.zeros(96, np.int64)
    f16, f32 = (scale_stage(arrivals, 6, m, m.datapath(dt)) for dt in ("f16", "f32"))
    step = m.costs.f32_elem_cycles
    assert int(f32.max()) - int(f16.max()) == (step - 1) * 16
