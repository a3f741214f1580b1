"""A serving engine's placement, latency or throughput (`wafer serve --placement`, as `wafer compile
--generate --placement`: ``passes/placement_kind.py``), from one trace of the step graphs.
``latency`` or ``throughput`` places every system of the engine so, and fails if one does not fit.

``auto`` (the default) places each system's part both ways and, as ``--generate`` does, keeps for
each system the candidate whose part of the step is faster at the engine's **operating point**:
the decode step (speculative decoding's target: its verify step) at half the context, at the batch
the requests would keep running. That batch is Little's law over the requests given: arrivals per
second x mean output tokens x the one-sequence step of the placement chosen at batch 1, at least 1
and at most ``--max-batch``, a fraction read between the whole batches around it (a decode step
grows about linearly with them); an estimate that leaves out prefill steps and the step's own
growth with the batch. With no requests given (a library caller, one request at a time), 1. A tie
keeps throughput. A candidate that does not fit a system (the latency placement may not, at
``--max-batch`` KV caches of ``--max-context`` rows) is set aside and the reason says why.

Prefill chunks run as `--generate`'s prefill does (``modes/generate_placement.py``): on each system,
whichever candidate runs a full chunk from position 0 faster (a tie keeps throughput). As there, no
weight reload is counted when the prefill and the decode steps take different placements (each is
assumed to hold every weight); a step then carries its decode tokens and its prompt chunk on the
two placements one after the other, costed as the sum of the two (no shared pipeline fill). The
engine's KV capacity is the smaller of the two placements'.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
        """From a list of ``serve.trace.Request``: arrivals over their span (None for fewer than two; a
        burst, all at one instant, is an infinite rate: the batch fills ``--max-batch``)."""
        if len(requests) < 2:
            return None
        span = max(r.arrival for r in requests) - min(r.arrival for r in requests)
        rate = (len(requests) - 1) / span if span > 0 else math.inf
        return Load(rate, sum(r.output for r in requests) / len(requests))


def expected_batch(load: Load | None, step: float, max_batch: int, growth: float = 0.0) -> float:
    """Little's law: sequences decoding at once on average, each ``output_tokens`` steps, a step of b
    sequences taking ``step + (b - 1) growth`` seconds: b = a (step - growth) / (1 - a growth), a the
    tokens a second the load asks. Where ``a growth >= 1`` each added sequence slows the step by more
    than it brings, the batch fills: ``max_batch``. At least 1; a fraction (an average)."""
    if load is None:
        return 1.0
    a = load.rate * load.output_tokens
    if math.isinf(a) or a * growth >= 1:
        return float(max_batch)
    return float(max(1.0, min(max_batch, a * (step - growth) / (1 - a * growth))))


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

    def pick(cyc: dict) -> tuple:  # each system's faster (a tie keeps throughput)
        return tuple(min(fits[i], key=lambda k: (cyc[i, k], k != "throughput")) for i in range(systems))

    def cycles(at: dict) -> dict:
        return {key: r.cycles for key, r in at.items()}

    def run_at(at: dict, kinds: tuple) -> float:
        return run_seconds([at[i, k] for i, k in enumerate(kinds)], machine)

    at1 = sims(lower(dgraph, 1, tokens, ctx, machine), step_chunk)
    cyc = cycles(at1)
    kinds1 = pick(cyc)  # the fastest at one sequence, each system its own
    combos = list(dict.fromkeys([kinds1, *((k,) * systems for k in kinds_asked if all(k in f for f in fits))]))
    # a load: each combination at the batch the load keeps running on it (a step of b sequences: s1 + (b - 1) g)
    at2 = sims(lower(dgraph, 2, tokens, ctx, machine), step_chunk) if load and max_batch > 1 else None
    point = {}
    for c in combos:
        s1 = run_at(at1, c)
        g = run_at(at2, c) - s1 if at2 else 0.0
        b = expected_batch(load, s1, max_batch, g)
        point[c] = (s1 + (b - 1) * g, b, s1, g)
    kinds = min(combos, key=lambda c: (point[c][0], c.count("latency")))  # a tie keeps throughput
    by_kind = {summary(c): point[c][0] for c in combos}
    batch = point[kinds][1]
    rate = "all at once" if load and math.isinf(load.rate) else f"{load.rate:g}/s" if load else ""
    basis = (f"batch: the load's, by Little's law ({rate} x {load.output_tokens:.1f} output tokens x the "
             "step at that batch, at most --max-batch: where the step grows by a sequence's share faster than the "
             "load asks, the batch fills --max-batch)" if load else
             "batch: one sequence (no load to place for)" if kind == "auto" else
             "batch: one sequence (the placement asked; no operating point needed)")
    why = _reason(kind, what, cyc, fits, unfit, kinds1, systems)
    if len(combos) > 1 and load:
        why += "; at the load: " + "; ".join(
            f"{summary(c)}: {1e3 * s1:.4f} ms at one sequence, {1e3 * g:.4f} ms more a sequence, batch {b:.2f}"
            f"{' (--max-batch: the load outruns it)' if b >= max_batch else ''}: {1e3 * t:.4f} ms"
            for c, (t, b, s1, g) in point.items())
    why += f"; {basis}"
    packed = [str(i + 1) for i, k in enumerate(kinds) if k == "latency" and made[i, k].reason]
    if packed:  # passes/latency.py: program order did not pack these parts
        why += f"; latency placement packed largest first on system {', '.join(packed)}"
    plain_kinds = kinds
    if verify_tokens:  # the target's plain decode step too (its placement alone: benchmarks/serve_speculative.py)
        plain_kinds = pick(cycles(sims(lower(dgraph, 1, 1, ctx, machine), 1)))
    pre_at = sims(head_on_last_position(lower(pgraph, 1, chunk, 0, machine)), A.CHUNK_TOKENS)
    pkinds = pick(cycles(pre_at))
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
              "operating_point": {"step": "verify" if verify_tokens else "decode", "context": ctx,
                                  "batch": round(batch, 3), "batch_basis": basis,
                                  "batch_by_placement": {summary(c): round(point[c][1], 3) for c in combos}},
              "step_seconds_by_placement": by_kind,
              "cycles_by_system": [{k: cyc[i, k] for k in fits[i]} for i in range(systems)],
              "prefill_cycles_by_system": [{k: pre_at[i, k].cycles for k in fits[i]} for i in range(systems)],
              **({"decode_placement_kinds": list(plain_kinds)} if verify_tokens else {}),
              **({"placement_unfit": {f"system {i + 1}: {k}": v for (i, k), v in unfit.items()}} if unfit else {})}
    return EnginePlacement(dec, pre, record)


def _reason(kind, what, cyc, fits, unfit, kinds, systems) -> str:
    """Each system's figures at one sequence."""
    if kind != "auto":
        return (f"asked for (--placement {kind}): {what} at one sequence: {sum(cyc.values()):,} cycles"
                + (" (the systems' parts summed)" if systems > 1 else ""))
    parts = []
    for i in range(systems):
        name = f"system {i + 1}: " if systems > 1 else ""
        if len(fits[i]) == 1:
            other = "latency" if fits[i][0] == "throughput" else "throughput"
            parts.append(f"{name}{fits[i][0]}, the only one that fits ({other} placement does not: {unfit[i, other]}): "
                         f"{cyc[i, fits[i][0]]:,} cycles")
        else:
            parts.append(f"{name}{kinds[i]}: {cyc[i, 'latency']:,} cycles in latency placement and "
                         f"{cyc[i, 'throughput']:,} in throughput placement")
    return f"simulated both{' on each system' if systems > 1 else ''}: {what} at one sequence: " + "; ".join(parts)
