"""`wafer compile --generate` and `wafer run --generate`: the command line of generation with a KV
cache (``waferscale.modes.generate`` compiles the prefill and decode steps; ``runtime/generate.py`` decodes)."""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import UsageError
from ..report.outputs import check_output
from .console import progress as _log


def generate_flags(args, flags: tuple[str, ...]) -> None:
    """Generation options given without --generate, or options generation does not take: one line."""
    if not args.generate:
        given = [f for f in flags if getattr(args, f.lstrip("-").replace("-", "_")) is not None]
        if given:
            raise UsageError(f"{', '.join(given)} set(s) up generation: add --generate")


def cmd_compile_generate(args) -> int:
    from ..compiled import write_compiled
    from ..generate import compile_generate
    from .quant import quantize_spec

    for flag, bad in (("--seq", args.seq is not None), ("--mode", args.mode is not None),
                      ("-p/--pipeline", args.pipeline is not None), ("--compile-to", args.compile_to is not None),
                      ("--frontend torch-mlir", args.frontend != "torch-export"),
                      ("--print-ir-after", bool(args.print_ir_after or args.print_ir_after_all))):
        if bad:
            raise UsageError(f"{flag} does not go with --generate (its pipeline is fixed, its lengths are "
                             "--prompt-len and --new-tokens)")
    if args.prompt_len is None or args.new_tokens is None:
        raise UsageError("--generate needs --prompt-len P and --new-tokens T")
    log = _log(args.quiet, args.verbose)
    model = Path(args.model)
    out = Path(args.output or Path("out") / f"{model.name}-generate")
    check_output(out, "compile")  # a bad -o is refused before the work, not after
    c = compile_generate(args.model, prompt_len=args.prompt_len, new_tokens=args.new_tokens, batch=args.batch,
                         dtype=args.dtype, target=args.target, systems=args.systems or 1, split=args.split,
                         seed=args.seed, log=log, quantize=quantize_spec(args),
                         placement=args.placement or "auto", expert_routing=args.expert_routing)
    for p in write_compiled(c, out):
        log(f"wrote {p}")
    log.close()
    g = c.report["generate"]
    on = f"{g['systems']} x {c.report['target']}" if g["systems"] > 1 else c.report["target"]
    print(f"{c.report['model']['name']} on {on}, prompt {g['prompt_len']}, {g['new_tokens']} new tokens, batch "
          f"{g['batch']}: time to first token {1e3 * g['ttft_seconds']:.3f} ms; decode "
          f"{1e6 * g['decode_seconds_per_token']:.2f} us/token = {g['decode_tokens_per_second']:,.0f} tokens/s "
          f"({g['decode_tokens_per_second_per_user']:,.0f} per sequence); KV cache ({g['kv_dtype']}) "
          f"{g['kv_cache_bytes'] / 2**20:.1f} "
          f"MiB, {g['kv_cache_bytes_per_core']:,} B on the busiest core -> {out}/")
    return 0


DEFAULT_PROMPT = "Hello, wafer"


def cmd_run_generate(args, log) -> int:
    import numpy as np

    from ..frontend import byte_tokens
    from ..generate import step_graphs
    from ..runtime.generate import greedy

    args.prompt = DEFAULT_PROMPT if args.prompt is None else args.prompt
    args.new_tokens = 16 if args.new_tokens is None else args.new_tokens
    byte_tokens.encode(args.prompt, 256)  # an empty prompt is refused before any tracing
    if args.seq is not None:
        raise UsageError("--seq does not go with --generate: the prompt's bytes are its tokens")
    log(f"building {args.model} with random weights (seed {args.seed}); tracing its prefill and decode step")
    st = step_graphs(args.model, prompt_len=max(len(args.prompt.encode("utf-8")), 1), new_tokens=args.new_tokens,
                     batch=1, dtype="f32", seed=args.seed, weights="random", log=log)
    ids = np.array([byte_tokens.encode(args.prompt, st.decode.info["vocab"])])
    t0 = time.perf_counter()
    tokens, _ = greedy(st.prefill_state.graph, st.decode_state.graph, st.decode.weights, ids, args.new_tokens)
    new = [int(x) for x in tokens[0]]
    print(f"{st.decode.info['name']}: {len(new)} new tokens in {time.perf_counter() - t0:.2f} s through the prefill "
          f"({len(st.prefill_state.graph.ops)} ops) and decode-step ({len(st.decode_state.graph.ops)} ops) graphs, KV "
          f"cache of {st.capacity} rows (token ids are bytes; <n> is an id above 255)")
    print(f"tokens: {new}")
    print(f"text:   {byte_tokens.decode(new)!r}")
    import torch

    from ..frontend.lm import quiet_transformers

    hf = st.decode.module.model
    prompt = torch.from_numpy(ids)
    with torch.no_grad(), quiet_transformers():
        ref = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=args.new_tokens,
                          min_new_tokens=args.new_tokens, do_sample=False, num_beams=1,
                          pad_token_id=hf.config.eos_token_id)[0, ids.shape[1]:].tolist()
    same = ref == new
    print(f"Hugging Face generate (greedy, its own KV cache, same weights): {ref}: "
          f"{'the same tokens' if same else 'DIFFERENT'}")
    return 0 if same else 1
