"""What ``wafer`` checks of a command line before it imports anything heavy or does any work (every
number in range, a model by zoo name, a --target, compile's pipeline), and how its --help shows
each option's default. A mistake is one UsageError line in a fraction of a second, not after
seconds of importing torch and tracing."""

from __future__ import annotations

import argparse
import os

from .. import limits as L
from ..errors import UsageError
from .console import comma_names as _names


class Help(argparse.HelpFormatter):
    """Every option's help ends with its default where it has one and the text does not say it."""

    def _get_help_string(self, action):
        text = action.help or ""
        d = action.default
        if "default" in text or d is None or d is False or d is argparse.SUPPRESS or not action.option_strings:
            return text
        return f"{text} (default {d})"


# Integer options of every command: (low, high), checked before any import or work (a typo is one
# line at once, not after a trace). The bounds are the ones the work itself enforces (limits.py).
_INTS = {"batch": (1, L.MAX_BATCH), "seq": (1, L.MAX_CONTEXT), "seed": (0, L.MAX_SEED), "systems": (1, L.MAX_SYSTEMS),
         "prompt_len": (1, L.MAX_CONTEXT), "new_tokens": (1, L.MAX_CONTEXT), "lora": (1, L.MAX_D_MODEL),
         "steps": (1, L.MAX_TRAIN_STEPS), "stream_tokens": (2, L.MAX_STREAM_TOKENS)}


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def check_numbers(args) -> None:
    """Every numeric option of the command in range, before any work: one UsageError line naming it."""
    import math

    batch, seq = getattr(args, "batch", None), getattr(args, "seq", None)
    if isinstance(batch, int) and (batch < 1 or (isinstance(seq, int) and seq < 1)):
        raise UsageError(f"--batch and --seq must be at least 1 (got {batch} and {seq})")
    for dest, (low, high) in _INTS.items():
        v = getattr(args, dest, None)
        if isinstance(v, int) and not isinstance(v, bool):
            if dest in ("prompt_len", "new_tokens") and v < 1:  # as generation words it
                raise UsageError(f"{_flag(dest)} must be at least 1 (got {v})")
            L.check_int(_flag(dest), v, low, high)
    v = getattr(args, "sparsity", None)
    if isinstance(v, float) and not 0.0 < v <= 1.0:
        raise UsageError(f"--sparsity {v} must be in (0, 1]: the fraction of each linear weight kept (0.25 keeps "
                         "a quarter)")
    for dest, low, high in (("lora_alpha", 0.0, math.inf), ("tol", 0.0, math.inf), ("lr", 0.0, 1.0)):
        v = getattr(args, dest, None)
        if isinstance(v, float) and not (math.isfinite(v) and (low < v < high or (dest == "tol" and v == 0))):
            raise UsageError(f"{_flag(dest)} {v} must be a number {'from' if dest == 'tol' else 'above'} {low:g}"
                             + (f" and below {high:g}" if math.isfinite(high) else ""))


def check_names(args) -> None:
    """A model by zoo name, a --target and compile's pipeline, checked against their tables without
    importing torch: an unknown name is one line at once."""
    model = getattr(args, "model", None)
    if isinstance(model, str) and args.command in ("compile", "run", "serve"):
        if not (model.endswith((".mlir", ".ir", ".json")) or os.sep in model or os.path.exists(model)):
            from ..frontend.zoo import lookup

            lookup(model)
    target = getattr(args, "target", None)
    if isinstance(target, str) and args.command in ("compile", "bench", "serve"):
        from ..backends.machine import get_machine

        get_machine(target)
    if args.command == "compile" and not (args.train or args.generate or args.model.endswith(".ir")):
        from ..passes import parse_pipeline  # NumPy, not torch: the pipeline checked before the trace
        from ..passes.plan import plan_passes

        plan_passes(parse_pipeline(args.pipeline) if args.pipeline is not None else None, args.target, [],
                    args.compile_to, args.mode, args.sparsity, _names(args.print_ir_after))
