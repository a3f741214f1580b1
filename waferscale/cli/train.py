"""`wafer compile --train` and `wafer run --train`: the command line of training steps (``waferscale.modes.train``
compiles and simulates one; ``runtime/train.py`` runs them with real numbers)."""

from __future__ import annotations

import time
from pathlib import Path

from .. import limits as L
from ..errors import UsageError
from .console import comma_names as _names


def cmd_compile_train(args, log, out: Path) -> int:
    from ..compiled import write_compiled
    from ..training import compile_training

    for flag in ("pipeline", "compile_to", "print_ir_after", "print_ir_after_all"):
        if getattr(args, flag):
            raise UsageError(f"not supported: --{flag.replace('_', '-')} with --train (its passes are fixed)")
    if args.frontend != "torch-export":
        raise UsageError(f"not supported: --frontend {args.frontend} with --train (it traces with torch.export)")
    c = compile_training(args.model, batch=args.batch, seq=args.seq, dtype=args.dtype, seed=args.seed,
                         target=args.target, mode=args.mode, systems=args.systems or 1, lora=lora_pass(args),
                         split=args.split,
                         sparsity=args.sparsity, micro_batch=getattr(args, "micro_batch", None),
                         tokens=getattr(args, "tokens", None), log=log)
    for p in write_compiled(c, out):
        log(f"wrote {p}")
    log.close()
    t, m = c.report["train"], c.report["model"]
    print(f"{m['name']}: training step of batch {t['batch']} x seq {t['seq']} ({t['mode']}, {t['systems']} system(s), "
          f"{t['micro_batches']} micro-batch(es) of {t['micro_batch']}): {1e3 * t['step_seconds']:.3f} ms, "
          f"{t['tokens_per_s'] / 1e6:.3f} M tokens/s, {t['flops_per_token'] / 1e9:.3f} GFLOP/token "
          f"(forward + backward), MFU {100 * t['mfu']:.1f}% -> {out}/")
    if "time_to_train" in t:
        tt = t["time_to_train"]
        print(f"time to train on {tt['tokens']:.3g} tokens ({tt['tokens_source']}): {tt['days']:.2f} days on "
              f"{tt['systems']} system(s), {tt['flops']:.3g} FLOPs" +
              (f" (the paper reports {tt['paper']['flops']:.3g})" if "paper" in tt else ""))
    if "lora" in t:
        f = t["lora"]["full_fine_tuning"]
        print(f"LoRA ({t['lora']['trainable_params']:,} trained, {t['lora']['frozen_params']:,} frozen): step "
              f"{1e3 * t['step_seconds']:.3f} ms against {1e3 * f['step_seconds']:.3f} ms for full fine-tuning; "
              f"streamed out {t['stream_out_bytes']:,} B against {f['stream_out_bytes']:,} B")
    if "sparsity" in t:
        sp, d = t["sparsity"], t["sparsity"]["dense"]
        print(f"sparse ({sp['weights']} weights at density {sp['density']:.4g}): step {1e3 * t['step_seconds']:.3f} "
              f"ms against {1e3 * d['step_seconds']:.3f} ms dense ({sp['speedup']:.2f}x); streamed in "
              f"{t['stream_in_bytes']:,} B against {d['stream_in_bytes']:,} B, out {t['stream_out_bytes']:,} B "
              f"against {d['stream_out_bytes']:,} B")
    return 0


def lora_arguments(s) -> None:
    """--lora, --lora-alpha and --lora-targets, of `wafer compile --train` and `wafer run --train`."""
    s.add_argument("--lora", type=int, metavar="R", help="with --train: LoRA adapters of rank R beside the chosen "
                   "projections, every other weight frozen")
    s.add_argument("--lora-alpha", type=float, default=8.0, help="LoRA scale numerator: adapters' output x alpha / R "
                   "(default 8, peft's)")
    s.add_argument("--lora-targets", default="c_attn", help="comma-separated projections for --lora: c_attn "
                   "(default, peft's for GPT-2), attn.c_proj, mlp.c_fc, mlp.c_proj")


def lora_pass(args) -> str | None:
    """The lora pass of --lora R [--lora-alpha A] [--lora-targets a,b], or None."""
    if args.lora is None:
        return None
    L.check_int("--lora", args.lora, 1, L.MAX_D_MODEL)
    targets = "+".join(_names([args.lora_targets]))
    return f"lora{{rank={args.lora},alpha={float(args.lora_alpha)},targets={targets}}}"


def sparsify_pass(args) -> str | None:
    """The sparsify pass of --sparsity D with --train, or None."""
    if args.sparsity is None:
        return None
    if args.lora is not None:
        raise UsageError("not supported: --sparsity with --lora (sparse frozen weights under adapters); give one")
    if not 0.0 < args.sparsity <= 1.0:
        raise UsageError(f"--sparsity {args.sparsity} must be in (0, 1]: the fraction of each linear weight kept "
                         "(0.25 keeps a quarter)")
    return f"sparsify{{density={args.sparsity!r}}}"


