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

from ..errors import FitError
from ..modes.generate import step_graphs
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


def place_engine(place_model, model: str, machine, *, kind: str, load: Load | None, max_context: int, max_batch: int,
                 chunk: int, systems: int, dtype: str, seed: int, verify_tokens: int = 0,
                 log=lambda msg: None) -> EnginePlacement:
    """``place_model``: ``serve/wafer.py``'s, which places one candidate."""
    st = step_graphs(model, prompt_len=chunk, new_tokens=max_context - chunk, batch=max_batch, dtype=dtype, seed=seed,
                     machine=machine, log=log)
    cands: dict[str, Placed] = {}
    unfit: dict[str, str] = {}
    for name in ("throughput", "latency"):
        if kind not in ("auto", name):
            continue
        try:
            cands[name] = place_model(model, machine, max_context=max_context, max_batch=max_batch, systems=systems,
                                      dtype=dtype, seed=seed, prompt_len=chunk, log=log, kind=name, graphs=st)
        except FitError as e:
            if kind == name:
                raise
            unfit[name] = str(e).splitlines()[0]
            log(f"{name} placement does not fit: {unfit[name]}")
    if not cands:
        raise FitError(" and ".join(unfit.values()))
    ctx = max(1, max_context // 2 - verify_tokens)
    what = (f"the verify step of {verify_tokens} positions" if verify_tokens else "the decode step") + \
        f" at context {ctx}"

    def step(p: Placed, b: int) -> float:
        return p.verify(b, verify_tokens, ctx) if verify_tokens else p.decode(b, ctx)

    batch = {k: expected_batch(load, step(p, 1), max_batch) for k, p in cands.items()}
    seconds = {k: step(p, batch[k]) for k, p in cands.items()}
    # a verify engine's plain decode step too (speculative decoding's target alone: benchmarks/serve_speculative.py)
    plain = {k: p.decode(batch[k], ctx) for k, p in cands.items()} if verify_tokens else seconds
    at = lambda k: f"{1e3 * seconds[k]:.4f} ms in {k} placement at batch {batch[k]}"  # noqa: E731
    basis = (f"batch: Little's law over the requests ({load.rate:g}/s x {load.output_tokens:.1f} output tokens x "
             "the one-sequence step, at most --max-batch)" if load else "batch: no requests given, one sequence")
    if kind != "auto":
        best, why = kind, f"asked for (--placement {kind}): {what} takes {at(kind)}"
    elif len(cands) == 1:
        (best,) = cands
        other = "latency" if best == "throughput" else "throughput"
        why = f"the only one that fits ({other} placement does not: {unfit[other]}): {what} takes {at(best)}"
    else:
        best = "latency" if seconds["latency"] < seconds["throughput"] else "throughput"
        why = f"simulated both: {what} takes {at('latency')} and {at('throughput')}; {basis}"
    pre = {k: p.prefill(chunk, 0) for k, p in cands.items()}
    pkind = min(pre, key=lambda k: (pre[k], k != "throughput"))
    figures = " and ".join(f"{1e3 * v:.4f} ms in {k} placement" for k, v in sorted(pre.items()))
    preason = (f"{pkind}: a chunk of {chunk} tokens from position 0 takes {figures}"
               + ("" if len(pre) > 1 else " (the only one made)"))
    log(f"serving placement: {best}: {why}; prefill: {preason}")
    record = {"placement_kind": best, "placement_asked": kind, "placement_kind_reason": f"{best}: {why}",
              "prefill_placement_kind": pkind, "prefill_placement_reason": preason,
              "operating_point": {"step": "verify" if verify_tokens else "decode", "context": ctx,
                                  "batch_by_placement": batch, "batch_basis": basis},
              "step_seconds_by_placement": seconds, "decode_seconds_by_placement": plain,
              "prefill_seconds_by_placement": pre,
              **({"placement_unfit": unfit} if unfit else {})}
    return EnginePlacement(cands[best], cands[pkind], record)
