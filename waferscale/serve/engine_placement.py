"""A serving engine's placement, latency or throughput (`wafer serve --placement`, as `wafer compile
--generate --placement`: ``passes/placement_kind.py``): both candidates placed on the same trace of
the step graphs, each on every system of the engine alike (``serve/wafer.py`` ``place_model``).

``auto`` (the default) keeps the candidate whose step is faster at the engine's **operating
point**: the decode step (speculative decoding's target: its verify step) at the batch the requests
would keep running, at half the context. That batch is Little's law over the requests given:
arrivals per second x mean output tokens x the candidate's own one-sequence step, rounded up, at
least 1 and at most ``--max-batch`` (an estimate: it leaves out prefill steps and the batch's own
growth of the step); with no requests given (a library caller), 1. A tie keeps throughput. A
candidate that does not fit (the latency placement may not, at ``--max-batch`` KV caches of
``--max-context`` rows) is set aside and the reason names why; ``latency`` or ``throughput`` makes
only that one and fails if it does not fit.

Prefill chunks run as `--generate`'s prefill does (``modes/generate_placement.py``): on whichever
candidate made runs a full chunk from position 0 faster (a tie keeps throughput). As there, no
weight reload is counted when the prefill and the decode steps take different placements (each is
assumed to hold every weight); a step then carries its decode tokens and its prompt chunk on the
two placements one after the other, costed as the sum of the two (no shared pipeline fill). The
engine's KV capacity is the smaller of the two placements'.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from ..backends import assumptions as A
from ..backends.lowering import lower
from ..errors import FitError
from ..modes.generate import step_graphs
from ..modes.generate_split import head_on_last_position
from ..modes.systems import part_program, split_pipeline
from ..modes.systems import pipeline_seconds as run_seconds
from ..passes.route import route
from ..runtime.tile_sim import simulate
from .placed import Placed

KINDS = ("auto", "latency", "throughput")  # passes/placement_kind.py's (a test holds them equal)


@dataclass(frozen=True)
class Load:
    """The requests an engine is placed for: arrivals per second and mean output tokens a request."""

    rate: float
    output_tokens: float

    @staticmethod
    def of(requests) -> Load | None:
        """From a list of ``serve.trace.Request``: arrivals over their span (None for fewer than two, or
        all at one instant)."""
        if len(requests) < 2:
            return None
        span = max(r.arrival for r in requests) - min(r.arrival for r in requests)
        if span <= 0:
            return None
        return Load((len(requests) - 1) / span, sum(r.output for r in requests) / len(requests))


def expected_batch(load: Load | None, step: float, max_batch: int) -> int:
    """Little's law: sequences decoding at once, each ``output_tokens`` steps of ``step`` seconds."""
    if load is None:
        return 1
    return max(1, min(max_batch, ceil(load.rate * load.output_tokens * step)))


@dataclass
class EnginePlacement:
    decode: Placed  # decode steps (and verify steps)
    prefill: Placed  # prompt chunks: the same object when both take one placement
    record: dict  # report keys: placement_kind, placement_kind_reason, ...


def summary(kinds: tuple) -> str:
    """One kind, or each system's (``latency/latency/latency/throughput``)."""
    return kinds[0] if len(set(kinds)) == 1 else "/".join(kinds)


