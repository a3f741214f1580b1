"""The ``wafer`` command line. Every user error is one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import limits as L
from .console import comma_names as _names
from .console import progress as _log
from .errors import UsageError, WaferError
from .report.outputs import check_output
from .version import __version__

EXIT_USAGE = 2  # a problem with the user's input: one line on stderr
EXIT_BUG = 3  # a bug in waferscale: one line on stderr, the traceback in a log file


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + message; we print one line
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def cmd_models(args) -> int:
    from .frontend.zoo import ZOO

    print(f"{'name':<20} {'layers':>6} {'d_model':>7} {'heads':>5} {'d_ffn':>6} {'context':>7} {'params':>16}")
    for m in ZOO.values():
        print(f"{m.name:<20} {m.layers:>6} {m.d_model:>7} {m.heads:>5} {m.d_ffn:>6} {m.context:>7} "
              f"{m.param_count():>16,}")
    return 0


def _generate_flags(args, flags: tuple[str, ...]) -> None:
    """Generation options given without --generate, or options generation does not take: one line."""
    if not args.generate:
        given = [f for f in flags if getattr(args, f.lstrip("-").replace("-", "_")) is not None]
        if given:
            raise UsageError(f"{', '.join(given)} set(s) up generation: add --generate")


def cmd_compile(args) -> int:
    import waferscale

    if args.generate:
        for flag, given in (("--train", args.train), ("--sparsity", args.sparsity is not None),
                            ("--lora", args.lora is not None)):
            if given:
                raise UsageError(f"not supported: {flag} with --generate")
        from .cli_generate import cmd_compile_generate

        return cmd_compile_generate(args)
    _generate_flags(args, ("--prompt-len", "--new-tokens", "--placement"))
    log = _log(args.quiet)
    model = Path(args.model)
    out = Path(args.output or Path("out") / (model.stem if model.suffix in (".mlir", ".ir") else model.name))
    check_output(out, "compile")  # a bad -o is refused before the work, not after
    if args.systems is not None and not args.train:
        raise UsageError("--systems N is data-parallel training (add --train) or a pipeline of wafers for generation "
                         "(add --generate)")
    if args.lora is not None and not args.train:
        raise UsageError("--lora fine-tunes: add --train")
    if args.train:
        from .cli_train import cmd_compile_train

        return cmd_compile_train(args, log, out)
    c = waferscale.compile(args.model, batch=args.batch, seq=args.seq, dtype=args.dtype, seed=args.seed, log=log,
                           frontend=args.frontend, target=args.target, pipeline=args.pipeline,
                           print_ir_after=_names(args.print_ir_after), print_ir_after_all=args.print_ir_after_all,
                           compile_to=args.compile_to, mode=args.mode, sparsity=args.sparsity)
    for p in c.write(out):
        log(f"wrote {p}")
    m = c.report["model"]
    print(f"{m['name']}: {m['params']:,} parameters, {m['flops_per_token']:.4g} FLOPs/token, "
          f"{c.report['ir']['op_count']} ops -> {out}/")
    if "time" in c.report:
        t, pl = c.report["time"], c.report["placement"]
        print(f"{c.report['target']} ({c.report['mode']}): {pl['kernels']} kernels on {100 * pl['occupancy']:.1f}% "
              f"of the cores; {t['cycles']:,} cycles = {1e3 * t['seconds']:.3f} ms for {t['samples']} sample(s), "
              f"{t['tokens_per_s'] / 1e6:.3f} M tokens/s, MFU {100 * t['mfu']:.1f}%")
    return 0


def _read_compiled(d: Path) -> tuple[dict, dict | None]:
    """report.json and placement.json (None without a target) of a directory `wafer compile` wrote."""
    import json

    try:
        report = json.loads((d / "report.json").read_text())
        pj = json.loads((d / "placement.json").read_text()) if (d / "placement.json").exists() else None
    except OSError as e:
        raise UsageError(f"cannot read {d}/report.json: {e.strerror}; pass a directory written by "
                         "`wafer compile -o DIR`") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"{d}: a report file is not valid JSON ({e.msg} at line {e.lineno})") from None
    except UnicodeDecodeError:
        raise UsageError(f"{d}: a report file is not UTF-8 text; pass a directory written by "
                         "`wafer compile -o DIR`") from None
    return report, pj


def _from_reports(d: Path, make):
    """``make()``, with a report of the wrong shape as one line."""
    try:
        return make()
    except KeyError as e:
        raise UsageError(f"{d}/report.json or placement.json lacks the key {e.args[0]!r}: was it written by an "
                         "older waferscale? compile again") from None
    except (TypeError, AttributeError, ValueError, IndexError):  # a section of the wrong shape: a list, a null
        raise UsageError(f"{d}: report.json or placement.json does not have the shape `wafer compile` writes "
                         "(a section is missing, null or of the wrong type); compile again") from None


def cmd_report(args) -> int:
    from .report.summary import to_text, write_dir
    from .report.wafer import placement_text

    d = Path(args.dir)
    report, pj = _read_compiled(d)
    if args.html:
        from .report.html import report_html

        if pj is None:
            raise UsageError(f"{d} holds no placement.json, so there is no placement to show: compile with "
                             "`wafer compile MODEL --target T -o DIR` first")
        page = _from_reports(d, lambda: report_html(report, pj))
        (path,) = write_dir(d, {"report.html": page})
        print(f"wrote {path} ({len(page.encode()) / 1024:.0f} KiB)")
        return 0
    text = _from_reports(d, lambda: to_text(report) + (placement_text(report, pj) if pj is not None else ""))
    sys.stdout.write(text)
    return 0


def cmd_opt(args) -> int:
    from .frontend.ir_file import header, read_ir_file
    from .ir import print_graph
    from .passes import CompileState, parse_pipeline, run_pipeline, spec

    passes = parse_pipeline(args.pipeline)
    for p in passes:
        if not p.is_graph_pass:
            raise UsageError(f"wafer opt runs graph passes; {p.name!r} makes or needs the lowered program: "
                             "use `wafer compile FILE.ir --target T -p ...` for the wafer passes")
    f = read_ir_file(args.file)
    state, records = run_pipeline(CompileState(f.graph), passes)
    for r in records:
        print(f"pass {r.name}: {r.before['ops']} -> {r.after['ops']} ops in {1e3 * r.seconds:.2f} ms", file=sys.stderr)
    out = print_graph(state.graph)
    if f.model is not None:  # a dump keeps its header, with these passes added to its pipeline
        done = spec(parse_pipeline(f.done) + passes) if f.done else spec(passes)
        out = header(done, f.model, f"waferscale {__version__}: {f.model.get('name')}") + out
    if args.output:
        from .report.summary import write_dir

        write_dir(Path(args.output).parent, {Path(args.output).name: out})
    else:
        sys.stdout.write(out)
    return 0


def cmd_passes(args) -> int:
    from .passes import DEFAULT_GRAPH, DEFAULT_WAFER, PASSES
    from .passes.base import format_value, type_name

    print("Passes (a pipeline is a comma-separated list of NAME or NAME{option=value,...}):")
    for name, cls in PASSES.items():
        stage = f"{cls.stage} -> {cls.gives}" if cls.gives else cls.stage
        print(f"  {name:<13} [{stage}] {cls.summary}")
        for f in cls.options():
            kind = "|".join(map(str, f.metadata["choices"])) if f.metadata.get("choices") else type_name(f)
            print(f"  {'':<13}   {f.name}={kind} (default {format_value(f.default)}): {f.metadata['doc']}")
    print(f"Default pipeline: {DEFAULT_GRAPH}; with --target: {DEFAULT_WAFER}")
    return 0


def cmd_bench(args) -> int:
    from . import bench

    check_output(args.output, "bench")  # a bad -o is refused before the work, not after
    models = bench.models_arg(args.models) if args.models else list(bench.DEFAULT_MODELS)
    if args.batch < 1 or (args.seq is not None and args.seq < 1):
        raise UsageError(f"--batch and --seq must be at least 1 (got {args.batch} and {args.seq})")
    variants = bench.given(args.pipeline) if args.pipeline else bench.ablation()
    total = len(models) * len(variants)
    from tqdm import tqdm

    with tqdm(total=total, desc="wafer bench", unit="run", disable=args.quiet, file=sys.stderr) as bar:
        def progress(what: str) -> None:
            bar.set_postfix_str(what)
            bar.update(1)

        rows = bench.run(models, variants, target=args.target, batch=args.batch, seq=args.seq, progress=progress)
    print(bench.table(rows), end="")
    paths = bench.write(rows, Path(args.output))
    print(f"wrote {', '.join(str(x) for x in paths)}", file=sys.stderr)
    return 0


def cmd_sweep(args) -> int:
    from .sweep import run_sweep, summary
    from .sweep_spec import flags_spec, load_spec, parse_spec

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
    log = _log(args.quiet)
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


def cmd_run(args) -> int:
    import numpy as np

    from .frontend.lm import config_param_count, resolve, trace_lm
    from .runtime.interpreter import run

    log = _log(args.quiet)
    if not args.generate:
        _generate_flags(args, ("--prompt", "--new-tokens"))
    kind, entry = resolve(args.model)
    need = 4 * (entry.param_count() if kind == "zoo" else config_param_count(entry))
    avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    copies = 8 if args.train else 3  # training: weights, gradients, two moments, the next weights, torch's
    if need * copies > avail:
        raise UsageError(f"{args.model} needs about {copies * need / 1e9:.1f} GB of memory to "
                         f"{'train' if args.train else 'run'} with real f32 weights and {avail / 1e9:.1f} GB are "
                         "free; pick a smaller model")
    if args.train and args.generate:
        raise UsageError("--train and --generate are two different runs: give one of them")
    if not args.train:
        for flag in ("data", "lr", "lora", "sparsity"):
            if getattr(args, flag, None) is not None:
                raise UsageError(f"--{flag} is an option of training: add --train")
    if args.generate:
        from .cli_generate import cmd_run_generate

        return cmd_run_generate(args, log)
    args.seq = 32 if args.seq is None else args.seq
    if args.train:
        from .cli_train import cmd_run_train

        return cmd_run_train(args, log)
    log(f"building {args.model} with random weights (seed {args.seed}) and tracing it")
    t = trace_lm(args.model, batch=args.batch, seq=args.seq, dtype="f32", weights="random", seed=args.seed)
    ids = np.random.default_rng(args.seed).integers(0, t.info["vocab"], (args.batch, args.seq))
    log(f"interpreting {len(t.graph.ops)} ops")
    t0 = time.perf_counter()
    (logits,) = run(t.graph, {t.graph.inputs[0].name: ids}, t.weights)
    print(f"{t.info['name']}: logits {list(logits.shape)} in {time.perf_counter() - t0:.2f} s")
    if not args.compare:
        return 0
    import torch

    with torch.no_grad():
        ref = t.module(torch.from_numpy(ids)).numpy()
    err = float(np.abs(logits - ref).max() / np.abs(ref).max())
    ok = err <= args.tol
    print(f"max relative error vs PyTorch eager: {err:.3e} (max |diff| / max |logit|; "
          f"tolerance {args.tol:.0e}): {'ok' if ok else 'FAILED'}")
    return 0 if ok else 1


def cmd_simulate_kernel(args) -> int:
    import re

    import numpy as np

    from .backends import assumptions as A
    from .backends.gemm import fastest, gemm_time, sparse_gemm_time
    from .backends.machine import get_machine
    from .backends.sparse import SparseWeight, draw_mask

    m = 1 if args.kind == "gemv" else args.m
    if args.kind == "gemv" and args.m not in (None, 1):
        raise UsageError(f"a gemv has m = 1; got --m {args.m} (use `simulate-kernel gemm`)")
    if m is None or args.k is None or args.n is None:
        raise UsageError(f"{args.kind} needs {'--m, ' if args.kind == 'gemm' else ''}--k and --n")
    if min(m, args.k, args.n) < 1:
        raise UsageError(f"--m, --k and --n must be at least 1 (got m={m} k={args.k} n={args.n})")
    sparse = args.density is not None
    if sparse and not 0 <= args.density <= 1:
        raise UsageError(f"--density is the fraction of W's weights kept, from 0 to 1 (got {args.density})")
    if sparse and args.reduce == "tree":
        raise UsageError("not supported: sparse weights with the tree reduce at the tile level (use --reduce chain)")
    machine = get_machine(f"mesh:{args.mesh}" if re.fullmatch(r"\d+x\d+(,.*)?", args.mesh) else args.mesh)
    lanes = machine.datapath(args.dtype)
    rows, cols = min(machine.rows, args.k), min(machine.cols, args.n)
    head = (f"{args.kind} [{m}x{args.k}] @ [{args.k}x{args.n}] on {machine.name} ({machine.rows}x{machine.cols}; "
            f"{rows}x{cols} cores used), {args.dtype}: {lanes.lanes:g} FMAC lane(s) per core, {lanes.acc}-byte "
            f"accumulators, {lanes.port}-byte SRAM ports")
    mask = None
    if sparse:  # a seeded random mask, costed from the mask where lowering would draw one, else in distribution
        if args.k * args.n <= A.SPARSE_DRAW_LIMIT or args.level != "tile":
            mask = draw_mask(args.k, args.n, args.density, args.seed, "w")
        reduce = "chain"
        tile = sparse_gemm_time(m, SparseWeight("w", args.k, args.n, args.density, mask=mask), machine.rows,
                                machine.cols, lanes, resident_a=args.resident_a)
        head += (f"; sparse W, density {args.density:g} ({'mask' if mask is not None else 'in distribution'}"
                 f", seed {args.seed})")
    elif args.reduce == "auto":
        reduce, tile = fastest(m, args.k, args.n, machine.rows, machine.cols, lanes, args.resident_a)
    else:
        reduce = args.reduce
        tile = gemm_time(m, args.k, args.n, machine.rows, machine.cols, lanes, reduce=reduce,
                         resident_a=args.resident_a)
    head += f"; {reduce} reduce, A {'resident' if args.resident_a else 'streamed from the west edge'}"
    ok = True
    if args.level in ("pe", "both"):
        from .runtime.pe_sim import core_sram_bytes, simulate_gemm

        operands = 4 * (m * args.k + args.k * args.n)  # A and W in float32, made before the simulation
        if operands > L.MAX_PE_OPERAND_BYTES:
            raise UsageError(f"the PE level would build {operands / 2**30:.1f} GiB of operands (A and W in f32), "
                             f"more than {L.MAX_PE_OPERAND_BYTES / 2**30:.0f} GiB: use a smaller --m/--k/--n "
                             "or --level tile")
        need = core_sram_bytes(args.k, args.n, machine.rows, machine.cols)
        if need > machine.usable_sram_bytes:
            raise UsageError(f"the PE level needs {need} bytes of SRAM per core for this shape and a core has "
                             f"{machine.usable_sram_bytes}: use a larger mesh, a smaller matrix or --level tile")
        print(head)
        rng = np.random.default_rng(args.seed)
        a = rng.standard_normal((m, args.k), dtype=np.float32)
        w = rng.standard_normal((args.k, args.n), dtype=np.float32)
        r = simulate_gemm(a, w, machine.rows, machine.cols, lanes, sram_bytes=machine.usable_sram_bytes,
                          reduce=reduce, resident_a=args.resident_a, mask=mask)
        ref = a.astype(np.float64) @ (w if mask is None else w * mask)
        err = float(np.abs(r.c - ref).max() / max(np.abs(ref).max(), 1e-30))
        ok = err <= 1e-5 and not r.violations
        print(f"pe level:   {r.cycles} cycles ({r.wall_s:.2f} s simulated at {r.pe_cycles_per_s:.3g} PE-cycles/s, "
              f"{r.sram_bytes_per_core} B SRAM per core)")
        print(f"  numerics: max relative error vs NumPy {err:.2e} (max |diff| / max |C|; tolerance 1e-05): "
              f"{'ok' if err <= 1e-5 else 'FAILED'}")
        print("  wavelets: " + ("every router sent on what it received (none lost or duplicated)" if not r.violations
                                else "CONSERVATION FAILED: " + "; ".join(r.violations)))
    else:
        print(head)
    if args.level in ("tile", "both"):
        print(f"tile level: {tile.total} cycles (fill {tile.fill} + {tile.tokens} tokens x step {tile.step})")
    if args.level == "both":
        print(f"tile vs pe: {100 * (tile.total - r.cycles) / r.cycles:+.2f}% ((tile - pe) / pe)")
    return 0 if ok else 1


def _lora_arguments(s: argparse.ArgumentParser) -> None:
    """--lora, --lora-alpha and --lora-targets, of `wafer compile --train` and `wafer run --train`."""
    s.add_argument("--lora", type=int, metavar="R", help="with --train: LoRA adapters of rank R beside the chosen "
                   "projections, every other weight frozen")
    s.add_argument("--lora-alpha", type=float, default=8.0, help="LoRA scale numerator: adapters' output x alpha / R "
                   "(default 8, peft's)")
    s.add_argument("--lora-targets", default="c_attn", help="comma-separated projections for --lora: c_attn "
                   "(default, peft's for GPT-2), attn.c_proj, mlp.c_fc, mlp.c_proj")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="wafer", description="Compile GPT models onto a wafer-scale mesh of cores.")
    p.add_argument("--version", action="version", version=f"waferscale {__version__}")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also show the warnings of the libraries underneath (transformers, torch) on stderr")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("models", help="list the model zoo")
    s.set_defaults(fn=cmd_models)

    s = sub.add_parser("compile", help="compile a model and write its IR and report")
    s.add_argument("model", help="zoo name (see `wafer models`), a Hugging Face causal LM config.json / folder, "
                   "a torch-dialect FILE.mlir written by torch-mlir, or a text FILE.ir (a dump of "
                   "--print-ir-after resumes where it stopped); files keep their own shapes and dtypes")
    s.add_argument("--batch", type=int, default=1)
    s.add_argument("--seq", type=int, default=None, help="sequence length (default: the model's context)")
    s.add_argument("--dtype", choices=["f16", "bf16", "f32"], default="f16")
    s.add_argument("--seed", type=int, default=0, help="seed of the random weights of small models")
    s.add_argument("-o", "--output", help="output directory (default: out/MODEL)")
    s.add_argument("--frontend", choices=["torch-export", "torch-mlir"], default="torch-export",
                   help="torch.export's FX graph, or torch-mlir's torch dialect (also writes model.mlir)")
    s.add_argument("--target", default=None, help="place and simulate on wse2, wse3 or mesh:RxC[,sram_kib=..,"
                   "fmac=..,clock_ghz=..,io_gbs=..]; writes placement.json, trace.json and mesh.png too")
    s.add_argument("--mode", choices=["auto", "pipelined", "streaming"], default=None,
                   help="execution mode on the target: layer-pipelined, weight streaming, or auto (the default: "
                   "pipelined when the model fits, streaming otherwise)")
    s.add_argument("--sparsity", type=float, default=None, metavar="D",
                   help="unstructured weight sparsity: keep this fraction D in (0, 1] of every linear weight but "
                   "lm_head (adds sparsify{density=D} to the default pipeline; by magnitude, or a seeded random "
                   "mask on the meta device); with --train, sparse training: the backward's products and the "
                   "weight gradients skip the pruned weights, gradients stream out compressed")
    s.add_argument("-p", "--pipeline", default=None,
                   help="the passes to run, replacing the default (`wafer passes` lists them), e.g. "
                   "'canonicalize,lower,place,route,simulate{chunk=16}'")
    s.add_argument("--train", action="store_true", help="compile and simulate a training step (forward, backward, "
                   "AdamW) instead of inference; needs --target")
    s.add_argument("--systems", type=int, default=None, metavar="N",
                   help="with --train: data-parallel weight streaming on N systems (SwarmX broadcasts weights and "
                   "reduces gradients; the batch splits across them); with --generate: a pipeline of layers over N "
                   "wafers (default 1)")
    _lora_arguments(s)
    s.add_argument("--print-ir-after", action="append", metavar="PASS",
                   help="write the IR after this pass to DIR/ir/NN-PASS.ir (repeatable, or comma-separated)")
    s.add_argument("--print-ir-after-all", action="store_true", help="write the IR after every pass to DIR/ir/")
    s.add_argument("--compile-to", metavar="PASS", help="stop after this pass")
    s.add_argument("--generate", action="store_true",
                   help="generation: compile a prefill of --prompt-len tokens and a one-token decode step with a KV "
                   "cache, place both and simulate time to first token and decode tokens/s (needs --target)")
    s.add_argument("--prompt-len", type=int, default=None, metavar="P", help="with --generate: prompt tokens")
    s.add_argument("--new-tokens", type=int, default=None, metavar="T", help="with --generate: tokens to generate")
    s.add_argument("--placement", choices=("auto", "latency", "throughput"), default=None,  # placement_kind.KINDS
                   help="with --generate: how kernels share the mesh: throughput (every kernel on its own rectangle, "
                   "tokens pipelined through them), latency (every kernel on the region that finishes it soonest, "
                   "regions reused in time: WaferLLM's decode mapping), or auto (simulate both, keep the faster; "
                   "the default)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    s.set_defaults(fn=cmd_compile)

    s = sub.add_parser("report", help="print the summary of a directory written by `wafer compile`")
    s.add_argument("dir")
    s.add_argument("--html", action="store_true", help="(re)write DIR/report.html, the interactive page, from "
                   "DIR/report.json and DIR/placement.json instead of printing the summary")
    s.set_defaults(fn=cmd_report)

    s = sub.add_parser("opt", help="read, verify, run graph passes on and print text IR")
    s.add_argument("file")
    s.add_argument("-p", "--pipeline", default="", help="graph passes to run, e.g. 'canonicalize,fuse'")
    s.add_argument("-o", "--output", help="write the result here instead of stdout")
    s.set_defaults(fn=cmd_opt)

    s = sub.add_parser("passes", help="list the passes, their options and the default pipelines")
    s.set_defaults(fn=cmd_passes)

    s = sub.add_parser("bench", help="benchmark the passes: an ablation of the default pipeline (or the given "
                       "pipelines) on a set of models, as one table and bench.json/csv/png")
    s.add_argument("--models", default=None, help="comma-separated models (default: cerebras-gpt-111m,"
                   "cerebras-gpt-1.3b)")
    s.add_argument("-p", "--pipeline", action="append", metavar="PIPELINE",
                   help="a pipeline to run instead of the ablation (repeatable; each compared with the first)")
    s.add_argument("--target", default="wse2", help="wse2 (default), wse3 or mesh:RxC[,...]")
    s.add_argument("--batch", type=int, default=4, help="samples (default 4)")
    s.add_argument("--seq", type=int, default=None, help="sequence length (default: the model's context)")
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
                       ("density", "1.0 only (sparsity: issue 12)"), ("sram-kib", "KiB of SRAM per core (default 48)"),
                       ("fmac", "f16 FMAC lanes per core (default 4)"), ("clock-ghz", "clocks in GHz (default 1.1)"),
                       ("io-gbs", "system I/O in GB/s (default 150)"), ("link-bytes", "bytes per link per cycle: 4 "
                                                                       "only (the simulator's one wavelet per cycle)")]:
        s.add_argument(f"--{flag}", metavar="A,B,..", help=what)
    s.add_argument("-p", "--pipeline", action="append", metavar="PIPELINE",
                   help="an explicit pipeline instead of --mode (repeatable: an axis)")
    s.add_argument("--random", type=int, metavar="N", help="a random sample of N points of the grid")
    s.add_argument("--seed", type=int, default=0, help="the seed of --random (default 0)")
    s.add_argument("-o", "--output", help="output directory (default out/SPEC or out/sweep); a rerun with the "
                   "same directory resumes from its points.jsonl")
    s.add_argument("--workers", type=int, help="Ray CPUs (default: every CPU of this machine); with --address, "
                   "points at once; 0 runs without Ray, one point after another")
    s.add_argument("--address", help="join this Ray cluster (e.g. ray://head:10001) instead of starting a local Ray")
    s.add_argument("--no-ray", action="store_true", help="run the points in this process, one after another")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    s.set_defaults(fn=cmd_sweep)

    s = sub.add_parser("run", help="run a model in the NumPy interpreter")
    s.add_argument("model")
    s.add_argument("--seq", type=int, default=None, help="tokens of random ids (default 32)")
    s.add_argument("--batch", type=int, default=1)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--compare", action="store_true", help="compare the logits with PyTorch eager (with --train: "
                   "the loss of every step with a PyTorch training loop)")
    s.add_argument("--generate", action="store_true", help="greedy generation through the prefill and decode-step "
                   "graphs with a KV cache, its tokens compared with Hugging Face generate's (greedy) on the same "
                   "weights; token ids are the prompt's UTF-8 bytes")
    s.add_argument("--prompt", default=None, help="with --generate: the prompt text (default 'Hello, wafer')")
    s.add_argument("--new-tokens", type=int, default=None, metavar="T",
                   help="with --generate: tokens to generate (default 16)")
    s.add_argument("--tol", type=float, default=1e-4, help="tolerance of --compare (default 1e-4)")
    s.add_argument("--train", action="store_true", help="run training steps (autodiff, AdamW) instead of a forward")
    s.add_argument("--steps", type=int, default=5, help="training steps (default 5)")
    s.add_argument("--lr", type=float, default=None, help="AdamW learning rate (default 6e-4, Cerebras-GPT 111M's)")
    s.add_argument("--data", metavar="FILE", help="train on this text file (default: a seeded random token stream)")
    s.add_argument("--tokenizer", choices=["bytes", "bpe"], default="bytes",
                   help="how --data becomes tokens: its bytes (default), or a byte-level BPE of the model's "
                   "vocabulary size trained on the file with Hugging Face tokenizers")
    _lora_arguments(s)
    s.add_argument("--sparsity", type=float, default=None, metavar="D",
                   help="with --train: sparse training, keeping this fraction D in (0, 1] of every linear weight but "
                   "lm_head (pruned by magnitude before the first step; the gradients masked, pruned weights kept at "
                   "zero; --compare masks the PyTorch loop the same way)")
    s.add_argument("--stream-tokens", type=int, default=4096,
                   help="length of the random token stream, read again from the start when it ends (default 4096)")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(fn=cmd_run)
    s = sub.add_parser("simulate-kernel", help="cycles of one mesh GEMM or GEMV: PE level, tile level, or both")
    s.add_argument("kind", choices=["gemm", "gemv"])
    s.add_argument("--m", type=int, help="rows of A (tokens); a gemv has 1")
    s.add_argument("--k", type=int, help="inner dimension")
    s.add_argument("--n", type=int, help="columns of W (outputs)")
    s.add_argument("--mesh", default="8x8", help="RxC cores (or wse2, wse3, mesh:RxC,fmac=8,...); default 8x8")
    s.add_argument("--level", choices=["pe", "tile", "both"], default="both")
    s.add_argument("--dtype", choices=["f16", "bf16", "f32"], default="f16", help="sets the FMAC lanes")
    s.add_argument("--seed", type=int, default=0, help="seed of the random A and W")
    s.add_argument("--reduce", choices=["auto", "chain", "tree"], default="auto",
                   help="the column reduce: a chain down each column, WaferLLM's two-level centre-rooted "
                        "tree, or auto (the faster at the tile level, as lowering picks); default auto")
    s.add_argument("--resident-a", action="store_true",
                   help="A is in the cores' SRAM at the start (as WaferLLM's GEMV benchmark), not streamed in")
    s.add_argument("--density", type=float,
                   help="sparse W: keep this fraction of its weights (a random mask of --seed; the chain reduce)")
    s.set_defaults(fn=cmd_simulate_kernel)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        from .frontend import lm

        lm.LIBRARY_WARNINGS = args.verbose
        return args.fn(args)
    except WaferError as e:
        print(f"wafer: error: {_one_line(str(e))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("wafer: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # a path the user gave: unwritable, a file where a folder should be, too long
        where = f" {e.filename!r}" if e.filename else ""
        print(f"wafer: error: cannot use{where}: {e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # anything else is a bug in waferscale: one line, the traceback kept in a file
        import tempfile
        import traceback

        fd, path = tempfile.mkstemp(prefix="wafer-bug-", suffix=".log")
        with os.fdopen(fd, "w") as f:
            f.write(f"wafer {' '.join(map(str, argv if argv is not None else sys.argv[1:]))}\n")
            traceback.print_exc(file=f)
        print(f"wafer: internal error (a bug in waferscale, please report it): {type(e).__name__}: "
              f"{_one_line(str(e))[:300]}; the traceback is in {path}", file=sys.stderr)
        return EXIT_BUG


def _one_line(text: str) -> str:
    """An error as one line: a newline in a file name or a library's message would make two."""
    return " ".join(text.split("\n")).replace("\r", " ")


if __name__ == "__main__":
    sys.exit(main())
