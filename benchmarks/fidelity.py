"""Fidelity of the tile-level GEMM model against the PE-level simulator, and the simulator's speed.

    python benchmarks/fidelity.py [--quick]

Runs GEMM and GEMV shapes on meshes from 1 x 1 to the full WSE-2 through both levels
(runtime/pe_sim.py and backends/gemm.py), and on meshes of WSE-3 cores (``mesh:RxC,core=wse3``: its
2-cycle hop, runtime/pe_links.py) up to the full WSE-3, with the chain reduce and with the two-level tree
(backends/column_reduce.py), A streamed from the west edge or resident in the cores' SRAM, each
case in a fresh process so that its peak RSS is its own, and writes benchmarks/results/fidelity.json
and fidelity.md. Error is (tile - pe) / pe of the total cycles; the numeric error is
max |C - NumPy| / max |C| of the simulated product. ``--quick`` leaves out the full-wafer cases.
(A 2-cycle hop runs the PE level's cycle loop, not its faster engines: see the PE-cycles/s.)

Two more sections follow, each runnable alone (it prints its table, writes nothing): layernorm
across a row of cores (``python benchmarks/fidelity_rowwise.py``) and sparse weights, the tile
model of sparsity from the mask and in distribution against the PE level
(``python benchmarks/fidelity_sparse.py``).
"""

from __future__ import annotations

import argparse
import json
import resource

import results_io  # benchmarks/ is on sys.path when a script here runs
from results_io import RESULTS, write

