"""Fidelity of the tile model of a sparse weight against the PE-level simulator (issue 12).

    python benchmarks/fidelity_sparse.py

Runs sparse GEMVs and GEMMs (f16, densities 0.5, 0.25, 0.1 and 0.03, a seeded random mask of
``backends/sparse.draw_mask``, meshes from 4 x 4 to 64 x 64, the chain reduce) through three models
and prints a Markdown table:

- the PE level (``runtime/pe_sim.simulate_gemm(..., mask=)``): every core's cycles per A element
  from its own tile row's non-zeros (``sparse.row_cycles``), every router, every cycle;
- the tile model from the same mask (``gemm.sparse_gemm_time`` with ``SparseWeight(mask=...)``):
  each core's step from its tile, the latest core's path through the rectangle;
- the tile model in distribution (``SparseWeight(mask=None)``, as a meta-device weight beyond
  ``SPARSE_DRAW_LIMIT`` is costed): the expected slowest core of binomial draws, not this mask.

Error = (tile - PE) / PE of the total cycles; "in distribution vs mask" = (in distribution - from
the mask) / from the mask: against one draw, so it holds the draw's own luck; "vs draws" = (in
distribution - the mean over ``DRAWS`` masks of other seeds, each costed by the tile model from
its mask, which the PE level matches) / that mean: the error of the convolution and normal
approximations themselves, beside the draws' spread (their standard deviation). Speed-up = the
dense PE run's cycles over the sparse one's (1/density beside it). The PE layout puts the wider N
blocks first and the kernel the narrower: where N does not divide, the tile model is given the
mask mirrored in N, so that every core holds the same tile (in the mirrored column).
``benchmarks/fidelity.py`` runs this too and writes it into benchmarks/results/fidelity.md.
"""

from __future__ import annotations

import numpy as np

from waferscale.backends.gemm import sparse_gemm_time
from waferscale.backends.machine import get_machine
from waferscale.backends.sparse import SparseWeight, draw_mask
from waferscale.runtime.pe_sim import simulate_gemm

DENSITIES = (0.5, 0.25, 0.1, 0.03)
CASES = [  # m, k, n, target, note[, resident_a]
    (1, 256, 256, "mesh:4x4", "GEMV, 4 x 4"),
    (1, 1024, 1024, "mesh:16x16", "GEMV, 16 x 16"),
    (1, 1000, 997, "mesh:16x15", "GEMV, nothing divides"),
    (1, 2048, 8192, "mesh:32x64", "GEMV, 1.3B FFN up"),
    (1, 4096, 4096, "mesh:64x64", "GEMV, 6.7B projection"),
    (1, 4096, 4096, "mesh:64x64", "GEMV, x resident", True),
    (4, 1024, 1024, "mesh:16x16", "4 tokens, 16 x 16"),
    (8, 768, 3072, "mesh:24x48", "8 tokens, 111M FFN up"),
    (16, 768, 768, "mesh:32x32", "16 tokens, 111M projection"),
    (8, 4096, 4096, "mesh:64x64", "8 tokens, 64 x 64"),
    (32, 2048, 512, "mesh:32x8", "32 tokens, long K"),
]
DTYPE = "f16"
SEED = 0
DRAWS = 16  # masks of seeds 1..DRAWS for the in-distribution check


