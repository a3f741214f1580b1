"""serve: many requests on one placed model, from a trace (or synthetic arrivals) to TTFT, TPOT and
goodput (``waferscale/serve/``: the scheduler, policies and metrics; ``serve/wafer.py``: the step
costs from the tile simulator of the placed program). It runs through the driver
(``driver.compile_run``, so ``wafer replay`` compiles a serve report again, and a ``wafer sweep``
serve point is this mode); `wafer serve` is a front over it.

Its report is its own (``own_report``: the driver's ``assemble`` describes one placed program, and
serving places one per engine): ``version``, ``model`` (the name), ``target``, ``serve`` (the
section), ``host``, and, as every mode's, ``run`` (the spec, with ``executed``: each engine's
pipeline, by engine: ``all``, or ``prefill`` and ``decode``, or ``target`` and ``draft``; and
``engines``: per engine of those, its role under the policy, its execution and placement mode, its
machine or region) and ``mode`` (the placement's execution mode).

The execution mode is the spec's ``execution`` (`wafer serve --mode`, as `wafer compile --mode`):
``pipelined`` (the default: every weight and KV cache in SRAM), ``streaming`` (weights and KV
caches streamed from MemoryX, ``serve/streamed.py``; one colocated engine on one system), ``auto``
(pipelined when it fits)."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .. import limits as L
from ..errors import UsageError
from ..passes.place import MODES as PLACED
from .base import Context, Mode, RunSpec, register_mode

POLICIES = ("colocated", "disaggregated")
EXECUTIONS = ("pipelined", "streaming", "auto")  # RunSpec.execution, `wafer serve --mode` (as `wafer compile`'s)
REQUEST_OPTIONS = ("trace", "rate", "requests", "arrivals", "cv", "prompt_dist", "output_dist", "slo_ttft", "slo_tpot")
BUILT_KEPT = 4  # placed engines and cost grids kept in the process, the latest (``_built``)
_BUILT: dict = {}
OPTIONS = {"trace": None, "rate": None, "requests": None, "arrivals": "poisson", "cv": 1.0,
           "prompt_dist": "uniform:64,512", "output_dist": "uniform:16,256", "policy": "colocated", "split": 0.5,
           "draft": None, "accept": None, "draft_tokens": 4, "draft_split": 0.25, "draft_systems": 0,
           "max_batch": 16, "chunk": 512, "max_context": None, "slo_ttft": None, "slo_tpot": None,
           "placement": "auto"}
PLACEMENTS = ("auto", "latency", "throughput")  # `wafer serve --placement` (serve/engine_placement.py)


def serve_args(run: RunSpec) -> SimpleNamespace:
    """The run as the namespace that ``serve.build.build_policy`` and the checks read."""
    return SimpleNamespace(model=run.model, target=run.target, systems=run.systems or 1, dtype=run.dtype or "f16",
                           seed=run.seed, execution=run.execution or "pipelined", **run.options)


def rates(text) -> list[float]:
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


def _check(args) -> None:
    if args.target is None:
        raise UsageError("serve needs a target: --target wse2, wse3 or mesh:RxC")
    if args.policy not in POLICIES:
        raise UsageError(f"--policy {args.policy!r} is not one of {', '.join(POLICIES)}")
    if (args.trace is None) == (args.rate is None):
        raise UsageError("give the requests: --trace FILE, or --rate R --requests K (synthetic arrivals)")
    if args.rate is not None and args.requests is None:
        raise UsageError("--rate needs --requests K (how many requests)")
    if args.trace is not None and args.requests is not None:
        raise UsageError("--requests goes with --rate; a --trace holds its own requests")
    if args.rate is not None:
        rates(args.rate)
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
    _check_execution(args)
    if args.placement not in PLACEMENTS:
        raise UsageError(f"--placement {args.placement!r} is not one of {', '.join(PLACEMENTS)}")


def _check_execution(args) -> None:
    """Weight streaming serves one colocated engine on one system (``serve/streamed.py``)."""
    if args.execution not in EXECUTIONS:
        raise UsageError(f"--mode {args.execution!r} is not one of {', '.join(EXECUTIONS)}")
    if args.execution != "streaming":
        return
    latency = "--placement latency (a weight-streaming step has one layer on the whole wafer at a time)"
    for given, what in ((args.placement == "latency", latency),
                        (args.policy == "disaggregated", "--policy disaggregated (both regions would share one "
                         "MemoryX link, which is not costed)"), (args.draft is not None, "--draft"),
                        (args.systems > 1, "--systems > 1 (MemoryX and SwarmX over several systems are not costed "
                         "for serving)")):
        if given:
            raise UsageError(f"not supported: serving in weight-streaming mode (--mode streaming) with {what}; use "
                             "--mode pipelined")


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


@dataclass
class Served:
    """What a serve run made: its report, the files of its output directory, the last run's metrics."""

    report: dict
    files: dict[str, str]
    store: Any  # serve.metrics' store of the last rate's run (requests.jsonl, the table)
    load: list = field(default_factory=list)  # the latency-against-load points (several rates)
    requests: int = 0


