"""`wafer compile`: a model through the pipeline to its IR and report (``waferscale.compile``);
with --train or --generate, the commands of ``train.py`` and ``generate.py`` of this package."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ..report.outputs import check_output
from .console import comma_names as _names
from .console import progress as _log
from .generate import generate_flags
from .quant import add_arguments as add_quant_arguments
from .quant import quantize_spec
from .train import lora_arguments


def cmd_compile(args) -> int:
    import waferscale

    if args.generate:
        for flag, given in (("--train", args.train), ("--sparsity", args.sparsity is not None),
                            ("--lora", args.lora is not None)):
            if given:
                raise UsageError(f"not supported: {flag} with --generate")
        from .generate import cmd_compile_generate

        return cmd_compile_generate(args)
    generate_flags(args, ("--prompt-len", "--new-tokens", "--placement"))
    log = _log(args.quiet, args.verbose)
    model = Path(args.model)
    out = Path(args.output or Path("out") / (model.stem if model.suffix in (".mlir", ".ir") else model.name))
    check_output(out, "compile")  # a bad -o is refused before the work, not after
    if args.split is not None and (args.systems or 1) == 1:
        raise UsageError(f"--split {args.split} spreads a run over several systems: add --systems N")
    if args.lora is not None and not args.train:
        raise UsageError("--lora fine-tunes: add --train")
    if args.train and args.expert_routing is not None:
        raise UsageError("not supported: --expert-routing with --train (a training step's experts, forward and "
                         "backward, are costed under uniform routing)")
    for flag, given in (("--micro-batch", args.micro_batch), ("--tokens", args.tokens)):
        if given is not None and not args.train:
            raise UsageError(f"{flag} is an option of a training step: add --train")
    if args.train and quantize_spec(args):
        raise UsageError("not supported: --weights or --kv-dtype with --train (quantised training is not modelled)")
    if args.train:
        from .train import cmd_compile_train

        return cmd_compile_train(args, log, out)
    c = waferscale.compile(args.model, batch=args.batch, seq=args.seq, dtype=args.dtype, seed=args.seed, log=log,
                           frontend=args.frontend, target=args.target, pipeline=args.pipeline,
                           print_ir_after=_names(args.print_ir_after), print_ir_after_all=args.print_ir_after_all,
                           compile_to=args.compile_to, mode=args.mode, sparsity=args.sparsity, systems=args.systems,
                           split=args.split, quantize=quantize_spec(args), expert_routing=args.expert_routing)
    for p in c.write(out):
        log(f"wrote {p}")
    log.close()
    m = c.report["model"]
    print(f"{m['name']}: {m['params']:,} parameters, {m['flops_per_token']:.4g} FLOPs/token, "
          f"{c.report['ir']['op_count']} ops -> {out}/")
    if "time" in c.report:
        t, pl = c.report["time"], c.report["placement"]
        print(f"{c.report['target']} ({c.report['mode']}): {pl['kernels']} kernels on {100 * pl['occupancy']:.1f}% "
              f"of the cores; {t['cycles']:,} cycles = {1e3 * t['seconds']:.3f} ms for {t['samples']} sample(s), "
              f"{t['tokens_per_s'] / 1e6:.3f} M tokens/s, MFU {100 * t['mfu']:.1f}%")
    if "systems" in c.report:
        s = c.report["systems"]
        print(f"{s['systems']} systems ({s['split']}): {1e3 * s['seconds']:.3f} ms, {s['tokens_per_s'] / 1e6:.3f} M "
              "tokens/s over all of them")
    return 0


def add_parser(sub) -> None:
    s = sub.add_parser("compile", help="compile a model and write its IR and report")
    s.add_argument("model", help="zoo name (see `wafer models`), a Hugging Face causal LM config.json / folder, "
                   "a torch-dialect FILE.mlir written by torch-mlir, or a text FILE.ir (a dump of "
                   "--print-ir-after resumes where it stopped); files keep their own shapes and dtypes")
    s.add_argument("--batch", type=int, default=1, help="samples per step (with --generate: sequences decoded at once)")
    s.add_argument("--seq", type=int, default=None, help="sequence length (default: the model's context, or 2048 "
                   "for the Llama models)")
    s.add_argument("--dtype", choices=["f16", "bf16", "f32"], default="f16", help="weights and activations")
    s.add_argument("--seed", type=int, default=0, help="seed of the random weights of small models")
    s.add_argument("-o", "--output", help="output directory (default: out/MODEL)")
    s.add_argument("--frontend", choices=["torch-export", "torch-mlir"], default="torch-export",
                   help="torch.export's FX graph, or torch-mlir's torch dialect (also writes model.mlir)")
    s.add_argument("--target", default=None, help="place and simulate on wse2, wse3, a machine file (my.yaml) or "
                   "mesh:RxC[,core=wse3,sram_kib=..,fmac=..,clock_ghz=..,io_gbs=..]; writes placement.json, "
                   "trace.json and mesh.png too "
                   "(default: none, the graph passes only)")
    s.add_argument("--mode", choices=["auto", "pipelined", "streaming"], default=None,
                   help="execution mode on the target: layer-pipelined, weight streaming, or auto (the default: "
                   "pipelined when the model fits, streaming otherwise)")
    s.add_argument("--sparsity", type=float, default=None, metavar="D",
                   help="unstructured weight sparsity: keep this fraction D in (0, 1] of every linear weight but "
                   "lm_head (adds sparsify{density=D} to the default pipeline; by magnitude, or a seeded random "
                   "mask on the meta device); with --train, sparse training: the backward's products and the "
                   "weight gradients skip the pruned weights, gradients stream out compressed (default: dense)")
    s.add_argument("--expert-routing", default=None, metavar="DIST",
                   help="a mixture-of-experts model's tokens per expert on the mesh: uniform, zipf:S (expert i "
                   "gets a share proportional to 1/(i+1)^S), or a file of measured counts, one per expert "
                   "(default: uniform; report.json's moe section lists each expert's tokens, cycles and region)")
    add_quant_arguments(s)
    s.add_argument("-p", "--pipeline", default=None,
                   help="the passes to run, replacing the default (`wafer passes` lists them), e.g. "
                   "'canonicalize,lower,place,route,simulate{chunk=16}' (default: canonicalize; with --target "
                   "canonicalize,fuse,lower,place,route,simulate)")
    s.add_argument("--train", action="store_true", help="compile and simulate a training step (forward, backward, "
                   "AdamW) instead of inference; needs --target")
    s.add_argument("--systems", type=int, default=None, metavar="N",
                   help="run on N systems, as --split says: data parallel (SwarmX broadcasts weights and reduces "
                   "gradients; the batch splits across them) or a pipeline of layers over N wafers (default 1)")
    s.add_argument("--split", choices=("data", "pipeline"), default=None,
                   help="how --systems N spreads the run: data (data parallel; the default for a forward pass and "
                   "--train) or pipeline (a pipeline of layers, one part per system; the default for --generate)")
    s.add_argument("--micro-batch", type=int, default=None, metavar="B",
                   help="with --train: gradient accumulation at B samples per micro-batch (weight streaming; B divides "
                   "the batch per system; default: the most that fit in SRAM)")
    s.add_argument("--tokens", type=float, default=None, metavar="T",
                   help="with --train: the tokens to train on, for the report's time to train (default: the "
                   "Cerebras-GPT paper's for its models, 20 per parameter otherwise)")
    lora_arguments(s)
    s.add_argument("--print-ir-after", action="append", metavar="PASS",
                   help="write the IR after this pass to DIR/ir/NN-PASS.ir (repeatable, or comma-separated); the "
                   "pass must be in the pipeline: fuse and the wafer passes run with --target (default: none)")
    s.add_argument("--print-ir-after-all", action="store_true", help="write the IR after every pass to DIR/ir/")
    s.add_argument("--compile-to", metavar="PASS", help="stop after this pass (default: run the whole pipeline)")
    s.add_argument("--generate", action="store_true",
                   help="generation: compile a prefill of --prompt-len tokens and a one-token decode step with a KV "
                   "cache, place both and simulate time to first token and decode tokens/s (needs --target)")
    s.add_argument("--prompt-len", type=int, default=None, metavar="P",
                   help="with --generate: prompt tokens (no default: --generate needs it)")
    s.add_argument("--new-tokens", type=int, default=None, metavar="T",
                   help="with --generate: tokens to generate (no default: --generate needs it)")
    s.add_argument("--placement", choices=("auto", "latency", "throughput"), default=None,  # placement_kind.KINDS
                   help="with --generate: how kernels share the mesh: throughput (every kernel on its own rectangle, "
                   "tokens pipelined through them), latency (every kernel on the region that finishes it soonest, "
                   "regions reused in time: WaferLLM's decode mapping), or auto (simulate both, keep the faster; "
                   "the default)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    s.set_defaults(fn=cmd_compile)
