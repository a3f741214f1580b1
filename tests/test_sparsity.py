"""Unstructured weight sparsity (issue 12): the sparsify pass, the compressed format's bytes, the
cost from each core's own non-zeros, and the numbers of the sparse program."""

import functools
import json

import numpy as np
import pytest

from waferscale.backends import assumptions as A
from waferscale.backends.kernels.matmul import Gemm
from waferscale.backends.machine import get_machine
from waferscale.backends.sparse import SparseWeight, draw_mask, row_bytes
from waferscale.cli import main
from waferscale.driver import compile_model, run_passes
from waferscale.errors import UnsupportedError, UsageError
from waferscale.frontend.lm import trace_lm
from waferscale.ir import parse, print_graph
from waferscale.passes import parse_pipeline
from waferscale.runtime.interpreter import run
from waferscale.runtime.placed_run import run_placed

WSE2 = get_machine("wse2")


@functools.cache
def _traced(weights="random", dtype="f32"):
    return trace_lm("tiny", batch=2, seq=24, dtype=dtype, weights=weights, seed=5)


def _linears(g):
    return [op for op in g.ops if op.kind == "linear"]


# -- the pass ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,error,words", [
    ("sparsify{density=0}", UsageError, "must be in (0, 1]"),
    ("sparsify{density=1.5}", UsageError, "must be in (0, 1]"),
    ("sparsify{density=half}", UsageError, "is not a float"),
    ("sparsify{density=0.5,ops=matmul}", UnsupportedError, "not supported: sparsify ops=matmul"),
    ("sparsify{density=0.5,colour=red}", UsageError, "has no option 'colour'"),
])
def test_bad_options_are_one_clear_error(text, error, words):
    with pytest.raises(error, match=None) as e:
        parse_pipeline(text)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_a_pattern_that_chooses_nothing_is_an_error():
    t = _traced()
    with pytest.raises(UsageError, match="chose no op"):
        run_passes(t.graph, "canonicalize,sparsify{density=0.5,include=*.nothing.*}", batch=2, seq=24,
                   weights=t.weights)


def test_magnitude_pruning_records_the_density_and_keeps_the_largest():
    t = _traced()
    s = run_passes(t.graph, "canonicalize,sparsify{density=0.25}", batch=2, seq=24, weights=t.weights)
    chosen = [op for op in _linears(s.graph) if op.attr.get("density", 1.0) < 1]
    locs = {s.graph.loc(op.result) for op in chosen}
    assert len(chosen) == 8 and "lm_head" not in locs  # every linear but the tied head
    for op in chosen:
        name = op.operands[1].name
        w0, w1 = np.asarray(t.weights[name]), np.asarray(s.weights[name])
        kept = w1 != 0
        assert op.attr["density"] == pytest.approx(kept.mean()) and abs(kept.mean() - 0.25) < 0.01
        assert np.abs(w0[kept]).min() >= np.abs(w0[~kept]).max()  # by magnitude
    # the original weights are not touched
    assert all((np.asarray(t.weights[op.operands[1].name]) != 0).mean() > 0.9 for op in chosen)


def test_include_and_exclude_choose_by_module_path():
    t = _traced()
    s = run_passes(t.graph, "canonicalize,sparsify{density=0.5,include=*.mlp.*,exclude=*.h.1.*}", batch=2, seq=24,
                   weights=t.weights)
    chosen = {s.graph.loc(op.result) for op in _linears(s.graph) if op.attr.get("density", 1.0) < 1}
    assert chosen == {"transformer.h.0.mlp.c_fc", "transformer.h.0.mlp.c_proj"}


def test_density_round_trips_in_the_text_form():
    t = _traced(weights="meta", dtype="f16")
    s = run_passes(t.graph, "canonicalize,sparsify{density=0.1,seed=7}", batch=2, seq=24)
    text = print_graph(s.graph)
    assert "density=0.1" in text and "mask_seed=7" in text
    again = parse(text)
    assert print_graph(again) == text
    assert [op.attr for op in _linears(again)] == [op.attr for op in _linears(s.graph)]


def test_sparse_flops_count_the_nonzeros():
    t = _traced(weights="meta", dtype="f16")
    dense = run_passes(t.graph, "canonicalize,lower", batch=2, seq=24)
    sparse = run_passes(t.graph, "canonicalize,sparsify{density=0.25},lower", batch=2, seq=24)
    for d, s in zip(dense.program.kernels, sparse.program.kernels):
        if s.model.__class__ is Gemm and s.model.sparse is not None:
            bias = s.op.type.numel
            assert s.flops - bias == pytest.approx(0.25 * (d.flops - bias), rel=1e-6)