def cmd_run_train(args, log) -> int:
    import copy

    import numpy as np

    from ..driver import run_passes
    from ..frontend.lm import trace_lm
    from ..passes.adamw import AdamWConfig
    from ..runtime import train as T

    L.check_int("--steps", args.steps, 1, L.MAX_TRAIN_STEPS)
    L.check_int("--stream-tokens", args.stream_tokens, 2, L.MAX_STREAM_TOKENS)
    cfg = AdamWConfig(lr=AdamWConfig.lr if args.lr is None else args.lr)
    if not 0 < cfg.lr < 1:
        raise UsageError(f"--lr {cfg.lr} must be between 0 and 1 (Cerebras-GPT: 6e-4 at 111M, 1.2e-4 at 13B)")
    sparsify = sparsify_pass(args)
    log(f"building {args.model} with random weights (seed {args.seed}) and tracing it")
    t = trace_lm(args.model, batch=args.batch, seq=args.seq, dtype="f32", weights="random", seed=args.seed)
    vocab = t.info["vocab"]
    if args.data is not None:
        tokens = T.file_stream(args.data, vocab, args.tokenizer)
        what = f"{args.data} as {'bytes' if args.tokenizer == 'bytes' else f'a byte-level BPE of {vocab} tokens'}"
    else:
        tokens = T.random_stream(vocab, args.stream_tokens, args.seed)
        what = (f"a seeded random stream of {args.stream_tokens:,} tokens (seed {args.seed}; each token followed by "
                f"one of {T.SUCCESSORS} drawn for it), read again when it ends")
    lora = lora_pass(args)
    pipeline = "canonicalize," + (f"{sparsify}," if sparsify else "") + \
        (f"{lora},autodiff{{wrt=lora}}," if lora else "autodiff,") + "adamw{" + \
        f"lr={cfg.lr},beta1={cfg.beta1},beta2={cfg.beta2},eps={cfg.eps},weight_decay={cfg.weight_decay}," \
        f"clip={cfg.clip}" + "}"
    passed = run_passes(t.graph, pipeline, weights=t.weights)
    g = passed.graph
    log(f"training step: {len(t.graph.ops)} forward ops -> {len(g.ops)} ops ({pipeline})")
    module = copy.deepcopy(t.module) if args.compare else None  # before training changes nothing, but be sure
    adapters = T.lora_weights(g, args.seed)
    masks = T.sparse_masks(g)
    kept = sum(int(m.sum()) for m in masks.values()) / max(sum(m.size for m in masks.values()), 1)
    print(f"{t.info['name']}: training {args.steps} step(s) of batch {args.batch} x seq {args.seq} on {what}; "
          f"AdamW lr {cfg.lr:g}, betas ({cfg.beta1}, {cfg.beta2}), eps {cfg.eps:g}, weight decay "
          f"{cfg.weight_decay}, clip {cfg.clip}" + (f"; LoRA rank {args.lora} on {args.lora_targets}, the "
                                                    "base weights frozen" if lora else "")
          + (f"; {len(masks)} sparse weights at density {kept:.4g} (pruned by magnitude; their gradients "
             "masked, pruned weights kept at zero)" if masks else ""))
    t0 = time.perf_counter()
    losses, state = T.train(g, {**passed.weights, **adapters, **masks}, T.batches(tokens, args.batch, args.seq),
                            args.steps, on_step=lambda s, loss: print(f"step {s:>4}  loss {loss:.6f}", flush=True))
    print(f"{args.steps} step(s) in {time.perf_counter() - t0:.2f} s; loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    if masks:
        leaked = sum(int(np.count_nonzero(state[n.removeprefix(T.MASK)][~m])) for n, m in masks.items())
        print(f"pruned weights that are not zero after the last step: {leaked}")
    if not args.compare:
        return 0
    from ..runtime.torch_train import add_lora, torch_train

    params = add_lora(module, adapters, args.lora_alpha / args.lora) if lora else None
    ref = torch_train(module, T.batches(tokens, args.batch, args.seq), args.steps, cfg, params, masks)
    err = max(abs(a - b) / abs(b) for a, b in zip(losses, ref))
    ok = err <= args.tol
    kind = "clip_grad_norm_ + torch.optim.AdamW" + (", plain-torch LoRA" if lora else "") + \
        (", gradients masked and weights re-masked after each step" if masks else "")
    print(f"PyTorch loop ({kind}): loss {ref[0]:.4f} -> {ref[-1]:.4f}; max relative "
          f"error per step {err:.3e} (tolerance {args.tol:.0e}): {'ok' if ok else 'FAILED'}")
    return 0 if ok else 1
