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
from ..serve.build import build_policy  # noqa: F401  (benchmarks/serve.py's name)

POLICIES = ("colocated", "disaggregated")


def add_parser(sub) -> None:
    s = sub.add_parser("serve", help="simulate serving a stream of requests (a trace or synthetic arrivals) on the "
                       "placed model: TTFT, TPOT, end-to-end latency, goodput")
    s.add_argument("model", help="zoo name (see `wafer models`) or a Hugging Face causal LM config.json / folder")
    s.add_argument("--target", required=True, help="wse2, wse3 or mesh:RxC")
    s.add_argument("--systems", type=int, default=1, help="wafers, a pipeline of layers over them (disaggregated: "
                   "split between prefill and decode by --split) (default 1)")
    s.add_argument("--trace", help="requests: CSV or JSONL with arrival seconds, prompt and output tokens (the Azure "
                   "LLM inference trace columns TIMESTAMP,ContextTokens,GeneratedTokens are read as they are)")
    s.add_argument("--rate", help="synthetic arrivals: requests per second (with --requests); several, separated by "
                   "commas, draw the latency against the load (each served on the same step costs; the table, "
                   "timeline and requests.jsonl are the last rate's)")
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
    s.add_argument("--draft", help="speculative decoding: the draft model (zoo name or config), placed beside the "
                   "target (see --draft-split, --draft-systems)")
    s.add_argument("--accept", type=float, help="speculative decoding: the probability that the target accepts a "
                   "draft token (an assumption you give: 0..1; needed with --draft)")
    s.add_argument("--draft-tokens", type=int, default=4, help="speculative decoding: draft tokens per verify step, k "
                   "(default 4)")
    s.add_argument("--draft-split", type=float, default=0.25, help="speculative decoding on the same wafer: the "
                   "draft's share of the mesh's rows; the target takes the rest (default 0.25)")
    s.add_argument("--draft-systems", type=int, default=0, help="speculative decoding: run the draft on this many "
                   "separate systems instead of a region of the target's wafers (default 0: the same wafers)")
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
    args.rates = _rates(args.rate) if args.rate is not None else []
    if args.rates:
        args.rate = args.rates[-1]  # the run whose table, timeline and requests.jsonl are written
    for flag, v, low in (("--max-batch", args.max_batch, 1), ("--chunk", args.chunk, 1),
                         ("--requests", args.requests, 1), ("--max-context", args.max_context, 2)):
        if v is not None:
            L.check_int(flag, v, low, L.MAX_CONTEXT if flag != "--requests" else 10**7)
    for flag, v in (("--slo-ttft", args.slo_ttft), ("--slo-tpot", args.slo_tpot)):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise UsageError(f"{flag} must be a positive number of seconds (got {v})")
    if not 0 < args.split < 1:
        raise UsageError(f"--split {args.split} must be strictly between 0 and 1 (the prefill share)")
    _check_draft(args)


def _check_draft(args) -> None:
    if args.draft is None:
        if args.accept is not None:
            raise UsageError("--accept is speculative decoding's acceptance rate: give the draft model with --draft")
        return
    if args.accept is None:
        raise UsageError("--draft needs --accept P: the probability that the target accepts a draft token (0..1)")
    if not (math.isfinite(args.accept) and 0 <= args.accept <= 1):
        raise UsageError(f"--accept {args.accept} must be a probability between 0 and 1")
    L.check_int("--draft-tokens", args.draft_tokens, 1, 64)
    L.check_int("--draft-systems", args.draft_systems, 0, L.MAX_SYSTEMS)
    if not 0 < args.draft_split < 1:
        raise UsageError(f"--draft-split {args.draft_split} must be strictly between 0 and 1 (the draft's share)")
    if args.policy == "disaggregated":
        raise UsageError("not supported: speculative decoding (--draft) with --policy disaggregated; use colocated")


def _rates(text: str) -> list[float]:
    out = []
    for x in str(text).split(","):
        try:
            v = float(x)
        except ValueError:
            v = math.nan
        if not (math.isfinite(v) and v > 0):
            raise UsageError(f"--rate {text!r}: give a positive number of requests per second, or several separated "
                             "by commas")
        out.append(v)
    if len(set(out)) != len(out):
        raise UsageError(f"--rate {text!r} names a rate twice")
    return out


def _requests(args, rate=None):
    from ..serve.trace import read_trace, synthetic

    if args.trace is not None:
        return read_trace(args.trace)
    return synthetic(rate, args.requests, arrivals=args.arrivals, cv=args.cv, prompt=args.prompt_dist,
                     output=args.output_dist, seed=args.seed)


def _ms(x) -> str:
    return f"{1e3 * x:10.3f}" if x is not None else f"{'-':>10}"


def table(s: dict) -> str:
    lines = [f"{'':14}{'p50':>10}{'p90':>10}{'p99':>10}{'mean':>10}"]
    for name, key in (("TTFT (ms)", "ttft_seconds"), ("TPOT (ms)", "tpot_seconds"), ("E2E (ms)", "e2e_seconds")):
        d = s.get(key) or {}
        lines.append(f"{name:14}" + "".join(_ms(d.get(k)) for k in ("p50", "p90", "p99", "mean")))
    return "\n".join(lines)


def load_point(rate: float, s: dict) -> dict:
    """One rate's point of the latency-against-load curve."""
    pick = lambda d: {k: d.get(k) for k in ("p50", "p90", "p99")}  # noqa: E731
    return {"rate": rate, "completed": s["completed"], "rejected": s["rejected"],
            "ttft_seconds": pick(s.get("ttft_seconds") or {}), "tpot_seconds": pick(s.get("tpot_seconds") or {}),
            "e2e_seconds": pick(s.get("e2e_seconds") or {}),
            "output_tokens_per_second": s.get("output_tokens_per_second"),
            "goodput_requests_per_second": s.get("goodput_requests_per_second"), "queue_max": s.get("queue_max", 0)}


