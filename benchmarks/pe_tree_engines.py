"""The PE level's tree reduce on its two default engines, side by side: the cycle loop compiled with
numba (``runtime/pe_tree_jit.py``) and the NumPy engines it replaces (the event solver where it fits,
else the fused loop), on the same GEMMs in one process, alternating, so that both see the same load.

    python benchmarks/pe_tree_engines.py [--repeat 3] [--wafer]

Each run is ``simulate_gemm(..., reduce="tree")`` with ``pe_tree_events.JIT_MAX_CORES`` set high (the
compiled loop) or to 0 (the NumPy engines); the fastest of ``--repeat`` runs of each is kept (the
machine is shared), and each engine's cycles and waits must agree. It chose ``JIT_MAX_CORES``: the
compiled loop runs where it is not slower. ``--wafer`` adds the full WSE-2 case of
``benchmarks/pe_speed.py`` (some 5 minutes a run). Writes benchmarks/results/pe_tree_engines.json
and .md.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as pe_speed.py: BLAS single-threaded

import numpy as np  # noqa: E402
from results_io import command, machine, write  # noqa: E402  (benchmarks/ is on sys.path)

CASES = [  # m, k, n, target
    (16, 1024, 1024, "mesh:64x64"),
    (32, 2048, 2048, "mesh:128x128"),
    (64, 4096, 4096, "mesh:256x256"),
]
WAFER = (64, 3984, 6056, "wse2")


def run(m: int, k: int, n: int, target: str, repeat: int) -> dict:
    from waferscale.backends.machine import get_machine
    from waferscale.runtime import pe_tree_events
    from waferscale.runtime.pe_sim import simulate_gemm

    mach = get_machine(target)
    rng = np.random.default_rng(0)
    a, w = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)
    best, seen = {}, set()
    for _ in range(repeat):
        for engine, limit in (("compiled", 10**9), ("numpy", 0)):
            pe_tree_events.JIT_MAX_CORES = limit
            t = time.perf_counter()
            r = simulate_gemm(a, w, mach.rows, mach.cols, mach.datapath("f16"), reduce="tree")
            best[engine] = min(best.get(engine, 1e9), time.perf_counter() - t)
            seen.add((r.cycles, r.fabric.contended))
    if len(seen) != 1:
        raise SystemExit(f"{target}: the engines disagree on cycles or waits: {sorted(seen)}")
    (cycles, waits), = seen
    return {"m": m, "k": k, "n": n, "mesh": target, "cycles": cycles, "waits": int(waits),
            "compiled_s": round(best["compiled"], 3), "numpy_s": round(best["numpy"], 3),
            "speedup": round(best["numpy"] / best["compiled"], 2)}


def markdown(rec: dict) -> str:
    out = ["# The PE tree reduce: compiled loop against the NumPy engines", "",
           f"Produced by `{rec['command']}` on {rec['machine']}. Wall seconds of `simulate_gemm(..., "
           "reduce=\"tree\")`, the fastest of the runs of each engine, alternating in one process (after the "
           "compiled loop was compiled or loaded from numba's cache). Both give the same cycles and waits.", "",
           "| mesh | gemm | cycles | compiled s | NumPy engines s | speed-up |", "|---|---|---:|---:|---:|---:|"]
    for r in rec["rows"]:
        out.append(f"| {r['mesh']} | {r['m']}x{r['k']}x{r['n']} | {r['cycles']:,} | {r['compiled_s']:.3f} "
                   f"| {r['numpy_s']:.3f} | {r['speedup']:.2f} |")
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--wafer", action="store_true", help="add the full WSE-2 case (slow)")
    a = p.parse_args()
    from waferscale.runtime.pe_tree_jit import warm

    if not warm():
        raise SystemExit("numba is not installed: pip install -e .[jit]")
    rows = []
    for case in CASES + ([WAFER] if a.wafer else []):
        rows.append(run(*case, a.repeat))
        r = rows[-1]
        print(f"{r['mesh']:<14} compiled {r['compiled_s']:8.3f} s  numpy {r['numpy_s']:8.3f} s  x{r['speedup']}",
              flush=True)
    rec = {"command": command(), "machine": machine(), "rows": rows}
    write("pe_tree_engines", rec, markdown(rec))


if __name__ == "__main__":
    main()
