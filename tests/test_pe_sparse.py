"""The PE-level simulator with a sparse weight (each core's cycles per A element from its own tile
row's non-zeros, ``backends/sparse.py``) and the tile model of sparsity (``gemm.sparse_gemm_time``)
held to it."""

import numpy as np
import pytest

from waferscale.backends import assumptions as A
from waferscale.backends.blocks import offsets, split
from waferscale.backends.costs import DEFAULT as COSTS
from waferscale.backends.gemm import element_cycles, gemm_time, sparse_gemm_time
from waferscale.backends.machine import WSE2, get_machine
from waferscale.backends.sparse import SparseWeight, draw_mask, row_cycles
from waferscale.cli import main
from waferscale.runtime.pe_sim import simulate_gemm

F16 = get_machine("mesh:8x8").datapath("f16")
F32 = get_machine("mesh:8x8").datapath("f32")


def operands(m, k, n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)


def one_tile(k, n, rows, cols, i, j):
    """A mask whose non-zeros fill the tile of core (i, j) of the PE layout, and nothing else."""
    ks, ns = split(k, rows), split(n, cols)
    ko, no = offsets(ks)[i], offsets(ns)[j]
    mask = np.zeros((k, n), bool)
    mask[ko:ko + ks[i], no:no + ns[j]] = True
    return mask


@pytest.mark.parametrize("m,k,n,rows,cols,reduce,resident", [
    (1, 7, 5, 3, 2, "chain", False),
    (3, 13, 11, 4, 3, "chain", False),
    (5, 37, 29, 5, 7, "chain", True),
    (2, 17, 1, 4, 4, "chain", False),
    (4, 1, 19, 3, 5, "chain", False),
    (6, 29, 41, 9, 1, "tree", False),
    (3, 40, 23, 7, 3, "tree", True),
])
@pytest.mark.parametrize("density", [0.5, 0.1, 0.0])
def test_sparse_product_is_the_masked_product(m, k, n, rows, cols, reduce, resident, density):
    a, w = operands(m, k, n)
    mask = draw_mask(k, n, density, 0, "w")
    r = simulate_gemm(a, w, rows, cols, F16, mask=mask, reduce=reduce, resident_a=resident, check=True)
    ref = a.astype(np.float64) @ (w * mask)
    assert r.violations == ()
    assert np.abs(r.c - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())
    if density == 0:
        assert not r.c.any()  # every element skipped: nothing multiplied
    # sparse=True takes the non-zeros of w itself: the same run
    s = simulate_gemm(a, np.where(mask, w, 0), rows, cols, F16, sparse=True, reduce=reduce, resident_a=resident)
    assert s.cycles == r.cycles and np.array_equal(s.c, r.c)


