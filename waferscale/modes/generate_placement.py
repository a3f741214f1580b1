"""A generation's placement, latency or throughput (``--placement``, ``passes/placement_kind.py``):
the throughput candidate is the generate mode's recorded pipeline (place, route, simulate); the
latency candidate (``passes/latency.py``: every kernel on the region that finishes it soonest,
regions shared in time) is placed, routed and simulated beside it. ``auto`` keeps the one whose
first decode step takes fewer cycles (a tie keeps throughput), and the prefill runs on whichever
candidate runs it faster. The latency placer is not a pass yet: ``run.executed`` records the
throughput candidate's pipeline under each graph's name ("decode", "decode_last", "prefill") and,
where the latency candidate was made, what it ran under the same name with "/latency" added
(``modes/generate.py`` ``LATENCY_STEPS``); the report's ``placement.kind`` and
``generate.placement_kind`` say which one the figures are of."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..backends import assumptions as A
from ..backends.program import Program
from ..errors import FitError
from ..passes.latency import place_latency
from ..passes.placement_check import verify_placement
from ..passes.route import route
from ..runtime.tile_sim import SimResult, simulate


@dataclass
class Candidate:
    state: object  # the decode step's CompileState on this placement
    decode_last: SimResult
    prefill: SimResult


@dataclass
class Chosen:
    state: object
    decode_last: SimResult
    prefill: SimResult
    kind: str
    prefill_kind: str
    prefill_reason: str
    decode_cycles: dict
    prefill_cycles: dict


def latency_candidate(lowered, sub: Program, sub_last: Program, sub_pre: Program, machine, log) -> Candidate:
    """The latency placement of one system's part, routed and simulated (decode first and last, prefill)."""
    p = verify_placement(sub, place_latency(sub, machine, log=log))
    r = route(sub, p)
    sim = simulate(sub, p, r, chunk=1)
    return Candidate(replace(lowered, program=sub, placement=p, routing=r, sim=sim), simulate(sub_last, p, r, chunk=1),
                     simulate(sub_pre, p, route(sub_pre, p), chunk=A.CHUNK_TOKENS))


def choose(cands: dict[str, Candidate], kind: str) -> Chosen:
    """The decode step's placement (``kind``, or the faster of both under ``auto``) and the prefill's."""
    cycles = {k: c.state.sim.cycles for k, c in sorted(cands.items())}
    if kind != "auto":
        best, why = kind, f"asked for (--placement {kind}): the first decode step takes {cycles[kind]:,} cycles"
    elif len(cands) == 1:
        (best,) = cands
        other = "latency" if best == "throughput" else "throughput"
        why = (f"the only one that fits ({other} placement does not): the first decode step takes "
               f"{cycles[best]:,} cycles")
    else:
        best = "latency" if cycles["latency"] < cycles["throughput"] else "throughput"
        why = (f"simulated both: the first decode step takes {cycles['latency']:,} cycles in latency placement and "
               f"{cycles['throughput']:,} in throughput placement")
    c = cands[best]
    packed = f"; {c.state.placement.reason}" if best == "latency" and c.state.placement.reason else ""
    state = replace(c.state, placement=replace(c.state.placement, kind_reason=f"{best}: {why}{packed}"))
    pre = {k: x.prefill.cycles for k, x in sorted(cands.items())}
    pkind = min(pre, key=lambda k: (pre[k], k != "throughput"))
    figures = " and ".join(f"{n:,} cycles in {k} placement" for k, n in pre.items())
    preason = f"{pkind}: the prefill takes {figures}" + ("" if len(pre) > 1 else " (the only one made)")
    return Chosen(state, c.decode_last, cands[pkind].prefill, best, pkind, preason, cycles, pre)


def place_system(throughput, latency, kind: str) -> Chosen:
    """Both candidates as ``kind`` asks (each a function making one; a FitError of one that ``auto``
    can do without is set aside), then ``choose``."""
    cands: dict[str, Candidate] = {}
    failed: FitError | None = None
    for name, make in (("throughput", throughput), ("latency", latency)):
        if kind not in ("auto", name):
            continue
        try:
            cands[name] = make()
        except FitError as e:
            if kind == name:
                raise
            failed = failed or e
    if not cands:
        raise failed
    return choose(cands, kind)
