"""`wafer serve`: many requests on one placed model, from a trace (or synthetic arrivals) to TTFT,
TPOT and goodput. A front over the mode ``serve`` (``modes/serve.py``): the options become a run
spec, the mode runs it and makes the report; this writes the output directory and prints the
table. ``serve/`` simulates the serving; ``serve/wafer.py`` supplies its step costs from the tile
simulator of the placed program."""

from __future__ import annotations

from pathlib import Path

from ..report.outputs import check_output, replace_dir

POLICIES = ("colocated", "disaggregated")  # modes/serve.py's (a test holds them equal): importing a mode
# imports torch, which a mistyped name on the command line must not wait for (tests/test_ux.py)


def __getattr__(name: str):
    """The mode's helpers under their old names here (the tests' and benchmarks/serve.py's), imported
    when first asked for."""
    if name in ("load_point", "load_table", "table"):
        from ..modes import serve

        return getattr(serve, name)
    if name == "build_policy":
        from ..serve.build import build_policy

        return build_policy
    raise AttributeError(name)

# the mode's options, from the command line's (their defaults are the mode's: modes/serve.py OPTIONS)
OPTION_ARGS = ("trace", "rate", "requests", "arrivals", "cv", "prompt_dist", "output_dist", "policy", "split", "draft",
               "accept", "draft_tokens", "draft_split", "draft_systems", "max_batch", "chunk", "max_context",
               "slo_ttft", "slo_tpot", "placement")


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
    s.add_argument("--mode", choices=["pipelined", "streaming", "auto"], default=None, help="execution mode on the "
                   "target, as `wafer compile --mode`: pipelined (every weight and KV cache in SRAM; the default), "
                   "streaming (each layer's weights streamed from MemoryX once a step for the whole batch, the KV "
                   "caches held in MemoryX: admission bounded by what MemoryX holds beside the weights; colocated, "
                   "one system), or auto (pipelined when it fits, streaming otherwise)")
    s.add_argument("--placement", choices=["auto", "latency", "throughput"], default="auto", help="each engine's "
                   "placement, as `wafer compile --generate --placement`: latency (every kernel where it finishes "
                   "soonest, cores shared in time), throughput (every kernel its own rectangle), or auto (both "
                   "simulated at the engine's operating point, the decode step at the batch the requests would keep "
                   "running, and the faster kept; report.json serve.costs.*.placement_kind_reason) (default auto)")
    s.add_argument("--dtype", choices=["f16", "bf16", "f32"], default="f16", help="weights and activations "
                   "(default f16)")
    s.add_argument("--seed", type=int, default=0, help="seed of the synthetic requests and of random weights "
                   "(default 0)")
    s.add_argument("-o", "--output", help="output directory (default out/MODEL-serve)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    s.set_defaults(fn=cmd_serve)


def run_spec(args):
    """The run spec of `wafer serve`'s options."""
    from ..modes import RunSpec

    return RunSpec(args.model, "serve", {k: getattr(args, k) for k in OPTION_ARGS}, target=args.target,
                   systems=args.systems, dtype=args.dtype, seed=args.seed, execution=getattr(args, "mode", None))


def serve_run(run, log=lambda msg: None, ready=lambda: None):
    """A serve run from its spec through the driver (``driver.compile_run``, as every mode's run): the
    options checked, then ``ready`` (the front's own checks, before the work), then the run; what the
    mode made (``modes.serve.Served``)."""
    from dataclasses import replace

    from ..driver import compile_run

    return compile_run(replace(run, mode="serve"), log, ready).outcome


def cmd_serve(args) -> int:
    from ..modes.serve import load_table, table
    from .console import progress

    out = Path(args.output or Path("out") / f"{Path(args.model).name}-serve")
    log = progress(args.quiet, getattr(args, "verbose", False))
    served = serve_run(run_spec(args), log, ready=lambda: check_output(out, "serve"))  # a bad -o: before the work
    report, store, load = served.report, served.store, served.load
    replace_dir(out, served.files, command="serve")
    log.close()
    section, s = report["serve"], report["serve"]["summary"]
    src = section["requests_from"]
    spec, t = section.get("speculative"), section["timing"]
    on = f"{args.systems} x {args.target}" if args.systems > 1 else args.target
    src = args.trace or f"{src['rate']:g}/s {src['arrivals']}"
    streamed = any(e["execution"] == "streaming" for e in report["run"]["engines"].values())
    print(f"{report['model']} on {on}, {args.policy}{', weight streaming' if streamed else ''}, {served.requests:,} "
          f"requests ({src}), max batch {args.max_batch}, chunk {section['chunk']}, KV capacity "
          f"{store.kv_capacity / 2**20:,.1f} MiB{' in MemoryX' if streamed else ''}")
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
    kinds = ", ".join(f"{e}: {c['placement_kind']}" + (f" (prefill {c['prefill_placement_kind']})" if
                      c["prefill_placement_kind"] != c["placement_kind"] else "")
                      for e, c in section["costs"].items() if "placement_kind" in c)
    if kinds:
        print(f"placement: {kinds} (--placement {args.placement}; why: report.json "
              "serve.costs.*.placement_kind_reason)")
    print(f"step costs: simulated on a grid in {t['cost_grid_seconds']:.1f} s, interpolation error at most "
          f"{100 * section['max_interpolation_error']:.2f}%; serving simulated in {t['serve_seconds']:.2f} s "
          f"-> {out}/")
    return 0
