"""Generation over several systems, and the checks of its options. The decode program is cut into
a pipeline of systems by ``modes/systems.py`` (shared by every mode; ``modes/generate.py`` describes
the model); what is generation's own is here."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..backends.kernels.last_position import LastPosition
from ..backends.machine import Machine
from ..backends.program import Program
from ..errors import UsageError
from ..passes import CompileState
from ..runtime.tile_sim import SimResult
from ..runtime.time_split import PARTS, time_split


@dataclass
class System:
    """One wafer's part of the model: its kernels (ids of the whole decode program), placed once,
    and its decode steps and prefill simulated on that placement."""

    kernels: tuple[int, ...]
    decode: CompileState  # the first decode step's program, placement, routing and simulation
    decode_last: SimResult
    prefill: SimResult
    weight_bytes: int
    kv_cache_bytes: int


def check_options(prompt_len: int, new_tokens: int, batch: int, systems: int) -> None:
    for flag, v in (("--prompt-len", prompt_len), ("--new-tokens", new_tokens), ("--batch", batch),
                    ("--systems", systems)):
        if v < 1:
            raise UsageError(f"{flag} must be at least 1 (got {v})")


def check_context(name: str, context: int | None, prompt_len: int, new_tokens: int) -> int:
    """The KV cache's rows, P + T, if the model's context holds them (a config may name none)."""
    if context is not None and prompt_len + new_tokens > context:
        fix = (f"ask for at most {context - prompt_len} new tokens" if prompt_len < context
               else f"use a prompt of at most {context - 1} tokens")
        raise UsageError(f"a prompt of {prompt_len} tokens + {new_tokens} new tokens = {prompt_len + new_tokens} "
                         f"positions, more than {name}'s context of {context}: {fix}")
    return prompt_len + new_tokens


def same_kernels(a: Program, b: Program) -> None:
    if [k.name for k in a.kernels] != [k.name for k in b.kernels]:
        raise AssertionError("the prefill and decode graphs lowered to different kernels: "
                             f"{[k.name for k in a.kernels]} and {[k.name for k in b.kernels]}")


def kv_bytes_per_core(s: CompileState) -> int:
    return max((k.model.sram(r.rows, r.cols).get("kv_cache", 0) for k, r in zip(s.program.kernels,
                                                                                 s.placement.rects)), default=0)




def head_on_last_position(prog: Program) -> Program:
    """The prefill with its LM head (the kernel of the logits, the graph's first output) computing the
    last position only: the first new token is sampled from it (runtime/generate.py)."""
    logits = prog.graph.outputs[0].name
    kernels = tuple(replace(k, model=LastPosition.of(k.model)) if k.op.result.name == logits and k.op.kind in
                    ("linear", "matmul", "fused") else k for k in prog.kernels)
    return replace(prog, kernels=kernels)


def split_seconds(out: list, machine: Machine) -> dict[str, float]:
    """The first decode step's time by part (runtime/time_split.py), over the systems in turn; the links
    between systems count as fabric."""
    total = dict.fromkeys(PARTS, 0.0)
    for s in out:
        for p, v in time_split(s.decode.program, s.decode.placement, s.decode.sim).items():
            total[p] += v / machine.clock_hz
    total["fabric"] += (len(out) - 1) * machine.inter_system_latency_s
    return total