def place_engine(place_model, place_part, model: str, machine, *, kind: str, load: Load | None, max_context: int,
                 max_batch: int, chunk: int, systems: int, dtype: str, seed: int, verify_tokens: int = 0,
                 log=lambda msg: None) -> EnginePlacement:
    """``place_model`` and ``place_part``: ``serve/wafer.py``'s (a whole engine, one system's part)."""
    st = step_graphs(model, prompt_len=chunk, new_tokens=max_context - chunk, batch=max_batch, dtype=dtype, seed=seed,
                     machine=machine, log=log)
    common = dict(max_context=max_context, max_batch=max_batch, systems=systems, dtype=dtype, seed=seed,
                  prompt_len=chunk, log=log, graphs=st)
    ctx = max(1, max_context // 2 - verify_tokens)
    what = (f"the verify step of {verify_tokens} positions" if verify_tokens else "the decode step") + \
        f" at context {ctx}"
    tokens, step_chunk = (verify_tokens, A.CHUNK_TOKENS) if verify_tokens else (1, 1)
    dgraph, pgraph = st.decode_state.graph, st.prefill_state.graph
    dprog = lower(dgraph, max_batch, 1, chunk, machine)
    splits = split_pipeline(dprog, systems)
    kinds_asked = ("throughput", "latency") if kind == "auto" else (kind,)
    made, unfit = {}, {}
    for i, ks in enumerate(splits):
        sub = part_program(dprog, ks, systems)
        for k in kinds_asked:
            try:
                made[i, k] = place_part(sub, machine, k, max_batch, max_context, log)
            except FitError as e:
                if kind == k:
                    raise
                unfit[i, k] = str(e).splitlines()[0]
                log(f"system {i + 1}: {k} placement does not fit: {unfit[i, k]}")
        if not any((i, k) in made for k in kinds_asked):
            raise FitError(unfit[i, "throughput"])
    fits = [tuple(k for k in kinds_asked if (i, k) in made) for i in range(systems)]

    def sims(prog, run_chunk: int) -> dict:
        """Each system's part of ``prog`` simulated on each of its placements."""
        out = {}
        for i, ks in enumerate(splits):
            sub = part_program(prog, ks, systems)
            for k in fits[i]:
                out[i, k] = simulate(sub, made[i, k], route(sub, made[i, k]), chunk=run_chunk)
        return out

    def pick(at: dict) -> tuple:  # each system's faster (a tie keeps throughput)
        return tuple(min(fits[i], key=lambda k: (at[i, k].cycles, k != "throughput")) for i in range(systems))

    def seconds(at: dict, kinds: tuple) -> float:
        return run_seconds([at[i, k] for i, k in enumerate(kinds)], machine)

    at1 = sims(lower(dgraph, 1, tokens, ctx, machine), step_chunk)
    kinds = pick(at1)
    batch = expected_batch(load, seconds(at1, kinds), max_batch)
    at = at1 if batch == 1 else sims(lower(dgraph, batch, tokens, ctx, machine), step_chunk)
    kinds = pick(at)
    by_kind = {k: seconds(at, (k,) * systems) for k in kinds_asked if all(k in f for f in fits)}
    by_kind[summary(kinds)] = seconds(at, kinds)
    basis = (f"batch: Little's law over the requests ({load.rate:g}/s x {load.output_tokens:.1f} output tokens x "
             "the one-sequence step, at most --max-batch)" if load else "batch: no requests given, one sequence")
    why = _reason(kind, what, batch, at, fits, unfit, kinds, systems, basis)
    plain_kinds = kinds
    if verify_tokens:  # the target's plain decode step too (its placement alone: benchmarks/serve_speculative.py)
        plain_kinds = pick(sims(lower(dgraph, batch, 1, ctx, machine), 1))
    pre_at = sims(head_on_last_position(lower(pgraph, 1, chunk, 0, machine)), A.CHUNK_TOKENS)
    pkinds = pick(pre_at)
    figures = "; ".join(f"system {i + 1}: " + " and ".join(f"{pre_at[i, k].cycles:,} cycles in {k} placement"
                                                          for k in fits[i]) for i in range(systems))
    preason = f"{summary(pkinds)}: a chunk of {chunk} tokens from position 0 takes {figures}"
    log(f"serving placement: {summary(kinds)}: {why}; prefill: {preason}")
    dec = place_model(model, machine, kind=kinds, made=made, **common)
    pre = dec if pkinds == kinds else place_model(model, machine, kind=pkinds, made=made, **common)
    record = {"placement_kind": summary(kinds), "placement_asked": kind,
              "placement_kind_reason": f"{summary(kinds)}: {why}", "placement_kinds": list(kinds),
              "prefill_placement_kind": summary(pkinds), "prefill_placement_reason": preason,
              "prefill_placement_kinds": list(pkinds),
              "operating_point": {"step": "verify" if verify_tokens else "decode", "context": ctx, "batch": batch,
                                  "batch_basis": basis},
              "step_seconds_by_placement": by_kind,
              "cycles_by_system": [{k: at[i, k].cycles for k in fits[i]} for i in range(systems)],
              "prefill_cycles_by_system": [{k: pre_at[i, k].cycles for k in fits[i]} for i in range(systems)],
              **({"decode_placement_kinds": list(plain_kinds)} if verify_tokens else {}),
              **({"placement_unfit": {f"system {i + 1}: {k}": v for (i, k), v in unfit.items()}} if unfit else {})}
    return EnginePlacement(dec, pre, record)


def _reason(kind, what, batch, at, fits, unfit, kinds, systems, basis) -> str:
    if kind != "auto":
        return f"asked for (--placement {kind}): {what} at batch {batch}"
    parts = []
    for i in range(systems):
        name = f"system {i + 1}: " if systems > 1 else ""
        if len(fits[i]) == 1:
            other = "latency" if fits[i][0] == "throughput" else "throughput"
            parts.append(f"{name}{fits[i][0]}, the only one that fits ({other} placement does not: {unfit[i, other]}): "
                         f"{at[i, fits[i][0]].cycles:,} cycles")
        else:
            parts.append(f"{name}{kinds[i]}: {at[i, 'latency'].cycles:,} cycles in latency placement and "
                         f"{at[i, 'throughput'].cycles:,} in throughput placement")
    return f"simulated both{' on each system' if systems > 1 else ''}: {what} at batch {batch}: " + \
        "; ".join(parts) + f"; {basis}"