CASES = [  # m, k, n, target, dtype, note[, reduce, resident_a] (default: the chain, A streamed)
    (1, 101, 103, "mesh:7x11", "f16", "primes"),
    (1, 768, 768, "mesh:8x8", "f16", "111M projection, one token"),
    (1, 1000, 997, "mesh:32x31", "f16", "nothing divides"),
    (1, 3072, 768, "mesh:96x24", "f32", "111M FFN down, f32"),
    (1, 4096, 4096, "mesh:64x64", "f16", "6.7B projection"),
    (1, 2048, 8192, "mesh:32x128", "f16", "1.3B FFN up"),
    (1, 768, 50257, "mesh:64x256", "f16", "111M logits"),
    (3, 2, 2, "mesh:2x2", "f16", "tiny"),
    (7, 997, 13, "mesh:31x1", "f16", "one column of cores"),
    (7, 13, 997, "mesh:1x31", "f16", "one row of cores"),
    (40, 5, 300, "mesh:5x3", "f16", "k = rows"),
    (9, 155, 73, "mesh:15x18", "f32", "f32, odd"),
    (16, 128, 96, "mesh:8x8", "f16", "even split"),
    (32, 64, 64, "mesh:64x8", "f16", "deep and narrow"),
    (24, 4096, 64, "mesh:64x16", "f16", "long K"),
    (128, 256, 256, "mesh:16x16", "f16", "many tokens"),
    (64, 768, 768, "mesh:32x32", "f16", "111M projection"),
    (32, 768, 3072, "mesh:24x96", "f16", "111M FFN up"),
    (32, 3072, 768, "mesh:96x24", "f16", "111M FFN down"),
    (8, 1088, 4352, "mesh:34x68,fmac=8", "f16", "256M FFN up, 8 lanes"),
    (16, 1024, 1024, "mesh:64x64", "f16", "speed, 64 x 64"),
    (64, 2048, 2048, "mesh:64x64", "f16", "speed, 64 x 64, longer"),
    (16, 2048, 2048, "mesh:128x128", "f16", "speed, 128 x 128"),
    (4, 1024, 1024, "mesh:256x256", "f16", "speed, 256 x 256"),
    (1, 3984, 6056, "wse2", "f16", "GEMV, full WSE-2"),
    (64, 3984, 6056, "wse2", "f16", "GEMM, full WSE-2"),
    # the two-level tree (WaferLLM's MeshGEMV reduce), and resident A
    (1, 16384, 16384, "mesh:512x512", "f16", "WaferLLM GEMV 16K, x resident", "tree", True),
    (1, 16384, 16384, "mesh:512x512", "f16", "WaferLLM GEMV 16K, chain", "chain", True),
    (1, 1, 1, "mesh:1x1", "f16", "tree, one core", "tree", True),
    (1, 101, 103, "mesh:7x11", "f16", "tree, primes", "tree", False),
    (1, 1000, 997, "mesh:32x31", "f16", "tree, nothing divides", "tree", False),
    (1, 3072, 768, "mesh:96x24", "f32", "tree, f32", "tree", False),
    (1, 190, 474, "mesh:3x64", "f32", "tree, narrow columns held back", "tree", False),
    (1, 4096, 4096, "mesh:64x64", "f16", "tree, nt = 64: chain wins", "tree", False),
    (1, 4096, 4096, "mesh:128x128", "f16", "tree, deep column, x resident", "tree", True),
    (1, 4096, 4096, "mesh:128x128", "f16", "chain, deep column, x resident", "chain", True),
    (1, 997, 13, "mesh:31x1", "f16", "tree, one column", "tree", True),
    (1, 13, 997, "mesh:1x31", "f16", "tree, one row", "tree", False),
    (4, 97, 89, "mesh:8x8", "f16", "tree, 4 tokens", "tree", False),
    (16, 128, 96, "mesh:8x8", "f16", "tree, even split, A resident", "tree", True),
    (9, 155, 73, "mesh:15x18", "f32", "tree, f32, odd", "tree", False),
    (24, 4096, 64, "mesh:64x16", "f16", "tree, long K", "tree", False),
    (128, 256, 256, "mesh:16x16", "f16", "tree, many tokens", "tree", False),
    (64, 768, 768, "mesh:32x32", "f16", "tree, 111M projection", "tree", False),
    (8, 2048, 2048, "mesh:128x128", "f16", "tree, 128 x 128, A resident", "tree", True),
    (4, 2048, 2048, "mesh:256x256", "f16", "tree, 256 x 256: phase-1 waves", "tree", False),
    (1, 3984, 6056, "wse2", "f16", "GEMV, full WSE-2, tree", "tree", False),
    # WSE-3 cores: a 2-cycle hop (wse3.yaml), 8 f16 lanes fed at 4 by the SRAM ports
    (1, 1000, 997, "mesh:32x31,core=wse3", "f16", "WSE-3 cores, nothing divides"),
    (1, 4096, 4096, "mesh:64x64,core=wse3", "f16", "WSE-3 cores, 6.7B projection"),
    (9, 155, 73, "mesh:15x18,core=wse3", "f32", "WSE-3 cores, f32, odd"),
    (16, 128, 96, "mesh:8x8,core=wse3", "f16", "WSE-3 cores, even split, tree", "tree", True),
    (1, 1000, 997, "mesh:32x31,core=wse3", "f16", "WSE-3 cores, tree, nothing divides", "tree", False),
    (1, 4096, 4096, "mesh:128x128,core=wse3", "f16", "WSE-3 cores, tree, deep column", "tree", True),
    (4, 2048, 2048, "mesh:64x64,core=wse3", "f16", "WSE-3 cores, tree, 4 tokens", "tree", False),
    (1, 4096, 14336, "wse3", "f16", "GEMV, full WSE-3, tree (8B FFN up)", "tree", True),
]