def test_rows_too_full_for_their_indices_run_dense_and_a_sparser_row_pays_its_index():
    """A tile row is stored and multiplied dense once its values and indices would take no fewer
    bytes than its dense values (``sparse.dense_row``): an all-ones mask costs exactly the dense
    GEMM. Just below that (f16: fewer than half the row), the indexed AXPY reads 4 bytes a weight
    (value + 16-bit index) where the dense one reads 2, so it takes as many port cycles as the
    dense row: never more, no gain; sparser rows gain."""
    m, k, n, s = 3, 64, 64, 4
    a, w = operands(m, k, n)
    kt, nt = k // s, n // s
    dense = simulate_gemm(a, w, s, s, F16)
    assert dense.cycles == gemm_time(m, k, n, s, s, F16).total
    ones = simulate_gemm(a, w, s, s, F16, mask=np.ones((k, n), bool))
    assert ones.cycles == dense.cycles and np.array_equal(ones.c, dense.c)
    for per_row, gain in ((nt // 2 - 1, 0), (nt // 4, (nt // 4 - nt // 8) * kt * m)):
        mask = np.zeros((k, n), bool)
        for j in range(s):  # per_row non-zeros in every tile row
            mask[:, j * nt:j * nt + per_row] = True
        assert int(row_cycles(per_row, F16, nt)) == COSTS.vector_issue + -(-per_row * 4 // 8)
        r = simulate_gemm(a, w, s, s, F16, mask=mask)
        assert dense.cycles - r.cycles == gain, per_row
    assert element_cycles(nt, F16) == COSTS.vector_issue + nt // 4


def test_an_empty_tile_row_is_skipped():
    """One core: its cycles are the task start, each element's ``row_cycles`` (an empty row: the
    skip), the add-and-forward of its sums and the edges' stages."""
    m, k, n = 1, 12, 8
    a, w = operands(m, k, n)
    edges = 2 * WSE2.hop_cycles + WSE2.ramp_cycles
    mask = np.ones((k, n), bool)
    mask[[2, 5, 6]] = False  # three empty rows
    mask[9, 1:] = False  # one row with a single non-zero
    r = simulate_gemm(a, w, 1, 1, F16, mask=mask)
    per_row = row_cycles(mask.sum(axis=1), F16, n)
    assert list(per_row[[2, 5, 6]]) == [A.SPARSE_SKIP_CYCLES] * 3
    assert r.cycles == edges + COSTS.task_start + int(per_row.sum()) + n * COSTS.psum_add
    empty = simulate_gemm(a, w, 1, 1, F16, mask=np.zeros((k, n), bool))
    assert empty.cycles == edges + COSTS.task_start + k * A.SPARSE_SKIP_CYCLES + n * COSTS.psum_add
    assert empty.cycles < simulate_gemm(a, w, 1, 1, F16).cycles


def test_the_core_holding_all_non_zeros_sets_the_pace_and_its_place_the_fill():
    m, k, n, rows, cols = 4, 96, 96, 6, 8
    a, w = operands(m, k, n)
    kt, nt = k // rows, n // cols
    full = COSTS.task_start + kt * int(row_cycles(nt, F16, nt)) + nt  # the full core's step
    runs = {}
    for at in ((0, cols - 1), (rows - 1, 0), (2, 3)):
        mask = one_tile(k, n, rows, cols, *at)
        short, long_ = (simulate_gemm(a[:t], w, rows, cols, F16, mask=mask) for t in (2, 4))
        assert long_.cycles - short.cycles == 2 * full  # the full core paces every token
        tile = sparse_gemm_time(m, SparseWeight("w", k, n, 1 / (rows * cols), mask=mask), rows, cols, F16)
        assert tile.step == full and tile.total == long_.cycles
        runs[at] = long_.cycles
    # its path to the south edge: (cols - 1) hops east of the first column, 3 cycles per row below it
    assert runs[(0, cols - 1)] - runs[(rows - 1, 0)] == (cols - 1) * WSE2.hop_cycles + (rows - 1) * 3
    # as slow as the dense GEMM: one core does all the work of its tile
    assert runs[(0, cols - 1)] == simulate_gemm(a, w, rows, cols, F16).cycles


TILE_CASES = [  # m, k, n, rows, cols, density
    (1, 256, 256, 4, 4, 0.25),
    (1, 1024, 1024, 16, 16, 0.03),
    (1, 2048, 512, 32, 8, 0.1),
    (3, 512, 1024, 8, 16, 0.5),
    (8, 768, 768, 12, 12, 0.1),
    (5, 300, 200, 10, 10, 0.25),
]


@pytest.mark.parametrize("m,k,n,rows,cols,density", TILE_CASES)
@pytest.mark.parametrize("resident", [False, True])
def test_tile_model_of_a_sparse_gemm_matches_the_pe_level(m, k, n, rows, cols, density, resident):
    """The exact-mask tile model (each core's step from its tile, the latest core's path) against the
    PE level: within 0.5% (exact on most shapes; benchmarks/fidelity.py has the figures)."""
    a, w = operands(m, k, n, seed=m + k)
    mask = draw_mask(k, n, density, 3, "w")
    pe = simulate_gemm(a, w, rows, cols, F16, mask=mask, resident_a=resident).cycles
    tile = sparse_gemm_time(m, SparseWeight("w", k, n, density, mask=mask), rows, cols, F16, resident_a=resident)
    assert abs(tile.total - pe) / pe <= 0.005, (tile, pe)
    # the in-distribution model (no mask) is near the drawn mask's
    dist = sparse_gemm_time(m, SparseWeight("w", k, n, density), rows, cols, F16, resident_a=resident)
    assert abs(dist.total - tile.total) / tile.total <= 0.02, (dist, tile)


def test_uneven_n_the_tile_model_takes_the_mask_mirrored():
    """The PE layout puts the wider N blocks first, the kernel (and ``SparseWeight``) the narrower:
    mirrored in N the mask gives every core the same tile, up to the column it sits in."""
    m, k, n, rows, cols = 2, 200, 197, 10, 15
    a, w = operands(m, k, n)
    mask = draw_mask(k, n, 0.1, 1, "w")
    pe = simulate_gemm(a, w, rows, cols, F16, mask=mask).cycles
    tile = sparse_gemm_time(m, SparseWeight("w", k, n, 0.1, mask=mask[:, ::-1].copy()), rows, cols, F16)
    assert abs(tile.total - pe) <= cols, (tile, pe)


def test_bad_mask_shape_is_one_clear_error():
    a, w = operands(1, 8, 6)
    with pytest.raises(ValueError, match="the mask is 6x8 and W is 8x6"):
        simulate_gemm(a, w, 2, 2, F16, mask=np.ones((6, 8), bool))


def test_sparse_tile_counts_its_index_in_sram():
    a, w = operands(1, 64, 64)
    dense = simulate_gemm(a, w, 2, 2, F16)
    mask = np.zeros((64, 64), bool)
    mask[:, ::8] = True  # 4 non-zeros per tile row
    sparse = simulate_gemm(a, w, 2, 2, F16, mask=mask)
    tile = 32 * 4 * (4 + A.SPARSE_INDEX_BYTES) + 32 * A.SPARSE_ROW_BYTES
    assert dense.sram_bytes_per_core - sparse.sram_bytes_per_core == 4 * 32 * 32 - tile


def test_cli_simulate_kernel_with_a_density(capsys):
    assert main(["simulate-kernel", "gemm", "--m", "2", "--k", "96", "--n", "80", "--mesh", "6x5",
                 "--density", "0.2", "--seed", "4"]) == 0
    out = capsys.readouterr().out
    mask = draw_mask(96, 80, 0.2, 4, "w")
    a, w = (np.random.default_rng(4).standard_normal(s, dtype=np.float32) for s in ((2, 96), (96, 80)))
    pe = simulate_gemm(a, w, 6, 5, F16, mask=mask).cycles
    assert "sparse W, density 0.2 (mask, seed 4); chain reduce" in out
    assert f"pe level:   {pe} cycles" in out and "tile vs pe: +0.00%" in out and "numerics" in out and ": ok" in out
    # beyond SPARSE_DRAW_LIMIT the tile level takes the weight in distribution, as lowering does
    assert main(["simulate-kernel", "gemv", "--k", "4096", "--n", "4096", "--mesh", "wse2", "--density", "0.1",
                 "--level", "tile"]) == 0
    assert "(in distribution, seed 0)" in capsys.readouterr().out


@pytest.mark.parametrize("argv,msg", [
    (["--density", "1.5"], "--density is the fraction of W's weights kept, from 0 to 1"),
    (["--density", "0.5", "--reduce", "tree"], "not supported: sparse weights with the tree reduce"),
])
def test_cli_density_errors_are_one_line(capsys, argv, msg):
    code = main(["simulate-kernel", "gemv", "--k", "64", "--n", "64", *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("wafer: error:") and msg in err and err.count("\n") == 1
