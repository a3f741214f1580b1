"""The streamed-weight (activation-stationary) GEMM (issue 27, item 4): the PE level against the tile
level, zeros never sent, the numbers of the sparse streamed kernel against the dense program, the
speed-up of 90% sparsity on a compute-bound GEMM, and which GEMMs weight streaming streams."""

import functools

import numpy as np
import pytest

from waferscale.backends.kernels.matmul import Gemm
from waferscale.backends.kernels.streamed import StreamedGemm
from waferscale.backends.machine import get_machine
from waferscale.backends.sparse import SparseWeight
from waferscale.backends.streamed import core_cycles, streamed_time, wavelet_cycles
from waferscale.driver import run_passes
from waferscale.frontend.lm import trace_lm
from waferscale.runtime.interpreter import run
from waferscale.runtime.pe_streamed import simulate_streamed
from waferscale.runtime.placed_run import run_placed

WSE2 = get_machine("wse2")


def _case(m, k, n, density, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k)).astype(np.float32)
    mask = rng.random((k, n)) < density
    return a, rng.standard_normal((k, n)).astype(np.float32) * mask, mask


@pytest.mark.parametrize("m,k,n,kp,mp,density,lanes", [
    (64, 64, 32, 4, 4, 1.0, 4.0),  # dense
    (64, 64, 32, 4, 4, 0.1, 4.0),
    (96, 96, 40, 3, 5, 0.25, 4.0),  # uneven splits
    (64, 256, 32, 8, 2, 0.1, 4.0),
    (160, 260, 43, 1, 3, 0.25, 1.0),  # f32 lanes, two passes (A beyond A_BLOCK_BYTES per core)
])
@pytest.mark.parametrize("machine", ["wse2", "wse3"])  # a WSE-3's hop is 2 cycles: delay lines (pe_links)
def test_the_pe_level_agrees_with_the_tile_level(m, k, n, kp, mp, density, lanes, machine):
    machine = get_machine(machine)
    a, w, mask = _case(m, k, n, density)
    pe = simulate_streamed(a, w, kp, mp, lanes, machine=machine)
    sw = SparseWeight("w", k, n, mask.mean(), mask) if density < 1 else None
    tile = streamed_time(m, k, n, kp, mp, lanes, sw, machine=machine).total
    assert abs(tile - pe.cycles) <= 0.05 * pe.cycles
    if density == 1.0:
        assert tile == pytest.approx(pe.cycles, abs=5)  # dense: to a few cycles
    assert np.abs(pe.c - a @ w).max() <= 1e-4 * np.abs(a @ w).max()


def test_zeros_are_never_sent_and_the_work_follows_the_nonzeros():
    a, w, mask = _case(64, 128, 40, 0.1, seed=3)
    run_ = simulate_streamed(a, w, 4, 4)
    assert run_.wavelets == int(mask.sum()) + 4 * 40  # the non-zeros and one header per column per K part
    dense = simulate_streamed(a, np.where(mask, w, 1.0).astype(np.float32), 4, 4)
    assert dense.cycles > 4 * run_.cycles
    # the cost formula: per column a task and mt add-and-forwards, per non-zero one AXPY of mt tokens
    dp = WSE2.datapath("f16")
    assert core_cycles(10, 3, 16, dp) == 3 * (8 + 16) + 10 * wavelet_cycles(16, dp)


def _gemm(k, n, density, tokens=2048, samples=64):
    sw = SparseWeight("w", k, n, density) if density < 1 else None
    g = Gemm(tokens=tokens, dtype="f16", elem=2, k=k, n=n, bias=False, flops_per_token=2.0 * k * n * density,
             sparse=sw)
    return StreamedGemm.of(g, samples)


@pytest.mark.parametrize("k,n,rows,cols", [(5120, 5120, 994, 128), (5120, 20480, 994, 256), (20480, 5120, 994, 128)])
def test_ninety_percent_sparsity_speeds_a_compute_bound_gemm_up_by_three(k, n, rows, cols):
    # 13B's GEMMs at batch 64 x 2048 tokens in weight streaming: compute-bound
    dense = _gemm(k, n, 1.0).cycles(rows, cols, 0, 2048, WSE2)
    sparse = _gemm(k, n, 0.1).cycles(rows, cols, 0, 2048, WSE2)
    assert dense[1] == sparse[1] == "compute"
    assert 3.0 <= dense[0] / sparse[0] <= 10.0


@functools.cache
def _traced(weights):
    return trace_lm("tiny", batch=2, seq=24, dtype="f32", weights=weights, seed=5)


@pytest.mark.parametrize("pipeline", [
    "canonicalize,sparsify{density=0.3},fuse,lower,place{mode=streaming},route",
    "canonicalize,fuse,lower,place{mode=streaming,streamed_gemm=all},route",
])
def test_the_streamed_kernel_computes_what_the_dense_program_does(pipeline):
    t = _traced("random")
    s = run_passes(t.graph, pipeline, batch=2, seq=24, target="mesh:13x7", weights=t.weights)
    assert any(isinstance(k.model, StreamedGemm) for k in s.program.kernels)
    ids = np.random.default_rng(1).integers(0, t.info["vocab"], (2, 24))
    feed = {t.graph.inputs[0].name: ids}
    want = run(s.graph, feed, s.weights)[0]  # the interpreter, with the pruned weights dense
    assert np.abs(run_placed(s.program, s.placement, feed, s.weights)[0] - want).max() <= 1e-5 * np.abs(want).max()