# -- numbers -------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["mesh:32x32", "mesh:13x7"])
def test_the_sparse_program_equals_the_dense_one_with_masked_weights(target):
    t = _traced()
    s = run_passes(t.graph, "canonicalize,sparsify{density=0.3},fuse,lower,place,route", batch=2, seq=24,
                   target=target, weights=t.weights)
    assert any(k.model.sparse is not None for k in s.program.kernels if isinstance(k.model, Gemm))
    ids = np.random.default_rng(1).integers(0, t.info["vocab"], (2, 24))
    feed = {t.graph.inputs[0].name: ids}
    want = run(t.graph, feed, s.weights)[0]  # the dense program with the masked weights
    scale = np.abs(want).max()
    assert np.abs(run(s.graph, feed, s.weights)[0] - want).max() / scale <= 1e-5
    # placed: each tile multiplied from its compressed form
    assert np.abs(run_placed(s.program, s.placement, feed, s.weights)[0] - want).max() / scale <= 1e-5
    # and it is not the dense model's answer
    assert np.abs(run(t.graph, feed, t.weights)[0] - want).max() / scale > 1e-3


# -- cost ----------------------------------------------------------------------------------------

def _gemm(k, n, tokens=64, sparse=None):
    density = sparse.density if sparse is not None else 1.0  # the registry's FLOPs count the non-zeros
    return Gemm(tokens=tokens, dtype="f16", elem=2, k=k, n=n, bias=False, flops_per_token=2.0 * k * n * density,
                sparse=sparse)


@pytest.mark.parametrize("density", [0.5, 0.25, 0.1, 0.03])
@pytest.mark.parametrize("k,n,rows,cols", [(256, 512, 1, 1), (256, 512, 4, 4), (512, 512, 16, 32),
                                           (768, 3072, 48, 96), (2048, 512, 200, 100)])
def test_speedup_is_between_one_and_one_over_density(density, k, n, rows, cols):
    sw = SparseWeight("w", k, n, density, draw_mask(k, n, density, 0, "w"))
    sparse, dense = _gemm(k, n, sparse=sw), _gemm(k, n)
    t_s = sparse.cycles(rows, cols, 0, 64, WSE2)[0]
    t_d = dense.cycles(rows, cols, 0, 64, WSE2)[0]
    assert t_d / density >= t_s * 0.999 and t_s <= t_d  # never faster than 1/density, never slower than dense
    if rows * cols == 1 and density <= 0.25:
        assert t_d / t_s > 1.5  # one big tile: the skipped zeros show (at 0.5 the indices eat the gain)


def test_a_mask_with_every_nonzero_on_one_core_is_as_slow_as_dense():
    k = n = 64
    mask = np.zeros((k, n), dtype=bool)
    mask[:16, :16] = True  # all of core (0, 0)'s tile on a 4 x 4 rectangle, nothing elsewhere
    sparse = _gemm(k, n, sparse=SparseWeight("w", k, n, mask.mean(), mask))
    assert sparse.cycles(4, 4, 0, 64, WSE2)[0] == _gemm(k, n).cycles(4, 4, 0, 64, WSE2)[0]
    spread = draw_mask(k, n, mask.mean(), 0, "w")  # the same density spread at random
    assert _gemm(k, n, sparse=SparseWeight("w", k, n, spread.mean(), spread)).cycles(4, 4, 0, 64, WSE2)[0] < \
        sparse.cycles(4, 4, 0, 64, WSE2)[0]


