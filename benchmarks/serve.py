"""Serving on the wafer: how fast `wafer serve` simulates a long trace, and a table of latency and
goodput against request rate, colocated vs disaggregated.

    python benchmarks/serve.py [--model llama-3.1-8b] [--target wse3] [--systems 1]
                               [--requests 10000] [--rates 20,60,120] [--table-requests 2000]
                               [--slo-ttft 0.5] [--slo-tpot 0.02] [--name serve]

The step costs are built once per policy (the model placed, its steps simulated on the cost grid;
timed apart); then a trace of ``--requests`` synthetic requests is written as a CSV, read back as
a user's trace is, and served (timed: the issue's bound is 30 s for 10,000 requests on this 2-core
machine), and ``--table-requests`` requests are served at each rate under each policy. Writes
benchmarks/results/NAME.json and .md. Every figure is simulated (waferscale/backends/assumptions.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from results_io import command, heading, machine, write

# this checkout's waferscale, not an installed one (run from a second checkout, it served the installed code)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROMPT, OUTPUT = "uniform:64,512", "uniform:16,256"


def costs(args, policy: str, max_context: int):
    from waferscale.cli.serve import build_policy
    from waferscale.serve.engine_placement import Load
    from waferscale.serve.trace import synthetic

    ns = argparse.Namespace(model=args.model, target=args.target, systems=args.systems, policy=policy,
                            split=args.split, max_batch=max_batch(args, policy), chunk=args.chunk, dtype="f16", seed=0,
                            placement=args.placement)
    # auto: each engine's placement at the load of the table's last rate (as `wafer serve --rate R1,R2,...` picks
    # it: the run whose table it writes)
    rate = float(args.rates.split(",")[-1])
    load = Load.of(synthetic(rate, args.table_requests, prompt=PROMPT, output=OUTPUT, seed=2))
    t0 = time.perf_counter()
    pol, reports = build_policy(ns, max_context, print, load)
    return pol, reports, time.perf_counter() - t0


def max_batch(args, policy: str) -> int:
    own = args.disaggregated_max_batch if policy == "disaggregated" else None
    return own or args.max_batch


def fresh(policy, args, reports, max_context):
    """A new policy object on the same cost grids (engines hold state)."""
    from waferscale.serve.costs import GridCost
    from waferscale.serve.policies import Colocated, Disaggregated

    chunk = min(args.chunk, max_context - 1)
    if isinstance(policy, Colocated):
        return Colocated(policy.engine.cost, max_batch=max_batch(args, "colocated"), chunk=chunk)
    assert isinstance(policy.pre.cost, GridCost)
    return Disaggregated(policy.pre.cost, policy.dec.cost, policy.link, max_batch=max_batch(args, "disaggregated"),
                         chunk=chunk)


def row(policy: str, batch: int, rate: float, s: dict) -> dict:
    ms = lambda d, k: 1e3 * d[k] if d else None  # noqa: E731
    return {"policy": policy, "max_batch": batch, "rate": rate, "completed": s["completed"], "rejected": s["rejected"],
            "ttft_ms_p50": ms(s["ttft_seconds"], "p50"), "ttft_ms_p99": ms(s["ttft_seconds"], "p99"),
            "tpot_ms_p50": ms(s["tpot_seconds"], "p50"), "tpot_ms_p99": ms(s["tpot_seconds"], "p99"),
            "e2e_ms_p99": ms(s["e2e_seconds"], "p99"), "output_tokens_per_s": s["output_tokens_per_second"],
            "tokens_per_s_per_user": s["tokens_per_second_per_user"],
            "goodput_rps": s["goodput_requests_per_second"], "queue_max": s["queue_max"],
            "kv_peak_fraction": s["kv_peak_bytes"] / s["kv_capacity_bytes"]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="llama-3.1-8b")
    p.add_argument("--target", default="wse3")
    p.add_argument("--systems", type=int, default=1)
    p.add_argument("--requests", type=int, default=10000)
    p.add_argument("--rates", default="20,60,120")
    p.add_argument("--speed-rate", type=float, default=20.0)
    p.add_argument("--table-requests", type=int, default=2000)
    p.add_argument("--slo-ttft", type=float, default=0.5)
    p.add_argument("--slo-tpot", type=float, default=0.02)
    p.add_argument("--split", type=float, default=0.5)
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--disaggregated-max-batch", type=int, help="the disaggregated engines' (default: --max-batch)")
    p.add_argument("--chunk", type=int, default=512)
    p.add_argument("--policies", default="colocated,disaggregated")
    p.add_argument("--placement", choices=["auto", "latency", "throughput"], default="auto",
                   help="each engine's placement (`wafer serve --placement`); auto: at the first rate's load")
    p.add_argument("--name", default="serve")
    args = p.parse_args()

    from waferscale.errors import FitError
    from waferscale.serve.loop import serve
    from waferscale.serve.trace import read_trace, synthetic

    max_context = -(-(512 + 256) // 64) * 64  # the longest request the distributions give
    built, rows, speed = {}, [], {}
    failed = {}
    for policy in args.policies.split(","):
        try:
            built[policy] = costs(args, policy, max_context)
        except FitError as e:  # recorded, not hidden: a split that does not fit
            failed[policy] = str(e)
            print(f"{policy}: {e}")
    # speed: a 10,000-request trace through the first policy that placed, read from a CSV file as a user's trace
    first = next(iter(built))
    pol, reports, grid_seconds = built[first]
    reqs = synthetic(args.speed_rate, args.requests, prompt=PROMPT, output=OUTPUT, seed=1)
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "trace.csv"
        f.write_text("arrival,prompt_tokens,output_tokens\n" + "".join(f"{r.arrival!r},{r.prompt},{r.output}\n"
                                                                       for r in reqs))
        t0 = time.perf_counter()
        trace = read_trace(f)
        t1 = time.perf_counter()
        store = serve(trace, fresh(pol, args, reports, max_context), slo_ttft=args.slo_ttft, slo_tpot=args.slo_tpot)
        t2 = time.perf_counter()
    speed = {"policy": first, "requests": len(trace), "rate": args.speed_rate,
             "cost_grid_seconds": grid_seconds, "trace_read_seconds": t1 - t0, "serve_seconds": t2 - t1,
             "steps": store.steps, "under_30_s": (t2 - t0) < 30.0}
    print(f"{len(trace):,} requests: read in {t1 - t0:.2f} s, served in {t2 - t1:.2f} s ({store.steps:,} steps); "
          f"cost grid {grid_seconds:.1f} s")
    for policy, (pol, reports, _) in built.items():
        for rate in [float(x) for x in args.rates.split(",")]:
            reqs = synthetic(rate, args.table_requests, prompt=PROMPT, output=OUTPUT, seed=2)
            s = serve(reqs, fresh(pol, args, reports, max_context), slo_ttft=args.slo_ttft,
                      slo_tpot=args.slo_tpot).summary()
            rows.append(row(policy, max_batch(args, policy), rate, s))
            print(rows[-1])
    grids = {pol: {k: {"max_interpolation_error": v["max_interpolation_error"],
                       "mixed_step_error": v["mixed_step"]["max_error"], "kv_capacity_bytes":
                       v["kv_capacity_bytes"], "kv_capacity_tokens": v["kv_capacity_tokens"],
                       "grid_points": len(v["decode_grid"]["batch"]) * len(v["decode_grid"]["context"])
                       + len(v["prefill_grid"]["chunk"]) * len(v["prefill_grid"]["position"]),
                       "place_seconds": v["place_seconds"], "grid_seconds": v["grid_seconds"],
                       "placement_kind": v.get("placement_kind"), "placement_kind_reason":
                       v.get("placement_kind_reason"), "prefill_placement_reason": v.get("prefill_placement_reason")}
                   for k, v in reports.items() if k != "link"} | {"build_seconds": secs}
             for pol, (_, reports, secs) in built.items()}
    on = f"{args.systems} x {args.target}" if args.systems > 1 else args.target
    record = {"command": command(), "machine": machine(), "model": args.model, "target": args.target,
              "systems": args.systems, "prompt": PROMPT, "output": OUTPUT, "max_context": max_context,
              "max_batch": args.max_batch, "chunk": args.chunk, "split": args.split, "slo_ttft": args.slo_ttft,
              "slo_tpot": args.slo_tpot, "speed": speed, "grids": grids, "rows": rows, "failed": failed}
    md = [heading(f"Serving {args.model} on {on}", record) + ".", "",
          f"Requests: Poisson arrivals, prompt {PROMPT}, output {OUTPUT} tokens; max batch {args.max_batch} "
          f"(disaggregated: {max_batch(args, 'disaggregated')} per engine), "
          f"chunk {args.chunk}, KV rows per sequence {max_context}; SLOs: TTFT <= {args.slo_ttft} s, TPOT <= "
          f"{args.slo_tpot} s; disaggregated split {args.split}.", "",
          "## Speed", "",
          f"{speed['requests']:,} requests ({args.speed_rate:g}/s) read from a CSV trace in "
          f"{speed['trace_read_seconds']:.2f} s and served in {speed['serve_seconds']:.2f} s ({speed['steps']:,} "
          f"steps) after the cost grid, which took {grid_seconds:.1f} s to build (placement and grid simulation).", "",
          "## Cost grids", "", "Error against direct simulation at random points: decode steps, prefill chunks and "
          "mixed steps (a decode batch and a chunk simulated as one run; the largest of these also in its own column).",
          "", "| policy | engine | grid points | max interpolation error | of it, mixed steps | KV capacity (tokens) "
          "| build (s) |", "|---|---|---:|---:|---:|---:|---:|"]
    for pol, g in grids.items():
        for k, v in g.items():
            if k != "build_seconds":
                md.append(f"| {pol} | {k} | {v['grid_points']} | {100 * v['max_interpolation_error']:.2f}% | "
                          f"{100 * v['mixed_step_error']:.2f}% | "
                          f"{v['kv_capacity_tokens']:,} | {v['place_seconds'] + v['grid_seconds']:.1f} |")
    md += [f"| {pol} | - | did not place: {why} | | | | |" for pol, why in failed.items()]
    md += ["", f"Placement (--placement {args.placement}):", ""]
    md += [f"- {pol} {k}: {v['placement_kind_reason']}; prefill: {v['prefill_placement_reason']}"
           for pol, g in grids.items() for k, v in g.items() if k != "build_seconds" and v["placement_kind"]]
    md += ["", f"## Latency and goodput ({args.table_requests:,} requests per row)", "",
           "| policy | max batch | rate (req/s) | TTFT p50 / p99 (ms) | TPOT p50 / p99 (ms) | E2E p99 (ms) | "
           "output tok/s | tok/s per user | goodput (req/s) | queue max | KV peak |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    f = lambda x: f"{x:,.2f}" if x is not None else "-"  # noqa: E731
    for r in rows:
        md.append(f"| {r['policy']} | {r['max_batch']} | {r['rate']:g} | "
                  f"{f(r['ttft_ms_p50'])} / {f(r['ttft_ms_p99'])} | "
                  f"{f(r['tpot_ms_p50'])} / {f(r['tpot_ms_p99'])} | {f(r['e2e_ms_p99'])} | "
                  f"{r['output_tokens_per_s']:,.0f} | {r['tokens_per_s_per_user']:,.0f} | {r['goodput_rps']:,.1f} | "
                  f"{r['queue_max']:,} | {100 * r['kv_peak_fraction']:.1f}% |")
    write(args.name, record, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
