"""`wafer serve`: many requests on one placed model, from a trace (or synthetic arrivals) to TTFT,
TPOT and goodput. ``serve/`` simulates the serving; ``serve/wafer.py`` supplies its step costs from
the tile simulator of the placed program."""

from __future__ import annotations

import math
import time
from pathlib import Path

from .. import limits as L
from ..errors import UsageError
from ..report.outputs import check_output, replace_dir

POLICIES = ("colocated", "disaggregated")


def add_parser(sub) -> None:
    s = sub.add_parser("serve", help="simulate serving a stream of requests (a trace or synthetic arrivals) on the "
                       "placed model: TTFT, TPOT, end-to-end latency, goodput")
    s.add_argument("model", help="zoo name (see `wafer models`) or a Hugging Face causal LM config.json / folder")
    s.add_argument("--target", required=True, help="wse2, wse3, a machine file (my.yaml) or mesh:RxC")
    s.add_argument("--systems", type=int, default=1, help="wafers, a pipeline of layers over them (disaggregated: "
                   "split between prefill and decode by --split) (default 1)")
    s.add_argument("--trace", help="requests: CSV or JSONL with arrival seconds, prompt and output tokens (the Azure "
                   "LLM inference trace columns TIMESTAMP,ContextTokens,GeneratedTokens are read as they are)")
    s.add_argument("--rate", type=float, help="synthetic arrivals: requests per second (with --requests)")
    s.add_argument("--requests", type=int, help="synthetic arrivals: how many requests")
    s.add_argument("--arrivals", choices=["poisson", "gamma"], default="poisson", help="synthetic arrival process "
                   "(default poisson)")
    s.add_argument("--cv", type=float, default=1.0, help="gamma arrivals: the gaps' coefficient of variation "
                   "(default 1: as Poisson's)")
    s.add_argument("--prompt-dist", default="uniform:64,512", help="synthetic prompt tokens: fixed:N, uniform:LO,HI, "
                   "exp:MEAN or lognormal:MEDIAN,SIGMA (default uniform:64,512)")
    s.add_argument("--output-dist", default="uniform:16,256", help="synthetic output tokens, as --prompt-dist "
                   "(default uniform:16,256)")
    s.add_argument("--policy", choices=POLICIES, default="colocated", help="colocated: prefill and decode share every "
                   "core; disaggregated: a prefill region and a decode region (or systems), the KV cache moved "
                   "(default colocated)")
    s.add_argument("--split", type=float, default=0.5, help="disaggregated: the prefill share of the mesh's rows (or "
                   "of --systems) (default 0.5)")
    s.add_argument("--max-batch", type=int, default=16, help="sequences in a batch at most; the program is placed "
                   "with this many KV caches (default 16)")
    s.add_argument("--chunk", type=int, default=512, help="prompt tokens per step at most (chunked prefill; default "
                   "512)")
    s.add_argument("--max-context", type=int, help="KV rows per sequence the program holds (default: the longest "
                   "request, rounded up to 64); longer requests are rejected")
    s.add_argument("--slo-ttft", type=float, help="goodput: time to first token at most this many seconds")
    s.add_argument("--slo-tpot", type=float, help="goodput: time per output token at most this many seconds")
    s.add_argument("--dtype", choices=["f16", "bf16", "f32"], default="f16", help="weights and activations "
                   "(default f16)")
    s.add_argument("--seed", type=int, default=0, help="seed of the synthetic requests and of random weights "
                   "(default 0)")
    s.add_argument("-o", "--output", help="output directory (default out/MODEL-serve)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    s.set_defaults(fn=cmd_serve)


def _check(args) -> None:
    if (args.trace is None) == (args.rate is None):
        raise UsageError("give the requests: --trace FILE, or --rate R --requests K (synthetic arrivals)")
    if args.rate is not None and args.requests is None:
        raise UsageError("--rate needs --requests K (how many requests)")
    if args.trace is not None and args.requests is not None:
        raise UsageError("--requests goes with --rate; a --trace holds its own requests")
    for flag, v, low in (("--max-batch", args.max_batch, 1), ("--chunk", args.chunk, 1),
                         ("--requests", args.requests, 1), ("--max-context", args.max_context, 2)):
        if v is not None:
            L.check_int(flag, v, low, L.MAX_CONTEXT if flag != "--requests" else 10**7)
    for flag, v in (("--slo-ttft", args.slo_ttft), ("--slo-tpot", args.slo_tpot)):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise UsageError(f"{flag} must be a positive number of seconds (got {v})")
    if not 0 < args.split < 1:
        raise UsageError(f"--split {args.split} must be strictly between 0 and 1 (the prefill share)")


def _requests(args):
    from ..serve.trace import read_trace, synthetic

    if args.trace is not None:
        return read_trace(args.trace)
    return synthetic(args.rate, args.requests, arrivals=args.arrivals, cv=args.cv, prompt=args.prompt_dist,
                     output=args.output_dist, seed=args.seed)


def build_policy(args, max_context: int, log):
    """The policy and its cost reports: a colocated engine, or a prefill and a decode engine."""
    from ..backends.machine import get_machine
    from ..serve.policies import Colocated, Disaggregated, Link
    from ..serve.wafer import region, wafer_costs

    machine = get_machine(args.target)
    kw = dict(max_context=max_context, max_batch=args.max_batch, chunk=args.chunk, dtype=args.dtype, seed=args.seed,
              log=log)
    if args.policy == "colocated":
        w = wafer_costs(args.model, machine, systems=args.systems, **kw)
        return Colocated(w.cost, max_batch=args.max_batch, chunk=min(args.chunk, max_context - 1)), {"all": w.report}
    if args.systems > 1:
        k = min(max(int(round(args.systems * args.split)), 1), args.systems - 1)
        pre = wafer_costs(args.model, machine, systems=k, what="prefill systems: ", **kw)
        dec = wafer_costs(args.model, machine, systems=args.systems - k, what="decode systems: ", **kw)
        link = Link(machine.io_bytes_per_s, machine.inter_system_latency_s,
                    f"{machine.inter_system_link_name} (the machine file)")
    else:
        pre = wafer_costs(args.model, region(machine, args.split, True), what="prefill region: ", **kw)
        dec = wafer_costs(args.model, region(machine, args.split, False), what="decode region: ", **kw)
        link = Link(machine.cols * machine.link_bytes_per_cycle * machine.clock_hz,
                    machine.rows * machine.hop_cycles / machine.clock_hz,
                    "the fabric across the regions' boundary: one link per column, one direction (machine.py); "
                    "latency: the mesh's height in hops (our assumption)")
    pol = Disaggregated(pre.cost, dec.cost, link, max_batch=args.max_batch, chunk=min(args.chunk, max_context - 1))
    return pol, {"prefill": pre.report, "decode": dec.report, "link": {"bytes_per_s": link.bytes_per_s,
                                                                       "latency_seconds": link.latency,
                                                                       "basis": link.name}}


def _ms(x) -> str:
    return f"{1e3 * x:10.3f}" if x is not None else f"{'-':>10}"


def table(s: dict) -> str:
    lines = [f"{'':14}{'p50':>10}{'p90':>10}{'p99':>10}{'mean':>10}"]
    for name, key in (("TTFT (ms)", "ttft_seconds"), ("TPOT (ms)", "tpot_seconds"), ("E2E (ms)", "e2e_seconds")):
        d = s.get(key) or {}
        lines.append(f"{name:14}" + "".join(_ms(d.get(k)) for k in ("p50", "p90", "p99", "mean")))
    return "\n".join(lines)


def cmd_serve(args) -> int:
    from ..report.summary import to_json
    from ..serve.loop import serve
    from ..version import __version__
    from .console import progress

    _check(args)
    out = Path(args.output or Path("out") / f"{Path(args.model).name}-serve")
    check_output(out, "serve")  # a bad -o is refused before the work, not after
    log = progress(args.quiet, getattr(args, "verbose", False))
    reqs = _requests(args)
    longest = max(r.prompt + r.output for r in reqs)
    max_context = args.max_context or -(-longest // 64) * 64
    t0 = time.perf_counter()
    policy, costs = build_policy(args, max_context, log)
    t_costs = time.perf_counter() - t0
    log(f"serving {len(reqs):,} requests ({args.policy})")
    t1 = time.perf_counter()
    store = serve(reqs, policy, slo_ttft=args.slo_ttft, slo_tpot=args.slo_tpot)
    t_serve = time.perf_counter() - t1
    s = store.summary()
    worst = max(c["max_interpolation_error"] for c in costs.values() if "max_interpolation_error" in c)
    section = {
        "policy": args.policy, "split": args.split if args.policy == "disaggregated" else None,
        "systems": args.systems, "max_batch": args.max_batch, "chunk": min(args.chunk, max_context - 1),
        "max_context": max_context,
        "requests_from": args.trace if args.trace else {
            "rate": args.rate, "requests": args.requests, "arrivals": args.arrivals, "cv": args.cv,
            "prompt": args.prompt_dist, "output": args.output_dist, "seed": args.seed},
        "summary": s, "timeline": store.timeline(), "costs": costs, "max_interpolation_error": worst,
        "timing": {"cost_grid_seconds": t_costs, "serve_seconds": t_serve},
    }
    if args.policy == "disaggregated":
        section["kv_moved_bytes"] = policy.moved_bytes
    report = {"version": __version__, "model": Path(args.model).name if args.model.endswith(".json") else args.model,
              "target": args.target, "serve": section}
    from ..serve.html import report_html

    files = {"report.json": to_json(report), "requests.jsonl": store.jsonl(),
             "report.html": report_html(report, table(s))}
    replace_dir(out, files, command="serve")
    log.close()
    on = f"{args.systems} x {args.target}" if args.systems > 1 else args.target
    src = args.trace or f"{args.rate:g}/s {args.arrivals}"
    print(f"{report['model']} on {on}, {args.policy}, {len(reqs):,} requests ({src}), max batch {args.max_batch}, "
          f"chunk {section['chunk']}, KV capacity {store.kv_capacity / 2**20:,.1f} MiB")
    print(table(s))
    slo = ", ".join(f"{k} <= {1e3 * v:g} ms" for k, v in (("TTFT", args.slo_ttft), ("TPOT", args.slo_tpot)) if v)
    tps, pu = s.get("output_tokens_per_second"), s.get("tokens_per_second_per_user")
    print(f"output {tps or 0:,.0f} tokens/s ({pu or 0:,.0f} per user); goodput "
          f"{s.get('goodput_requests_per_second') or 0:,.2f} requests/s ({s.get('meeting_slo', 0):,} of "
          f"{s['completed']:,} completed{' meet ' + slo if slo else ''}); {s['rejected']:,} rejected; queue up to "
          f"{s.get('queue_max', 0):,}; KV peak {100 * store.kv_peak / max(store.kv_capacity, 1):.1f}%")
    print(f"step costs: simulated on a grid in {t_costs:.1f} s, interpolation error at most {100 * worst:.2f}%; "
          f"serving simulated in {t_serve:.2f} s -> {out}/")
    return 0
