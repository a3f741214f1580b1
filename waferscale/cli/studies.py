"""`wafer bench` and `wafer sweep`: the command lines of the studies (``bench``, ``sweep``), imported
only when one runs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import UsageError
from ..report.outputs import check_output
from .console import EXIT_BUG
from .console import progress as _log


def cmd_bench(args) -> int:
    from ..studies import bench

    check_output(args.output, "bench")  # a bad -o is refused before the work, not after
    models = bench.models_arg(args.models) if args.models else list(bench.DEFAULT_MODELS)
    if args.batch < 1 or (args.seq is not None and args.seq < 1):
        raise UsageError(f"--batch and --seq must be at least 1 (got {args.batch} and {args.seq})")
    if args.pipeline and args.mode != "inference":
        raise UsageError(f"--pipeline is a forward pass's: drop it or --mode {args.mode}")
    variants = bench.given(args.pipeline) if args.pipeline else bench.variants(
        args.mode, prompt_len=args.prompt_len, new_tokens=args.new_tokens)
    total = len(models) * len(variants)
    from tqdm import tqdm

    # disable=None: no bar where stderr is not a terminal (CI, a pipe), where its redraws would pile up
    with tqdm(total=total, desc="wafer bench", unit="run", disable=True if args.quiet else None,
              file=sys.stderr) as bar:
        def progress(what: str) -> None:
            bar.set_postfix_str(what)
            bar.update(1)

        rows = bench.run(models, variants, target=args.target, batch=args.batch, seq=args.seq, progress=progress)
    print(bench.table(rows), end="")
    paths = bench.write(rows, Path(args.output))
    print(f"wrote {', '.join(str(x) for x in paths)}", file=sys.stderr)
    return 0


def cmd_sweep(args) -> int:
    from ..studies.sweep import run_sweep, summary
    from ..studies.sweep_spec import flags_spec, load_spec, parse_spec

    data, labels = flags_spec(args)
    if args.workers is not None and args.workers < 0:
        raise UsageError(f"--workers must be 0 (no Ray: one point after another) or more (got {args.workers})")
    if args.spec:
        spec = load_spec(args.spec, data, labels)
    elif data:
        spec = parse_spec(data, "wafer sweep", labels)
    else:
        raise UsageError("wafer sweep needs a spec file (e.g. examples/sweep.yaml) or --models and --meshes")
    out = Path(args.output or Path("out") / (Path(args.spec).stem if args.spec else "sweep"))
    check_output(out, "sweep", replace=False)  # a bad -o is refused before the work, not after
    log = _log(args.quiet, args.verbose)
    log(f"{len(spec.points())} point(s) ({'grid' if spec.sample is None else f'random sample, seed {spec.seed}'})")
    try:
        result = run_sweep(spec, out, workers=args.workers, address=args.address, use_ray=not args.no_ray, log=log,
                           progress=not args.quiet)
    except KeyboardInterrupt:
        print(f"wafer: interrupted; the points done are in {out}/points.jsonl: run the same command again to "
              "resume", file=sys.stderr)
        return 130
    sys.stdout.write(summary(result, out))
    if result.internal:  # as main() reports a bug: one line, the tracebacks kept in a file
        import tempfile

        fd, path = tempfile.mkstemp(prefix="wafer-bug-", suffix=".log")
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(result.internal))
        print(f"wafer: internal error (a bug in waferscale, please report it) in {len(result.internal)} point(s), "
              f"rows marked 'internal error' and not saved in points.jsonl, so a run after the fix computes them; "
              f"the tracebacks are in {path}", file=sys.stderr)
        return EXIT_BUG
    return 0


def add_parser(sub) -> None:
    s = sub.add_parser("bench", help="benchmark the passes: an ablation of the default pipeline (or the given "
                       "pipelines) on a set of models, as one table and bench.json/csv/png")
    s.add_argument("--models", default=None, help="comma-separated models (default: cerebras-gpt-111m,"
                   "cerebras-gpt-1.3b)")
    s.add_argument("-p", "--pipeline", action="append", metavar="PIPELINE",
                   help="a pipeline to run instead of the ablation (repeatable; each compared with the first)")
    s.add_argument("--target", default="wse2", help="wse2 (default), wse3, a machine file (my.yaml) or mesh:RxC[,...]")
    s.add_argument("--batch", type=int, default=4, help="samples (default 4)")
    s.add_argument("--seq", type=int, default=None, help="sequence length (default: the model's context)")
    s.add_argument("--mode", choices=("inference", "train", "generate"), default="inference",
                   help="what each variant runs: a forward pass (default), a training step or generation; some "
                   "of train's and generate's variants runs on 2 systems (data parallel, a pipeline of layers)")
    s.add_argument("--prompt-len", type=int, default=128, help="with --mode generate: the prompt (default 128)")
    s.add_argument("--new-tokens", type=int, default=128, help="with --mode generate: new tokens (default 128)")
    s.add_argument("-o", "--output", default="out/bench", help="output directory (default out/bench)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(fn=cmd_bench)

    s = sub.add_parser("sweep", help="a design-space sweep (grid or random sample) over machines, models, batch, "
                       "seq and mode, each point compiled and simulated on Ray: sweep.csv/json and pareto.png")
    s.add_argument("spec", nargs="?", help="a YAML or JSON spec (see examples/sweep.yaml); the flags below "
                   "replace its keys or, without it, make the spec")
    s.add_argument("--models", metavar="A,B,..", help="models (zoo names or Hugging Face config paths)")
    s.add_argument("--meshes", metavar="A,B,..", help="RxC meshes, e.g. 128x128,256x256")
    for flag, what in [("batch", "batch sizes (default 1)"), ("seq", "sequence lengths (default: the model's context)"),
                       ("dtype", "f16, bf16 or f32 (default f16)"), ("mode", "pipelined, streaming or auto (default)"),
                       ("density", "fractions in (0, 1] of each linear weight kept "
                        "(sparsify{density=D}; default 1, dense)"), ("sram-kib", "KiB of SRAM per core (default 48)"),
                       ("fmac", "f16 FMAC lanes per core (default 4)"), ("clock-ghz", "clocks in GHz (default 1.1)"),
                       ("io-gbs", "system I/O in GB/s (default 150)"), ("link-bytes", "bytes per link per cycle: 4 "
                                                                       "only (the simulator's one wavelet per cycle)")]:
        s.add_argument(f"--{flag}", metavar="A,B,..", help=what)
    s.add_argument("-p", "--pipeline", action="append", metavar="PIPELINE",
                   help="an explicit pipeline instead of --mode (repeatable: an axis; default: the one --mode makes)")
    s.add_argument("--random", type=int, metavar="N", help="a random sample of N points of the grid (default: "
                   "every point)")
    s.add_argument("--seed", type=int, default=0, help="the seed of --random (default 0)")
    s.add_argument("-o", "--output", help="output directory (default out/SPEC or out/sweep); a rerun with the "
                   "same directory resumes from its points.jsonl")
    s.add_argument("--workers", type=int, help="Ray CPUs (default: every CPU of this machine); with --address, "
                   "points at once; 0 runs without Ray, one point after another")
    s.add_argument("--address", help="join this Ray cluster (e.g. ray://head:10001) instead of starting a local Ray "
                   "(default: a local Ray for this run)")
    s.add_argument("--no-ray", action="store_true", help="run the points in this process, one after another")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    s.set_defaults(fn=cmd_sweep)