def one(m: int, k: int, n: int, target: str, density: float, resident_a: bool = False) -> dict:
    machine = get_machine(target)
    dp = machine.datapath(DTYPE)
    rng = np.random.default_rng(SEED)
    a = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((k, n), dtype=np.float32)
    mask = draw_mask(k, n, density, SEED, "w")  # the mask of `wafer simulate-kernel ... --density D --seed 0`
    on = {"resident_a": resident_a, "machine": machine}  # each level on the case's own machine
    r = simulate_gemm(a, w, machine.rows, machine.cols, dp, mask=mask, depth=machine.pe_queue_depth, **on)
    dense = simulate_gemm(a, w, machine.rows, machine.cols, dp, depth=machine.pe_queue_depth, **on)
    mirrored = n % min(machine.cols, n) != 0
    sw = SparseWeight("w", k, n, density, mask=np.ascontiguousarray(mask[:, ::-1]) if mirrored else mask)
    exact = sparse_gemm_time(m, sw, machine.rows, machine.cols, dp, **on)
    dist = sparse_gemm_time(m, SparseWeight("w", k, n, density), machine.rows, machine.cols, dp, **on)
    ref = a.astype(np.float64) @ (w * mask)
    draws = [sparse_gemm_time(m, SparseWeight("w", k, n, density, mask=draw_mask(k, n, density, seed, "w")),
                              machine.rows, machine.cols, dp, **on).total
             for seed in range(1, DRAWS + 1)]
    mean = float(np.mean(draws))
    return {
        "kind": "gemv" if m == 1 else "gemm", "m": m, "k": k, "n": n, "mesh": target, "grid": [r.rows, r.cols],
        "dtype": DTYPE, "density": density, "nnz": int(mask.sum()), "resident_a": resident_a,
        "mask_mirrored_for_tile": mirrored,
        "pe_cycles": r.cycles, "dense_pe_cycles": dense.cycles, "speedup": dense.cycles / r.cycles,
        "tile_cycles": exact.total, "tile_step": exact.step, "tile_fill": exact.fill,
        "rel_error": (exact.total - r.cycles) / r.cycles,
        "dist_cycles": dist.total, "dist_step": dist.step, "dist_fill": dist.fill,
        "dist_vs_mask": (dist.total - exact.total) / exact.total, "dist_vs_pe": (dist.total - r.cycles) / r.cycles,
        "draws_mean": mean, "draws_sd": float(np.std(draws)), "dist_vs_draws": (dist.total - mean) / mean,
        "numeric_rel_error": float(np.abs(r.c - ref).max() / np.abs(ref).max()),
        "wavelets_conserved": not r.violations, "wall_s": round(r.wall_s, 3),
    }


def sparse_cases() -> list[dict]:
    """Every case of ``CASES`` at every density, with its note."""
    rows = []
    for m, k, n, target, note, *res in CASES:
        for d in DENSITIES:
            rows.append(one(m, k, n, target, d, *res) | {"note": note})
            x = rows[-1]
            print(f"{note:<28} {m}x{k}x{n} on {target:<11} d={d:<5} pe {x['pe_cycles']:>6} "
                  f"tile {x['tile_cycles']:>6} {100 * x['rel_error']:+6.2f}%  in distribution {x['dist_cycles']:>6} "
                  f"{100 * x['dist_vs_mask']:+6.2f}% (vs draws {100 * x['dist_vs_draws']:+6.2f}%)  "
                  f"speed-up {x['speedup']:.2f}", flush=True)
    return rows


def _stats(errs: list[float]) -> str:
    errs = [abs(e) for e in errs]
    return f"mean |error| {100 * sum(errs) / len(errs):.2f}%, max |error| {100 * max(errs):.2f}%"


def summary(rows: list[dict]) -> dict:
    out = {"cases": len(rows)}
    for key in ("rel_error", "dist_vs_mask", "dist_vs_pe", "dist_vs_draws"):
        e = [abs(r[key]) for r in rows]
        out[key] = {"mean_abs": sum(e) / len(e), "max_abs": max(e)}
    return out


def table(rows: list[dict]) -> str:
    out = [
        f"**{len(rows)} sparse cases. Tile model from the mask vs PE level: {_stats([r['rel_error'] for r in rows])}. "
        f"In distribution vs the mean of {DRAWS} other draws: {_stats([r['dist_vs_draws'] for r in rows])}; "
        f"vs this mask: {_stats([r['dist_vs_mask'] for r in rows])}; vs PE level: "
        f"{_stats([r['dist_vs_pe'] for r in rows])}.**",
        "",
        "| case | m | k | n | mesh (cores used) | A | density | PE cycles | tile (mask) | error "
        f"| tile (in distribution) | vs mask | vs {DRAWS} draws (sd) | dense PE cycles | speed-up | 1/density "
        "| numerics | wall s |",
        "|---|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        g = r["grid"]
        mirror = " (N mirrored)" if r["mask_mirrored_for_tile"] else ""
        out.append(f"| {r['note']}{mirror} | {r['m']} | {r['k']} | {r['n']} | {r['mesh']} ({g[0]}x{g[1]}) "
                   f"| {'resident' if r['resident_a'] else 'streamed'} | {r['density']} | {r['pe_cycles']:,} "
                   f"| {r['tile_cycles']:,} | {100 * r['rel_error']:+.2f}% | {r['dist_cycles']:,} "
                   f"| {100 * r['dist_vs_mask']:+.2f}% | {100 * r['dist_vs_draws']:+.2f}% "
                   f"({100 * r['draws_sd'] / r['draws_mean']:.1f}%) | {r['dense_pe_cycles']:,} | {r['speedup']:.2f} "
                   f"| {1 / r['density']:.1f} | {r['numeric_rel_error']:.1e} | {r['wall_s']:.2f} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(table(sparse_cases()), end="")