def load_table(load: list[dict]) -> str:
    lines = [f"{'rate (/s)':>10}{'TTFT p50':>10}{'TTFT p99':>10}{'TPOT p50':>10}{'TPOT p99':>10}{'tok/s':>10}"
             f"{'goodput':>12}   (ms; goodput in requests/s)"]
    for p in load:
        t, o = p["ttft_seconds"], p["tpot_seconds"]
        lines.append(f"{p['rate']:>10g}" + "".join(_ms(x) for x in (t["p50"], t["p99"], o["p50"], o["p99"]))
                     + f"{p['output_tokens_per_second'] or 0:>10,.0f}{p['goodput_requests_per_second'] or 0:>12,.2f}")
    return "\n".join(lines)


def host_section(t_start: float, t_costs: float, t_serve: float, costs: dict) -> dict:
    """What depends on the host and the moment, together (as `wafer compile`'s ``host``): the run's
    wall-clock seconds, its peak memory, and each engine's placement and cost-grid time. The same
    figures stay where they were first written (``serve.timing``, ``serve.costs.*.*_seconds``)."""
    from ..compiled import peak_rss_bytes

    return {"seconds": time.perf_counter() - t_start, "peak_rss_bytes": peak_rss_bytes(),
            "cost_grid_seconds": t_costs, "serve_seconds": t_serve,
            "engines": {k: {"place_seconds": v["place_seconds"], "grid_seconds": v["grid_seconds"]}
                        for k, v in costs.items() if "grid_seconds" in v}}


def cmd_serve(args) -> int:
    from ..report.summary import to_json
    from ..serve.loop import serve
    from ..version import __version__
    from .console import progress

    t_start = time.perf_counter()
    _check(args)
    out = Path(args.output or Path("out") / f"{Path(args.model).name}-serve")
    check_output(out, "serve")  # a bad -o is refused before the work, not after
    log = progress(args.quiet, getattr(args, "verbose", False))
    runs = [_requests(args, rate) for rate in args.rates] if args.rates else [_requests(args)]
    reqs = runs[-1]
    longest = max(r.prompt + r.output for run in runs for r in run)
    max_context = args.max_context or -(-longest // 64) * 64
    t0 = time.perf_counter()
    policy, costs = build_policy(args, max_context, log)
    t_costs = time.perf_counter() - t0
    spec = costs.pop("speculative", None)
    log(f"serving {len(reqs):,} requests ({args.policy})")
    t1 = time.perf_counter()
    load = []
    for i, run in enumerate(runs):
        store = serve(run, policy if i == len(runs) - 1 else policy.fresh(), slo_ttft=args.slo_ttft,
                      slo_tpot=args.slo_tpot)
        if args.rates:
            load.append(load_point(args.rates[i], store.summary()))
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
    if spec is not None:
        section["speculative"] = spec
    if len(load) > 1:
        section["load"] = load
        section["requests_from"]["rates"] = args.rates
    if args.policy == "disaggregated":
        section["kv_moved_bytes"] = policy.moved_bytes
    report = {"version": __version__, "model": Path(args.model).name if args.model.endswith(".json") else args.model,
              "target": args.target, "serve": section, "host": host_section(t_start, t_costs, t_serve, costs)}
    from ..serve.html import report_html

    files = {"report.json": to_json(report), "requests.jsonl": store.jsonl(),
             "report.html": report_html(report, table(s) + ("\n\n" + load_table(load) if len(load) > 1 else ""))}
    replace_dir(out, files, command="serve")
    log.close()
    on = f"{args.systems} x {args.target}" if args.systems > 1 else args.target
    src = args.trace or f"{args.rate:g}/s {args.arrivals}"
    print(f"{report['model']} on {on}, {args.policy}, {len(reqs):,} requests ({src}), max batch {args.max_batch}, "
          f"chunk {section['chunk']}, KV capacity {store.kv_capacity / 2**20:,.1f} MiB")
    if spec is not None:
        print(f"speculative decoding: draft {spec['draft']}, {spec['draft_tokens']} draft tokens a step, acceptance "
              f"{spec['accept']:g} (assumed), {spec['tokens_per_verify_step']:.3f} tokens per verify step")
    print(table(s))
    if len(load) > 1:
        print("latency against load (each rate's requests on the same step costs):")
        print(load_table(load))
    slo = ", ".join(f"{k} <= {1e3 * v:g} ms" for k, v in (("TTFT", args.slo_ttft), ("TPOT", args.slo_tpot)) if v)
    tps, pu = s.get("output_tokens_per_second"), s.get("tokens_per_second_per_user")
    print(f"output {tps or 0:,.0f} tokens/s ({pu or 0:,.0f} per user); goodput "
          f"{s.get('goodput_requests_per_second') or 0:,.2f} requests/s ({s.get('meeting_slo', 0):,} of "
          f"{s['completed']:,} completed{' meet ' + slo if slo else ''}); {s['rejected']:,} rejected; queue up to "
          f"{s.get('queue_max', 0):,}; KV peak {100 * store.kv_peak / max(store.kv_capacity, 1):.1f}%")
    print(f"step costs: simulated on a grid in {t_costs:.1f} s, interpolation error at most {100 * worst:.2f}%; "
          f"serving simulated in {t_serve:.2f} s -> {out}/")
    return 0