def one(m: int, k: int, n: int, target: str, dtype: str, reduce: str = "chain", resident_a: bool = False) -> dict:
    import numpy as np

    from waferscale.backends.gemm import gemm_time
    from waferscale.backends.machine import get_machine
    from waferscale.runtime.pe_sim import simulate_gemm

    machine = get_machine(target)
    lanes = machine.datapath(dtype)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((k, n), dtype=np.float32)
    opts = {"reduce": reduce, "resident_a": resident_a}
    r = simulate_gemm(a, w, machine.rows, machine.cols, lanes, sram_bytes=machine.usable_sram_bytes,
                      depth=machine.pe_queue_depth, machine=machine, **opts)
    ref = a.astype(np.float64) @ w
    t = gemm_time(m, k, n, machine.rows, machine.cols, lanes, machine=machine, **opts)
    return {
        "kind": "gemv" if m == 1 else "gemm", "m": m, "k": k, "n": n, "mesh": target, **opts,
        "mesh_rows": machine.rows, "mesh_cols": machine.cols, "grid": [r.rows, r.cols], "dtype": dtype,
        "lanes": lanes.lanes, "pe_cycles": r.cycles, "tile_cycles": t.total, "tile_step": t.step, "tile_fill": t.fill,
        "rel_error": (t.total - r.cycles) / r.cycles,
        "numeric_rel_error": float(np.abs(r.c - ref).max() / np.abs(ref).max()),
        "wavelets_conserved": not r.violations, "sram_bytes_per_core": r.sram_bytes_per_core,
        "wall_s": round(r.wall_s, 3), "pe_cycles_per_s": r.pe_cycles_per_s,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


SPARSE_INTRO = (
    "The chain GEMM with a sparse weight (f16, a seeded random mask, `backends/sparse.py`): the PE level "
    "(`simulate_gemm(..., mask=)`: each core's cycles per A element from its own tile row's non-zeros, "
    "every router, every cycle), the tile model from the same mask (`gemm.sparse_gemm_time`: each core's "
    "step from its tile, the latest core's path through the rectangle) and in distribution (no mask, as a "
    "weight beyond `SPARSE_DRAW_LIMIT` is costed: the expected slowest of binomial draws). *vs mask* "
    "compares the in-distribution figure with this one draw (its luck included); *vs draws* with the mean "
    "of 16 other seeds' masks, each costed from its mask (the approximation's own error; sd: the draws' "
    "spread). Speed-up: the dense PE run over the sparse one. Where N does not divide, the tile model "
    "takes the mask mirrored in N (the kernel puts the narrow blocks first, the PE layout the wide "
    "ones): same tiles, mirrored columns. Re-run alone with `python benchmarks/fidelity_sparse.py`.\n\n")


def _stats(rows: list[dict]) -> str:
    errs = [abs(r["rel_error"]) for r in rows]
    return f"{len(rows)} cases: mean |error| {100 * sum(errs) / len(errs):.2f}%, max |error| {100 * max(errs):.2f}%"


def table(rows: list[dict], cmd: str, machine: str) -> str:
    by = {red: [r for r in rows if r.get("reduce", "chain") == red] for red in ("chain", "tree")}
    out = [
        "# Fidelity: tile-level GEMM model vs PE-level simulator",
        "",
        f"Produced by `{cmd}` on {machine}. Error = (tile - PE) / PE of total cycles; numerics = max |C - NumPy| /",
        "max |C| of the product the PE level computed; wall = the PE simulation (setup included); RSS = the",
        "peak of the process that ran the case. Reduce: the chain down each column, or the two-level tree",
        "(backends/column_reduce.py); A: streamed from the west edge, or resident in the cores' SRAM. Any chain",
        "row with A streamed can be re-checked with",
        "`wafer simulate-kernel gemm --m M --k K --n N --mesh MESH --dtype DTYPE`.",
        "",
        f"**{_stats(rows)}** (target: every case within 5%).",
        "",
        *[f"- {red}: {_stats(rs)}" for red, rs in by.items() if rs],
        "",
        "| case | kind | m | k | n | mesh (cores used) | dtype | reduce | A | PE cycles | tile cycles | error "
        "| numerics | wall s | PE-cycles/s | peak RSS MiB |",
        "|---|---|---:|---:|---:|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        g = r["grid"]
        out.append(f"| {r['note']} | {r['kind']} | {r['m']} | {r['k']} | {r['n']} | {r['mesh']} ({g[0]}x{g[1]}) "
                   f"| {r['dtype']} | {r.get('reduce', 'chain')} | {'resident' if r.get('resident_a') else 'streamed'} "
                   f"| {r['pe_cycles']:,} | {r['tile_cycles']:,} | {100 * r['rel_error']:+.2f}% "
                   f"| {r['numeric_rel_error']:.1e} | {r['wall_s']:.2f} | {r['pe_cycles_per_s']:.3g} "
                   f"| {r['peak_rss_mb']:.0f} |")
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="leave out the full-wafer cases")
    p.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case, print its JSON
    a = p.parse_args()
    if a.case:
        print(json.dumps(one(*json.loads(a.case))))
        return
    rows = []
    for m, k, n, target, dtype, note, *opts in CASES:
        if a.quick and target in ("wse2", "wse3"):
            continue
        reduce, resident = opts or ("chain", False)
        case = [m, k, n, target, dtype, reduce, resident]
        rows.append(results_io.run_case(__file__, case, f"{m}x{k}x{n} on {target}") | {"note": note})
        x = rows[-1]
        print(f"{note:<32} {x['kind']} {m}x{k}x{n} on {target:<18} {reduce:<5} {'res' if resident else 'str'} "
              f"pe {x['pe_cycles']:>7} tile {x['tile_cycles']:>7} "
              f"{100 * x['rel_error']:+6.2f}%  numerics {x['numeric_rel_error']:.1e}  {x['wall_s']:7.2f} s "
              f"{x['pe_cycles_per_s']:.3g} PE-cycles/s  {x['peak_rss_mb']:.0f} MiB", flush=True)
        if not x["wavelets_conserved"] or x["numeric_rel_error"] > 1e-5:
            raise SystemExit(f"case {note}: the PE level lost a wavelet or the product is wrong")
    cmd = "python benchmarks/fidelity.py" + (" --quick" if a.quick else "")
    machine = results_io.machine()
    errs = [abs(r["rel_error"]) for r in rows]
    summary = {"command": cmd, "machine": machine, "cases": len(rows), "mean_abs_rel_error": sum(errs) / len(errs),
               "max_abs_rel_error": max(errs)}
    for red in ("chain", "tree"):
        e = [abs(r["rel_error"]) for r in rows if r["reduce"] == red]
        if e:
            summary[red] = {"cases": len(e), "mean_abs_rel_error": sum(e) / len(e), "max_abs_rel_error": max(e)}
    # the second ground truth: layernorm across a row of cores (runtime/pe_rowwise.py)
    import fidelity_rowwise

    print("layernorm across a row of cores ...", flush=True)
    ln = fidelity_rowwise.rowwise_cases()
    if any(r["numeric_rel_error"] > 1e-5 for r in ln):
        raise SystemExit("a layernorm case: the PE level's numbers differ from NumPy's")
    e = [abs(r["rel_error"]) for r in ln]
    summary["layernorm"] = {"cases": len(e), "mean_abs_rel_error": sum(e) / len(e), "max_abs_rel_error": max(e)}
    # the sparse weight: the tile model of sparsity from the mask and in distribution (fidelity_sparse.py)
    import fidelity_sparse

    print("sparse weights ...", flush=True)
    sp = fidelity_sparse.sparse_cases()
    if any(r["numeric_rel_error"] > 1e-5 or not r["wavelets_conserved"] for r in sp):
        raise SystemExit("a sparse case: the PE level lost a wavelet or its product is not the masked product")
    summary["sparse"] = fidelity_sparse.summary(sp)
    md = table(rows, cmd, machine) + "\n## A row-wise kernel: layernorm across a row of cores\n\n" + (
        "The same two levels for `backends/kernels/rowwise.py`'s layernorm (tile: `fill + model_cycles`) and "
        "`runtime/pe_rowwise.py` (statistics, the row all-reduce east and back west, normalize, cycle by "
        "cycle). Re-run alone with `python benchmarks/fidelity_rowwise.py`.\n\n") + fidelity_rowwise.table(ln) + (
        "\n## Sparse weights: the tile model of sparsity against the PE level\n\n" + SPARSE_INTRO
        + fidelity_sparse.table(sp)) + (
        "\nHow both levels compare with real hardware: benchmarks/results/hardware_fidelity.md "
        "(`python benchmarks/calibrate.py`).\n")
    write("fidelity", {"summary": summary, "cases": rows, "layernorm": ln, "sparse": sp}, md, indent=1)
    print(f"{len(rows)} cases: mean |error| {100 * summary['mean_abs_rel_error']:.2f}%, "
          f"max {100 * summary['max_abs_rel_error']:.2f}% -> {RESULTS}/fidelity.md")


if __name__ == "__main__":
    main()
