"""`wafer run`: a model in the NumPy interpreter (with --train or --generate, the commands of
``train.py`` and ``generate.py`` of this package)."""

from __future__ import annotations

import os
import time

from ..errors import UsageError
from .console import progress as _log
from .generate import generate_flags
from .quant import add_arguments as add_quant_arguments
from .quant import quantize_run, quantize_spec
from .train import lora_arguments


def cmd_run(args) -> int:
    import numpy as np

    from ..frontend.lm import config_param_count, resolve, trace_lm
    from ..runtime.interpreter import run

    log = _log(args.quiet, args.verbose)
    if not args.generate:
        generate_flags(args, ("--prompt", "--new-tokens"))
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
    if quantize_spec(args) and (args.train or args.generate):
        raise UsageError("not supported: --weights or --kv-dtype with --train or --generate in `wafer run` (the "
                         "forward only; `wafer compile --generate --weights/--kv-dtype` models generation)")
    if args.generate:
        from .generate import cmd_run_generate

        return cmd_run_generate(args, log)
    args.seq = 32 if args.seq is None else args.seq
    if args.train:
        from .train import cmd_run_train

        return cmd_run_train(args, log)
    log(f"building {args.model} with random weights (seed {args.seed}) and tracing it")
    t = trace_lm(args.model, batch=args.batch, seq=args.seq, dtype="f32", weights="random", seed=args.seed)
    ids = np.random.default_rng(args.seed).integers(0, t.info["vocab"], (args.batch, args.seq))
    graph, weights = quantize_run(args, t.graph, t.weights, log)
    log(f"interpreting {len(graph.ops)} ops")
    t0 = time.perf_counter()
    (logits,) = run(graph, {graph.inputs[0].name: ids}, weights)
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


def add_parser(sub) -> None:
    s = sub.add_parser("run", help="run a model in the NumPy interpreter")
    s.add_argument("model", help="zoo name (see `wafer models`) or a Hugging Face causal LM config.json / folder")
    s.add_argument("--seq", type=int, default=None, help="tokens of random ids (default 32)")
    s.add_argument("--batch", type=int, default=1, help="samples")
    s.add_argument("--seed", type=int, default=0, help="seed of the random weights and token ids")
    s.add_argument("--compare", action="store_true", help="compare the logits with PyTorch eager (with --train: "
                   "the loss of every step with a PyTorch training loop)")
    s.add_argument("--generate", action="store_true", help="greedy generation through the prefill and decode-step "
                   "graphs with a KV cache, its tokens compared with Hugging Face generate's (greedy) on the same "
                   "weights; token ids are the prompt's UTF-8 bytes")
    s.add_argument("--prompt", default=None, help="with --generate: the prompt text (default 'Hello, wafer')")
    s.add_argument("--new-tokens", type=int, default=None, metavar="T",
                   help="with --generate: tokens to generate (default 16)")
    s.add_argument("--tol", type=float, default=1e-4, help="tolerance of --compare (default 1e-4; with --weights, "
                   "the quantised weights' expected error)")
    add_quant_arguments(s)
    s.add_argument("--train", action="store_true", help="run training steps (autodiff, AdamW) instead of a forward")
    s.add_argument("--steps", type=int, default=5, help="training steps (default 5)")
    s.add_argument("--lr", type=float, default=None, help="AdamW learning rate (default 6e-4, Cerebras-GPT 111M's)")
    s.add_argument("--data", metavar="FILE", help="with --train: train on this text file (default: a seeded random "
                   "token stream)")
    s.add_argument("--tokenizer", choices=["bytes", "bpe"], default="bytes",
                   help="how --data becomes tokens: its bytes (default), or a byte-level BPE of the model's "
                   "vocabulary size trained on the file with Hugging Face tokenizers")
    lora_arguments(s)
    s.add_argument("--sparsity", type=float, default=None, metavar="D",
                   help="with --train: sparse training, keeping this fraction D in (0, 1] of every linear weight but "
                   "lm_head (pruned by magnitude before the first step; the gradients masked, pruned weights kept at "
                   "zero; --compare masks the PyTorch loop the same way; default: dense)")
    s.add_argument("--stream-tokens", type=int, default=4096,
                   help="length of the random token stream, read again from the start when it ends (default 4096)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    s.set_defaults(fn=cmd_run)