def test_index_overhead_is_counted_in_sram_and_streamed_bytes():
    k, n = 128, 256
    mask = draw_mask(k, n, 0.1, 3, "w")
    sw = SparseWeight("w", k, n, mask.mean(), mask)
    nnz = int(mask.sum())
    assert sw.stored_bytes(2) == nnz * (2 + A.SPARSE_INDEX_BYTES) + k * A.SPARSE_ROW_BYTES
    # one core holding all: SRAM is the compressed weight, indices and row counts included
    assert _gemm(k, n, sparse=sw).sram(1, 1)["weights"] == sw.stored_bytes(2)
    assert _gemm(k, n).sram(1, 1)["weights"] == k * n * 2
    # a row too full to gain is stored dense (no indices)
    assert row_bytes(n, n, 2) == n * 2 + A.SPARSE_ROW_BYTES and row_bytes(n // 2, n, 2) == n * 2 + A.SPARSE_ROW_BYTES


def test_the_distribution_model_follows_drawn_masks():
    dp = WSE2.datapath("f16")
    for k, n, d, rows, cols in [(768, 3072, 0.25, 48, 96), (2048, 2048, 0.1, 64, 64), (1024, 1024, 0.5, 8, 8)]:
        drawn = SparseWeight("w", k, n, d, draw_mask(k, n, d, 0, "w"))
        model = SparseWeight("w", k, n, d)
        assert model.tile(rows, cols, dp) == pytest.approx(drawn.tile(rows, cols, dp), rel=0.06)
        assert model.tile_bytes(rows, cols, 2) == pytest.approx(drawn.tile_bytes(rows, cols, 2), rel=0.06)
        assert model.stored_bytes(2) == pytest.approx(drawn.stored_bytes(2), rel=0.01)


def test_streaming_moves_fewer_bytes_when_sparse():
    t = _traced(weights="meta", dtype="f16")
    pipe = "canonicalize,{}fuse,lower,place{{mode=streaming}},route,simulate"
    dense = run_passes(t.graph, pipe.format(""), batch=2, seq=24, target="mesh:64x64")
    sparse = run_passes(t.graph, pipe.format("sparsify{density=0.1},"), batch=2, seq=24, target="mesh:64x64")
    sws = [k.model.sparse for k in sparse.program.kernels if getattr(k.model, "sparse", None) is not None]
    full = sum(sw.k * sw.n * 2 for sw in sws)
    saved = sum(g.weight_bytes for g in dense.placement.groups) - sum(g.weight_bytes for g in sparse.placement.groups)
    assert saved == full - sum(sw.stored_bytes(2) for sw in sws) and saved > 0.7 * full
    assert sparse.sim.cycles <= dense.sim.cycles


# -- the CLI -------------------------------------------------------------------------------------

def test_compile_with_sparsity_reports_its_sparse_kernels(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["compile", "tiny", "--target", "mesh:64x64", "--seq", "32", "--sparsity", "0.25", "-q",
                 "-o", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    sp = rep["sparsity"]
    assert sp["kernels"] == 8 and sp["density"] == pytest.approx(0.25, abs=0.01)
    assert sp["weight_bytes"] < sp["dense_weight_bytes"] and sp["kernel_speedup"] >= 1.0
    assert "sparsify{density=0.25" in rep["pipeline"]
    pj = json.loads((out / "placement.json").read_text())
    assert sum(1 for k in pj["kernels"] if k["sparse"]) == 8
    assert "sparse kernels" in (out / "report.txt").read_text()


@pytest.mark.parametrize("args,words", [
    (["--sparsity", "0"], "must be in (0, 1]"),
    (["--sparsity", "0.5", "-p", "canonicalize"], "with -p write sparsify{density=...}"),
])
def test_bad_sparsity_is_one_line(tmp_path, capsys, args, words):
    assert main(["compile", "tiny", "-q", "-o", str(tmp_path / "x"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_same_seed_same_report(tmp_path):
    outs = []
    for _ in range(2):
        c = compile_model("tiny", seq=32, target="mesh:64x64", sparsity=0.1, weights="meta")
        outs.append(json.dumps({k: v for k, v in c.report.items() if k not in ("compile", "host")}, sort_keys=True))
    assert outs[0] == outs[1]
    t = _traced(weights="meta", dtype="f16")

    def masks(seed):
        s = run_passes(t.graph, f"canonicalize,sparsify{{density=0.1,seed={seed}}},lower", batch=2, seq=24)
        return [k.model.sparse.mask for k in s.program.kernels if getattr(k.model, "sparse", None) is not None]
    a, b, c = masks(0), masks(0), masks(1)
    assert all((x == y).all() for x, y in zip(a, b)) and not any((x == z).all() for x, z in zip(a, c))


def test_rows_of_cores_without_rows_of_k_cost_nothing_in_distribution():
    """As many rows of cores as K plus the epilogue's units: the last rows hold no row of K, only a
    unit each, all alike (a regression: the in-distribution path divided by a zero spread there)."""
    from waferscale.backends.gemm import gemm_time, sparse_gemm_time

    dp = WSE2.datapath("f16")
    with np.errstate(divide="raise", invalid="raise"):
        t = sparse_gemm_time(128, SparseWeight("w", 64, 256, 0.25), 71, 16, dp, tail=7, tail_cycles=20)
    dense = gemm_time(128, 64 + 7, 256, 71, 16, dp)
    assert 0 < t.total <= dense.total and t.step <= dense.step