@pytest.mark.parametrize("which", ["sparse", "all", "none", "auto"])
def test_weight_streaming_chooses_the_streamed_gemms(which):
    t = _traced("meta")
    s = run_passes(t.graph, f"canonicalize,sparsify{{density=0.1,include=*.mlp.*}},fuse,lower,"
                   f"place{{mode=streaming,streamed_gemm={which}}}", batch=2, seq=24, target="mesh:64x64")
    gemms = [k.model for k in s.program.kernels if isinstance(k.model, Gemm)]
    streamed = [g for g in gemms if isinstance(g, StreamedGemm)]
    if which == "none":
        assert not streamed
    elif which == "sparse":
        assert streamed and all(g.sparse is not None for g in streamed)
        assert all(isinstance(g, StreamedGemm) for g in gemms if g.sparse is not None)
    elif which == "auto":  # 48 tokens over 64 rows: a core holds one, the stationary kernel is the faster
        assert all(isinstance(g, StreamedGemm) == (g.sparse is not None) for g in gemms)
    else:
        assert len(streamed) == len(gemms) > sum(g.sparse is not None for g in gemms)
    # pipelined placement keeps the weight-stationary GEMM
    p = run_passes(t.graph, "canonicalize,sparsify{density=0.1},fuse,lower,place{mode=pipelined}", batch=2, seq=24,
                   target="mesh:64x64")
    assert not any(isinstance(k.model, StreamedGemm) for k in p.program.kernels)


def test_auto_streams_a_dense_gemm_where_it_is_the_faster_kernel():
    """``auto`` (the default in weight-streaming mode) takes the streamed kernel for a dense GEMM when a
    core holds enough tokens to amortise an AXPY's issue over them, and the weight-stationary one when it
    holds one or two; its choice is the one the two kernels' times on the whole wafer make."""
    from waferscale.passes.streaming import streams_faster

    m = get_machine("mesh:64x64")
    t = _traced("meta")
    chosen = {}
    for batch in (2, 64):
        s = run_passes(t.graph, "canonicalize,fuse,lower,place{mode=streaming}", batch=batch, seq=24,
                       target="mesh:64x64")
        models = [k.model for k in s.program.kernels if isinstance(k.model, Gemm)]
        chosen[batch] = [isinstance(g, StreamedGemm) for g in models]
        for g in models:
            plain = Gemm(**{f: getattr(g, f) for f in Gemm.__dataclass_fields__})
            assert isinstance(g, StreamedGemm) == streams_faster(plain, StreamedGemm.of(plain, batch), m)
            fast = StreamedGemm.of(plain, batch) if isinstance(g, StreamedGemm) else plain
            slow = plain if isinstance(g, StreamedGemm) else StreamedGemm.of(plain, batch)
            assert fast.cycles(64, 64, 0, 24 * batch, m)[0] <= slow.cycles(64, 64, 0, 24 * batch, m)[0]
    assert not any(chosen[2]) and any(chosen[64])


def test_the_option_prints_only_when_not_its_default():
    from waferscale.passes import parse_pipeline, spec

    assert spec(parse_pipeline("place{mode=streaming}")) == "place{mode=streaming}"
    assert spec(parse_pipeline("place{mode=streaming,streamed_gemm=auto}")) == "place{mode=streaming}"
    text = spec(parse_pipeline("place{mode=streaming,streamed_gemm=sparse}"))
    assert text == "place{mode=streaming,streamed_gemm=sparse}"
    text = spec(parse_pipeline("place{mode=streaming,streamed_gemm=all}"))
    assert text == "place{mode=streaming,streamed_gemm=all}" and spec(parse_pipeline(text)) == text


def test_the_pe_level_takes_the_machines_queue_depth():
    """A shallower queue can only hold the weight stream back (never speed it up); 0 is refused."""
    rng = np.random.default_rng(3)
    a, w = rng.standard_normal((8, 48), dtype=np.float32), rng.standard_normal((48, 24), dtype=np.float32)
    runs = {d: simulate_streamed(a, w, 4, 2, depth=d) for d in (1, 2, 4)}
    assert runs[1].cycles >= runs[2].cycles >= runs[4].cycles
    assert all(np.array_equal(r.c, runs[4].c) for r in runs.values())
    with pytest.raises(ValueError, match="queue depth"):
        simulate_streamed(a, w, 4, 2, depth=0)


def test_a_smaller_block_of_a_takes_more_passes_and_less_sram():
    """Where the batch's resident activations leave too little room, weight streaming's ``auto`` gives the
    streamed GEMM a smaller block of A per core (``a_block``): more passes, each streaming the weights
    again, and less SRAM; the numbers do not depend on it."""
    plain = Gemm(tokens=2048, dtype="f16", elem=2, k=5120, n=5120, bias=False, flops_per_token=2 * 5120 * 5120)
    g, small = StreamedGemm.of(plain, 64), StreamedGemm.of(plain, 64, a_block=4096)
    rows, cols = 994, 100  # 132 tokens by 52 of K a core: 13.7 KB of A
    assert small.sram(rows, cols)["activations_in"] < g.sram(rows, cols)["activations_in"] <= 16 * 1024
    full, cut = g._time(rows, cols, WSE2), small._time(rows, cols, WSE2)
    assert cut.passes > full.passes and cut.total >= full.total
