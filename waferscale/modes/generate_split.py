"""Generation over several systems, and the checks of its options: the decode program cut into
consecutive parts of about equal weight at transformer blocks, one per system (``modes/generate.py``
describes the model), the bytes that cross between them, and a run's time through them."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..backends import assumptions as A
from ..backends.machine import Machine
from ..backends.program import IO, RESIDENT, Program, sub_program
from ..errors import UsageError
from ..passes import CompileState
from ..passes.streaming import groups_of
from ..runtime.tile_sim import SimResult


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


def split_kernels(prog: Program, systems: int) -> list[tuple[int, ...]]:
    """N consecutive runs of the kernels, cut between transformer blocks, of about equal weight."""
    if systems == 1:
        return [tuple(range(len(prog.kernels)))]
    groups = [ks for _, ks in groups_of(prog)]
    if systems > len(groups):
        raise UsageError(f"--systems {systems} is more than the {len(groups)} parts {prog.graph.name} can be cut into "
                         "(its transformer blocks, embeddings and head)")
    cum, total = [], 0
    for ks in groups:
        total += sum(prog.kernels[k].weight_bytes for k in ks)
        cum.append(total)
    cuts, lo = [], 0
    for j in range(1, systems):  # part j ends after the group whose running weight is nearest j/N of all
        i = min(range(lo, len(groups) - systems + j), key=lambda i: (abs(cum[i] - total * j / systems), i))
        cuts.append(i + 1)
        lo = i + 1
    bounds = [0, *cuts, len(groups)]
    return [tuple(k for ks in groups[a:b] for k in ks) for a, b in zip(bounds, bounds[1:])]


def crossing_bytes(prog: Program, parts: list[tuple[int, ...]]) -> list[float]:
    """Bytes per token that cross from each part to the next (each value once)."""
    part_of = {k: i for i, ks in enumerate(parts) for k in ks}
    out = []
    for b in range(len(parts) - 1):
        crossing = {(f.src, f.value): f.bytes_per_token for f in prog.flows
                    if f.src != IO and part_of[f.src] <= b < part_of[f.dst]}
        out.append(sum(crossing.values()))
    return out


def same_kernels(a: Program, b: Program) -> None:
    if [k.name for k in a.kernels] != [k.name for k in b.kernels]:
        raise AssertionError("the prefill and decode graphs lowered to different kernels: "
                             f"{[k.name for k in a.kernels]} and {[k.name for k in b.kernels]}")


def part_program(prog: Program, kernels: tuple[int, ...], systems: int) -> Program:
    """One system's kernels as a program of their own; what an earlier system computed comes in over
    the link, which the simulation streams in as it streams a graph input over the system I/O."""
    if systems == 1:
        return prog
    sub = sub_program(prog, kernels)
    return replace(sub, flows=tuple(replace(f, src=IO) if f.src == RESIDENT else f for f in sub.flows))


def run_seconds(sims: list[SimResult], machine: Machine) -> float:
    """One run (a prefill or a decode step) through the systems in turn: every system's latency and
    every crossing's, then the longest any system spends on the rest of the batch. A crossing's
    transfer at the link's rate is in the receiving system's simulation (its input stream)."""
    first = sum(s.latency for s in sims) / machine.clock_hz + (len(sims) - 1) * A.INTER_SYSTEM_LATENCY_S
    return first + max((s.cycles - s.latency) / machine.clock_hz for s in sims)


def kv_bytes_per_core(s: CompileState) -> int:
    return max((k.model.sram(r.rows, r.cols).get("kv_cache", 0) for k, r in zip(s.program.kernels,
                                                                                 s.placement.rects)), default=0)


