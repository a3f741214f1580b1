"""The PE level's tree reduce at a WSE-3's hop (2 cycles, ``mesh:RxC,core=wse3``) on its three loops
with multi-cycle links, side by side: the compiled loop (``runtime/pe_tree_jit.py``, numba), the
fused loop (``runtime/pe_tree_fused.py``) and the loop itself (``runtime/pe_tree.py``,
``engine="cycles"``), on the same GEMMs in one process, alternating, so that all see the same load.

    python benchmarks/pe_tree_hop.py [--repeat 3] [--wafer]

Each run is ``simulate_gemm(..., reduce="tree")`` on a mesh of WSE-3 cores with
``pe_tree_events.JIT_HOP_MAX_CORES`` set past the grid (the compiled loop, compiled or loaded from numba's
cache before the timing), or set to 0 and ``FUSED_HOP_MIN_CORES`` to 0 (the fused loop), or with
``engine="cycles"`` (the loop); the fastest of ``--repeat`` runs of each is kept, and all must give
the same cycles and waits. It chose the default engines at such a hop: the compiled loop up to
``JIT_HOP_MAX_CORES``, the fused loop above. ``--wafer`` adds the full WSE-3 GEMV (some 3 minutes a run,
the fused loop and the loop only: the compiled loop's grid is capped). Writes
benchmarks/results/pe_tree_hop.json and .md.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as pe_speed.py: BLAS single-threaded

import numpy as np  # noqa: E402
from results_io import command, machine, write  # noqa: E402  (benchmarks/ is on sys.path)

CASES = [  # m, k, n, mesh (of WSE-3 cores), A resident
    (m, 4096, 4096, f"mesh:{r}x{r},core=wse3", res)
    for r in (64, 96, 128, 192, 256) for m, res in ((1, True), (1, False), (16, False))
]
WAFER = (1, 4096, 4096, "wse3", False)


def run(m: int, k: int, n: int, target: str, resident: bool, repeat: int, compiled: bool = True) -> dict:
    from waferscale.backends.machine import get_machine
    from waferscale.runtime import pe_tree_events
    from waferscale.runtime.pe_sim import simulate_gemm

    mach = get_machine(target)
    rng = np.random.default_rng(0)
    a, w = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)
    best, seen, keep = {}, set(), (pe_tree_events.FUSED_HOP_MIN_CORES, pe_tree_events.JIT_HOP_MAX_CORES)
    loops = ((("compiled", "events", 10**9, keep[0]),) if compiled else ()) + (
        ("fused", "events", 0, 0), ("loop", "cycles", 0, 0))
    try:
        for _ in range(repeat):
            for loop, engine, jit_max, fused_min in loops:
                pe_tree_events.JIT_HOP_MAX_CORES, pe_tree_events.FUSED_HOP_MIN_CORES = jit_max, fused_min
                t = time.perf_counter()
                r = simulate_gemm(a, w, mach.rows, mach.cols, mach.datapath("f16"), reduce="tree", machine=mach,
                                  resident_a=resident, engine=engine)
                best[loop] = min(best.get(loop, 1e9), time.perf_counter() - t)
                seen.add((r.cycles, r.fabric.contended))
    finally:
        pe_tree_events.FUSED_HOP_MIN_CORES, pe_tree_events.JIT_HOP_MAX_CORES = keep
    if len(seen) != 1:
        raise SystemExit(f"{target}: the loops disagree on cycles or waits: {sorted(seen)}")
    (cycles, waits), = seen
    return {"m": m, "k": k, "n": n, "mesh": target, "resident_a": resident, "cores": mach.rows * mach.cols,
            "cycles": cycles, "waits": int(waits), "compiled_s": round(best["compiled"], 3) if compiled else None,
            "fused_s": round(best["fused"], 3), "loop_s": round(best["loop"], 3),
            "speedup": round(best["loop"] / best["fused"], 2),
            "compiled_speedup": round(best["loop"] / best["compiled"], 2) if compiled else None}


def markdown(rec: dict) -> str:
    f = lambda x: "-" if x is None else f"{x:.3f}"
    out = ["# The PE tree reduce at a WSE-3's hop: the compiled and fused loops against the loop itself", "",
           f"Produced by `{rec['command']}` on {rec['machine']}. Wall seconds of `simulate_gemm(..., "
           "reduce=\"tree\")` on meshes of WSE-3 cores (a 2-cycle hop), the fastest of the runs of each loop, "
           "alternating in one process. All give the same cycles and waits. The default engine at such a hop "
           f"is the compiled loop up to {rec['jit_max_cores']:,} cores (`pe_tree_events.JIT_HOP_MAX_CORES`, where "
           f"numba is installed), else the fused loop from {rec['fused_hop_min_cores']:,} cores "
           "(`pe_tree_events.FUSED_HOP_MIN_CORES`) and the loop itself below. Speed-up: the loop's time over "
           "the compiled loop's, and over the fused loop's.", "",
           "| mesh | gemm | A | cycles | compiled s | fused s | loop s | speed-up, compiled | speed-up, fused |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rec["rows"]:
        c = r.get("compiled_speedup")
        out.append(f"| {r['mesh']} | {r['m']}x{r['k']}x{r['n']} | {'resident' if r['resident_a'] else 'streamed'} "
                   f"| {r['cycles']:,} | {f(r.get('compiled_s'))} | {r['fused_s']:.3f} | {r['loop_s']:.3f} "
                   f"| {'-' if c is None else f'{c:.2f}'} | {r['speedup']:.2f} |")
    return "\n".join(out) + "\n"


def main() -> None:
    from waferscale.runtime.pe_tree_events import FUSED_HOP_MIN_CORES, JIT_HOP_MAX_CORES
    from waferscale.runtime.pe_tree_jit import warm

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--wafer", action="store_true", help="add the full WSE-3 GEMV (slow)")
    a = p.parse_args()
    if not warm():
        raise SystemExit("numba is not installed: pip install -e .[jit]")
    rows = []
    for case in CASES + ([WAFER] if a.wafer else []):
        rows.append(run(*case, a.repeat, compiled=case is not WAFER))
        r = rows[-1]
        print(f"{r['mesh']:<22} m={r['m']:<3} {'resident' if r['resident_a'] else 'streamed'}  compiled "
              f"{r['compiled_s'] or 0:8.3f} s  fused {r['fused_s']:8.3f} s  loop {r['loop_s']:8.3f} s", flush=True)
    rec = {"command": command(), "machine": machine(), "fused_hop_min_cores": FUSED_HOP_MIN_CORES,
           "jit_max_cores": JIT_HOP_MAX_CORES, "rows": rows}
    write("pe_tree_hop", rec, markdown(rec))


if __name__ == "__main__":
    main()
