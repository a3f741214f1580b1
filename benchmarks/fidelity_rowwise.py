"""Fidelity of the tile-level layernorm model against the PE-level simulator (issue 10, item 6).

    python benchmarks/fidelity_rowwise.py

Runs layernorm cases, from one core to 2,048 tokens x 4,096 features on a 64 x 64 mesh (of WSE-2
cores, and of WSE-3 cores: ``mesh:RxC,core=wse3``, a 2-cycle hop), through both levels:
runtime/pe_rowwise.py (every core and router, every cycle) and the tile model (``Rowwise.fill +
Rowwise.model_cycles`` of backends/kernels/rowwise.py), and prints a Markdown table. Error is (tile
- PE) / PE of the total cycles; numerics is max |y - NumPy| / max |NumPy| of the layernorm the PE
level computed (float32 against float64).
"""

from __future__ import annotations

import numpy as np

from waferscale.backends.kernels.rowwise import Rowwise
from waferscale.backends.machine import get_machine
from waferscale.ir.types import DTYPES
from waferscale.runtime.pe_rowwise import simulate_layernorm

CASES = [  # m (tokens), f (features), target, dtype, note
    (1, 7, "mesh:1x1", "f16", "one core, one token"),
    (5, 7, "mesh:2x3", "f16", "primes, uneven"),
    (40, 300, "mesh:8x1", "f16", "one column of cores"),
    (64, 768, "mesh:8x8", "f16", "111M width"),
    (64, 1000, "mesh:4x32", "f32", "nothing divides, f32"),
    (61, 2048, "mesh:31x13", "f16", "uneven everything"),
    (16, 4096, "mesh:1x64", "f16", "one row of 64 cores"),
    (64, 768, "mesh:2x31,fmac=8", "f16", "uneven, 8 lanes: the sweep's worst"),
    (64, 4096, "mesh:32x64", "f16", "6.7B width, 2 tokens a row"),
    (256, 1088, "mesh:16x32,fmac=8", "f16", "256M width, 8 lanes"),
    (2048, 768, "mesh:64x64", "f16", "111M sample, 12 features a core"),
    (2048, 4096, "mesh:64x64", "f16", "6.7B sample, 64 x 64"),
    # WSE-3 cores: a 2-cycle hop (delay lines, runtime/pe_links.py), 8 f16 lanes
    (64, 768, "mesh:8x8,core=wse3", "f16", "WSE-3 cores, 111M width"),
    (61, 2048, "mesh:31x13,core=wse3", "f16", "WSE-3 cores, uneven everything"),
    (16, 4096, "mesh:1x64,core=wse3", "f16", "WSE-3 cores, one row of 64"),
    (64, 1000, "mesh:4x32,core=wse3", "f32", "WSE-3 cores, nothing divides, f32"),
    (2048, 4096, "mesh:64x64,core=wse3", "f16", "WSE-3 cores, 8B-like sample, 64 x 64"),
]


def layernorm_ref(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    x = x.astype(np.float64)
    mean = x.mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(x.var(-1, keepdims=True) + eps) * w + b


def tile_cycles(m: int, f: int, target: str, dtype: str) -> tuple[float, float]:
    """(fill, busy cycles) of the tile model for m tokens on the whole mesh."""
    machine = get_machine(target)
    kernel = Rowwise(tokens=m, dtype=dtype, elem=DTYPES[dtype][1], op="layernorm", features=f, inputs=1, params=2,
                     flops_per_token=8 * f)
    return (kernel.fill(machine.rows, machine.cols, machine),
            kernel.model_cycles(machine.rows, machine.cols, 0, m, machine))


def one(m: int, f: int, target: str, dtype: str, seed: int = 0) -> dict:
    machine = get_machine(target)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, f), dtype=np.float32) + np.float32(0.5)
    w = rng.standard_normal(f, dtype=np.float32)
    b = rng.standard_normal(f, dtype=np.float32)
    r = simulate_layernorm(x, machine.rows, machine.cols, machine.datapath(dtype).rate, weight=w, bias=b,
                           machine=machine)
    ref = layernorm_ref(x, w, b)
    fill, busy = tile_cycles(m, f, target, dtype)
    tile = fill + busy
    return {"m": m, "f": f, "mesh": target, "grid": [r.rows, r.cols], "dtype": dtype,
            "lanes": machine.datapath(dtype).rate,
            "pe_cycles": r.cycles, "tile_cycles": tile, "tile_fill": fill, "rel_error": (tile - r.cycles) / r.cycles,
            "numeric_rel_error": float(np.abs(r.y - ref).max() / np.abs(ref).max()), "wall_s": r.wall_s,
            "pe_cycles_per_s": r.pe_cycles_per_s}


def rowwise_cases() -> list[dict]:
    """Every case of ``CASES`` through both levels, with its note."""
    return [one(m, f, target, dtype) | {"note": note} for m, f, target, dtype, note in CASES]


def table(rows: list[dict]) -> str:
    errs = [abs(r["rel_error"]) for r in rows]
    out = [f"**{len(rows)} layernorm cases: mean |error| {100 * sum(errs) / len(errs):.2f}%, "
           f"max |error| {100 * max(errs):.2f}%**", "",
           "| case | m | f | mesh (cores used) | dtype | PE cycles | tile cycles | error | numerics | wall s |",
           "|---|---:|---:|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        g = r["grid"]
        out.append(f"| {r['note']} | {r['m']} | {r['f']} | {r['mesh']} ({g[0]}x{g[1]}) | {r['dtype']} "
                   f"| {r['pe_cycles']:,} | {r['tile_cycles']:,.0f} | {100 * r['rel_error']:+.2f}% "
                   f"| {r['numeric_rel_error']:.1e} | {r['wall_s']:.2f} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(table(rowwise_cases()), end="")
