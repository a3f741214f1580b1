"""Speculative decoding in serving: one user's output tokens/s with and without a draft model, at
several assumed acceptance rates, on step costs from the tile simulator.

    python benchmarks/serve_speculative.py [--model llama-3.1-70b] [--systems 4]
        [--draft benchmarks/configs/llama-3.2-1b/config.json] [--draft-systems 1] [--draft-tokens 4]
        [--accepts 0,0.6,0.7,0.8,0.9] [--prompt 128] [--output 256] [--requests 20] [--name serve_speculative]

The target and the draft are placed and their cost grids built once (the target's with a verify
step of k + 1 positions; timed apart), then ``--requests`` requests of ``--prompt`` and ``--output``
tokens arrive one at a time (far apart: no queue, batch 1) and are served with plain decode (the
target's own decode grid) and with the draft at each acceptance rate. The acceptance rates are
assumptions, not measured (the weights are random). Writes benchmarks/results/NAME.json and .md.
"""

from __future__ import annotations

import argparse
import time

from results_io import command, heading, machine, write


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="llama-3.1-70b")
    p.add_argument("--target", default="wse3")
    p.add_argument("--systems", type=int, default=4)
    p.add_argument("--draft", default="benchmarks/configs/llama-3.2-1b/config.json")
    p.add_argument("--draft-systems", type=int, default=1)
    p.add_argument("--draft-split", type=float, default=0.25)
    p.add_argument("--draft-tokens", type=int, default=4)
    p.add_argument("--accepts", default="0,0.6,0.7,0.8,0.9")
    p.add_argument("--prompt", type=int, default=128)
    p.add_argument("--output", type=int, default=256)
    p.add_argument("--requests", type=int, default=20)
    p.add_argument("--placement", choices=["auto", "latency", "throughput"], default="auto",
                   help="the target's and the draft's placement (`wafer serve --placement`); auto: each at batch 1")
    p.add_argument("--name", default="serve_speculative")
    args = p.parse_args()

    from waferscale.backends.machine import get_machine
    from waferscale.serve.draft import speculative_costs
    from waferscale.serve.loop import serve
    from waferscale.serve.policies import Colocated
    from waferscale.serve.speculative import Speculative, expected_tokens
    from waferscale.serve.trace import synthetic

    max_context = -(-(args.prompt + args.output) // 64) * 64
    ns = argparse.Namespace(model=args.model, draft=args.draft, draft_tokens=args.draft_tokens, accept=0.0,
                            draft_split=args.draft_split, draft_systems=args.draft_systems, systems=args.systems)
    # one request at a time: auto's operating point is one sequence (no load given)
    kw = dict(max_context=max_context, max_batch=1, chunk=args.prompt, dtype="f16", seed=0, log=print,
              placement=args.placement, load=None)
    t0 = time.perf_counter()
    spec0, reports = speculative_costs(ns, get_machine(args.target), kw)
    build = time.perf_counter() - t0
    # far apart: every request alone on the machine
    reqs = synthetic(0.01, args.requests, prompt=f"fixed:{args.prompt}", output=f"fixed:{args.output}", seed=0)

    def run(cost) -> dict:
        s = serve(reqs, Colocated(cost, max_batch=1, chunk=args.prompt)).summary()
        return {"ttft_ms_p50": 1e3 * s["ttft_seconds"]["p50"], "tpot_ms_p50": 1e3 * s["tpot_seconds"]["p50"],
                "tokens_per_s_per_user": s["tokens_per_second_per_user"], "steps": s["steps"]}

    # the target alone in the placement its own decode step is faster in (auto chose the target's on the verify step)
    plain, alone = spec0.target, reports["target"]
    kinds = reports["target"].get("decode_placement_kinds")  # each system's placement for the decode step alone
    if kinds and kinds != reports["target"]["placement_kinds"]:
        from waferscale.serve.draft import NAMES
        from waferscale.serve.wafer import region, wafer_costs

        m = get_machine(args.target)
        m = m if args.draft_systems else region(m, args.draft_split, False, NAMES, "--draft-split")
        w = wafer_costs(args.model, m, systems=args.systems, what="target alone: ",
                        **{**kw, "max_context": max_context + args.draft_tokens})  # auto: decode alone
        plain, alone = w.cost, w.report
    rows = [{"decode": f"plain (target alone, {alone['placement_kind']} placement)", "accept": None,
             "tokens_per_step": 1.0, **run(plain)}]
    for a in [float(x) for x in args.accepts.split(",")]:
        cost = Speculative(spec0.target, spec0.draft, args.draft_tokens, a, spec0.handoff)
        rows.append({"decode": f"draft, k = {args.draft_tokens}", "accept": a,
                     "tokens_per_step": expected_tokens(a, args.draft_tokens), **run(cost)})
        print(rows[-1])
    t, d = reports["target"], reports["draft"]
    step = {"target_decode_ms": 1e3 * spec0.target.decode(1, max_context // 2),
            "target_alone_decode_ms": 1e3 * plain.decode(1, max_context // 2),
            "target_verify_ms": 1e3 * spec0.target.verify(1, max_context // 2),
            "draft_decode_ms": 1e3 * spec0.draft.decode(1, max_context // 2), "handoff_ms": 1e3 * spec0.handoff}
    record = {"command": command(), "machine": machine(), "model": args.model, "target": args.target,
              "systems": args.systems, "draft": args.draft, "placement": reports["speculative"]["placement"],
              "prompt": args.prompt, "output": args.output, "max_context": max_context, "build_seconds": build,
              "max_interpolation_error": max(t["max_interpolation_error"], d["max_interpolation_error"]),
              "step_at_mid_context": step, "rows": rows,
              "placements": {e: {k: r.get(k) for k in ("placement_kind", "placement_kind_reason",
                                                       "prefill_placement_kind", "prefill_placement_reason")}
                             for e, r in (("target", t), ("draft", d), ("target alone", alone))}}
    f = lambda x: "-" if x is None else f"{x:g}"  # noqa: E731
    md = [heading(f"Speculative decoding: {args.model} on {args.systems} x {args.target}, draft {args.draft}", record)
          + ".", "",
          f"Placement: {reports['speculative']['placement']}. One request at a time, prompt {args.prompt}, output "
          f"{args.output} tokens, batch 1. Cost grids built in {build:.0f} s; interpolation error at most "
          f"{100 * record['max_interpolation_error']:.2f}%. At position {max_context // 2}: target decode step "
          f"{step['target_decode_ms']:.3f} ms, verify of {args.draft_tokens + 1} positions "
          f"{step['target_verify_ms']:.3f} ms, draft decode step {step['draft_decode_ms']:.3f} ms, hand-off "
          f"{step['handoff_ms']:.4f} ms. Acceptance rates are assumed, not measured.", "",
          *(f"- {e}: {r['placement_kind_reason']}; prefill: {r['prefill_placement_reason']}"
            for e, r in record["placements"].items()), "",
          "| decode | acceptance | tokens per step | TTFT p50 (ms) | TPOT p50 (ms) | tok/s per user |",
          "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        md.append(f"| {r['decode']} | {f(r['accept'])} | {r['tokens_per_step']:.3f} | {r['ttft_ms_p50']:.2f} | "
                  f"{r['tpot_ms_p50']:.3f} | {r['tokens_per_s_per_user']:,.0f} |")
    write(args.name, record, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