@register_mode
class Serve(Mode):
    name = "serve"
    section = "serve"
    graphs = ("decode", "prefill")  # each engine's step graphs (run.executed: each engine's pipeline)
    options = OPTIONS
    own_report = True
    summary = "serving: a stream of requests on the placed model, continuous batching, TTFT, TPOT and goodput"

    def resolve(self, run: RunSpec) -> RunSpec:
        """As every mode's, and the spec's own defaults as `wafer serve`'s (one system, f16)."""
        return replace(super().resolve(run), systems=run.systems or 1, dtype=run.dtype or "f16")

    def check(self, run: RunSpec) -> None:
        _check(serve_args(run))

    def run(self, ctx: Context) -> Served:
        from ..report.summary import to_json
        from ..serve.html import report_html
        from ..serve.loop import serve
        from ..version import __version__

        t_start = time.perf_counter()
        run, log = ctx.run, ctx.log
        args = serve_args(run)
        rs = rates(args.rate) if args.rate is not None else []
        if rs:
            args.rate = rs[-1]  # the run whose table, timeline and requests.jsonl are written
        runs = [_requests(args, rate) for rate in rs] if rs else [_requests(args)]
        reqs = runs[-1]
        longest = max(r.prompt + r.output for one in runs for r in one)
        max_context = args.max_context or -(-longest // 64) * 64
        policy, costs, t_costs, shared = _built(run, args, max_context, log, reqs)
        spec = costs.pop("speculative", None)
        for engine, c in costs.items():  # what ran, as every mode records it (run.executed)
            if "pipeline" in c:
                ctx.executed[engine] = c["pipeline"].split(",")
        log(f"serving {len(reqs):,} requests ({args.policy})")
        t1 = time.perf_counter()
        load = []
        for i, one in enumerate(runs):
            store = serve(one, policy if i == len(runs) - 1 else policy.fresh(), slo_ttft=args.slo_ttft,
                          slo_tpot=args.slo_tpot)
            if rs:
                load.append(load_point(rs[i], store.summary()))
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
        section["placement"] = {"asked": args.placement, **{e: c["placement_kind"] for e, c in costs.items()
                                                            if "placement_kind" in c}}
        if len(load) > 1:
            section["load"] = load
            section["requests_from"]["rates"] = rs
        if args.policy == "disaggregated":
            section["kv_moved_bytes"] = policy.moved_bytes
        placed = sorted({c["placement_mode"] for c in costs.values() if "placement_mode" in c})
        model = str(run.model)
        report = {"version": __version__, "model": Path(model).name if model.endswith(".json") else model,
                  "target": args.target, "serve": section,
                  "host": host_section(t_start, t_costs, t_serve, costs) | {"cost_grid_shared": shared},
                  "run": run.record() | {"executed": ctx.executed_pipelines(), "engines": engines(args, costs)},
                  "mode": "; ".join(PLACED.get(m, m) for m in placed)}
        files = {"report.json": to_json(report), "requests.jsonl": store.jsonl(),
                 "report.html": report_html(report, table(s) + ("\n\n" + load_table(load) if len(load) > 1 else ""))}
        return Served(report, files, store, load, len(reqs))


ROLES = {"all": "prefill and decode", "prefill": "prefill", "decode": "decode",
         "target": "prefill and the verify steps (speculative decoding's target)",
         "draft": "prefill and the draft decode steps (speculative decoding's draft)"}


ENGINE_PLACEMENT = ("placement_kind", "placement_kind_reason", "prefill_placement_kind")


def engines(args, costs: dict) -> dict:
    """``run.engines``: per engine (the keys of ``run.executed``) what it does under the policy, where
    it is placed and how (layer-pipelined or weight-streaming), and its pipeline."""
    return {e: {"policy": args.policy, "role": ROLES.get(e, e), "execution": c.get("execution", "pipelined"),
                "placement": PLACED.get(c["placement_mode"], c["placement_mode"]), "machine": c["machine"],
                "systems": c["systems"], "pipeline": c["pipeline"],
                **({"execution_reason": c["execution_reason"]} if "execution_reason" in c else {}),
                **{k: c[k] for k in ENGINE_PLACEMENT if k in c}}
            for e, c in costs.items() if "pipeline" in c}


def _built(run: RunSpec, args, max_context: int, log, reqs=()):
    """The policy and its cost reports (``serve.build.build_policy``), and the seconds that took, and
    whether they were shared: the engines of one spec (all but the requests' options) are placed and
    their cost grids built once in a process and served fresh after (a sweep's rates, a replay), the
    latest ``BUILT_KEPT`` of them kept. Under ``--placement auto`` the requests' load (``reqs``, the
    run whose table is written) picks each engine's placement, so it is part of the key."""
    from ..serve.build import build_policy
    from ..serve.engine_placement import Load

    load = Load.of(reqs) if args.placement == "auto" and args.execution != "streaming" else None
    opts = tuple(sorted((k, repr(v)) for k, v in run.options.items() if k not in REQUEST_OPTIONS))
    key = (run.model, args.target, args.systems, args.dtype, args.seed, args.execution, max_context, opts, load)
    if isinstance(run.model, str) and key in _BUILT:
        policy, costs = _BUILT[key]
        return policy.fresh(), copy.deepcopy(costs), 0.0, True
    t0 = time.perf_counter()
    policy, costs = build_policy(args, max_context, log, load)
    t = time.perf_counter() - t0
    if isinstance(run.model, str):
        _BUILT[key] = (policy, copy.deepcopy(costs))
        while len(_BUILT) > BUILT_KEPT:
            del _BUILT[next(iter(_BUILT))]
        policy = policy.fresh()
    return policy, costs, t, False
