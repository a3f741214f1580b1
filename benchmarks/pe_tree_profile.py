"""Where the compiled tree loop's time goes: visits to cores, and the cost of one, from a grid whose
state fits a core's L1 cache to one whose state does not fit its L2.

    python benchmarks/pe_tree_profile.py [--repeat 5] [--sizes 16,32,64,128,256] [--no-write]

Each case is the tree reduce's GEMM of ``benchmarks/pe_speed.py`` scaled to the grid (g x g cores,
m = g / 4 tokens, k = n = 16 g: 16 A elements and 16 columns a core, as all of pe_speed's square
cases), run by ``pe_tree_jit.run_tree_jit`` alone (the operands laid out, and the loop compiled or
loaded from numba's cache, before the timing). Reported per case: the loop's visits to a core (a core
visited in a cycle: the decisions of one core and the moves they start; ``stats["visits"]``) per
core-cycle and per core and token, and the process's CPU nanoseconds per core-cycle and per visit (the
fastest of ``--repeat`` runs; CPU time, as the machine is shared). If the CPU cost of a visit stays
the same from the smallest grid to the largest, the loop is bound by the work of a visit, not by
memory. Writes benchmarks/results/pe_tree_profile.json and .md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from results_io import command, heading, machine, write  # benchmarks/ is on sys.path


def run(g: int, repeat: int) -> dict:
    from waferscale.backends import assumptions as A
    from waferscale.backends.column_reduce import plan
    from waferscale.backends.machine import WSE2
    from waferscale.runtime.pe_layout import layout
    from waferscale.runtime.pe_sim import _max_cycles
    from waferscale.runtime.pe_tree_jit import run_tree_jit

    m, k = g // 4, 16 * g
    rng = np.random.default_rng(0)
    a, w = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, k), dtype=np.float32)
    lay = layout(a, w, g, g, WSE2.datapath("f16"))
    p = plan(lay.rows, "tree")
    best, stats = float("inf"), {}
    for _ in range(repeat):
        t = time.process_time()
        cycles, waits = run_tree_jit(lay, p, WSE2.pe_queue_depth, A.PE_ACC_BUFFERS, _max_cycles(lay, 4), False,
                                     stats)  # simulate_gemm's own arguments
        best = min(best, time.process_time() - t)
    core_cycles, visits = cycles * g * g, stats["visits"]
    return {"grid": g, "m": m, "k": k, "n": k, "cycles": cycles, "waits": waits, "visits": visits,
            "visits_per_core_cycle": round(visits / core_cycles, 4),
            "visits_per_core_token": round(visits / (g * g * m), 1),
            "cpu_s": round(best, 4), "ns_per_core_cycle": round(best / core_cycles * 1e9, 2),
            "ns_per_visit": round(best / visits * 1e9, 1)}


def markdown(rec: dict) -> str:
    out = [heading("The compiled tree loop: visits and their cost", rec) + ". The tree reduce's GEMM at 16 A "
           "elements and 16 columns a core (m = grid / 4 tokens), run by `pe_tree_jit.run_tree_jit` alone; CPU "
           "seconds, the fastest of the runs. A visit: one core's decisions in one cycle and the moves they start.",
           "", "| grid | gemm | cycles | visits / core-cycle | visits / core-token | CPU s | ns / core-cycle "
           "| ns / visit |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rec["rows"]:
        out.append(f"| {r['grid']}x{r['grid']} | {r['m']}x{r['k']}x{r['n']} | {r['cycles']:,} "
                   f"| {r['visits_per_core_cycle']:.3f} | {r['visits_per_core_token']:.1f} | {r['cpu_s']:.4f} "
                   f"| {r['ns_per_core_cycle']:.2f} | {r['ns_per_visit']:.1f} |")
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--sizes", default="16,32,64,128,256", help="grid sides, comma separated")
    p.add_argument("--no-write", action="store_true", help="print only (as under a profiler)")
    a = p.parse_args()
    from waferscale.runtime.pe_tree_jit import warm

    if not warm():
        raise SystemExit("numba is not installed: pip install -e .[jit]")
    rows = []
    for g in (int(x) for x in a.sizes.split(",")):
        rows.append(run(g, a.repeat))
        r = rows[-1]
        print(f"{g:>4}x{g:<4} {r['visits_per_core_cycle']:.3f} visits/core-cycle  {r['ns_per_core_cycle']:6.2f} "
              f"ns/core-cycle  {r['ns_per_visit']:6.1f} ns/visit", flush=True)
    if a.no_write:
        return
    rec = {"command": command(), "machine": machine(), "rows": rows}
    write("pe_tree_profile", rec, markdown(rec))


if __name__ == "__main__":
    main()
