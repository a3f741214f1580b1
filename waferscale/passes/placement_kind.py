"""Throughput or latency placement: both are made and simulated, the faster is kept (``--placement``).

- **throughput** (``place.py``): every kernel on its own rectangle, sized so the pipeline's stages
  are balanced; a token crosses them one after another. Best when many tokens are in flight.
- **latency** (``latency.py``): every kernel on the region that finishes it soonest, regions shared in
  time by kernels that never run at once. Best for a decode step at small batch.

``auto`` simulates each that fits on the same program and keeps the one whose run takes fewer
cycles (a tie keeps throughput); the reason names both figures. ``latency`` or ``throughput`` makes
only that one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from ..backends.machine import Machine
from ..backends.program import Placement, Program, Routing
from ..errors import FitError
from ..runtime.tile_sim import SimResult, simulate
from .latency import place_latency
from .placement_check import verify_placement
from .route import route

KINDS = ("auto", "latency", "throughput")

def kind_of(placement: Placement) -> str:
    return "latency" if placement.mode == "latency" else "throughput"


@dataclass
class Placed:
    placement: Placement
    routing: Routing


def candidates(prog: Program, machine: Machine, kind: str, throughput: Callable[[], Placement],
               log=lambda msg: None) -> dict[str, Placed]:
    """The placements ``kind`` asks for that fit (``auto``: both, or whichever fits)."""
    out: dict[str, Placed] = {}
    failed: FitError | None = None
    if kind in ("auto", "throughput"):
        try:
            p = throughput()
            out["throughput"] = Placed(p, route(prog, p))
        except FitError as e:
            if kind == "throughput":
                raise
            failed = e
    if kind in ("auto", "latency"):
        try:
            p = verify_placement(prog, place_latency(prog, machine, log=log))
            out["latency"] = Placed(p, route(prog, p))
        except FitError:
            if kind == "latency" or not out:
                if failed is not None:
                    raise failed from None
                raise
    return out


def choose(prog: Program, placed: dict[str, Placed], kind: str, chunk: int = 1,
           what: str = "a step") -> tuple[str, str, dict[str, SimResult]]:
    """Simulate the program on each placement; (the kind kept, why, every simulation)."""
    sims = {k: simulate(prog, p.placement, p.routing, chunk=chunk) for k, p in placed.items()}
    if kind != "auto":
        return kind, f"asked for (--placement {kind}): {what} takes {sims[kind].cycles:,} cycles", sims
    if len(sims) == 1:
        (only,) = sims
        other = "latency" if only == "throughput" else "throughput"
        return only, f"the only one that fits ({other} placement does not): {what} takes {sims[only].cycles:,} " \
                     "cycles", sims
    lat, thr = sims["latency"].cycles, sims["throughput"].cycles
    best = "latency" if lat < thr else "throughput"
    return best, (f"simulated both: {what} takes {lat:,} cycles in latency placement and {thr:,} in throughput "
                  f"placement"), sims


def settle(placed: dict[str, Placed], best: str, why: str) -> Placed:
    """The chosen placement, with the reason recorded on it."""
    p = placed[best]
    return Placed(replace(p.placement, kind_reason=f"{best}: {why}"), p.routing)


@dataclass
class GenerationPlacement:
    """A generation's placement (chosen on its first decode step) and its runs: the decode steps on it,
    and the prefill on whichever candidate runs it faster."""

    placed: Placed
    decode: SimResult  # the first decode step
    decode_last: SimResult
    prefill: SimResult
    prefill_kind: str
    prefill_reason: str
    decode_cycles: dict[str, int]  # the first decode step's cycles on each candidate placement
    prefill_cycles: dict[str, int]


def place_generation(dec: Program, dec_last: Program, pre: Program, machine: Machine, kind: str,
                     throughput: Callable[[], Placement], prefill_chunk: int, log=lambda msg: None
                     ) -> GenerationPlacement:
    placed = candidates(dec, machine, kind, throughput, log)
    best, why, sims = choose(dec, placed, kind, chunk=1, what="the first decode step")
    chosen = settle(placed, best, why)
    log(f"decode placement: {best} ({why})")
    last = simulate(dec_last, chosen.placement, chosen.routing, chunk=1)
    pre_sims = {k: simulate(pre, p.placement, route(pre, p.placement), chunk=prefill_chunk) for k, p in placed.items()}
    pkind = min(pre_sims, key=lambda k: (pre_sims[k].cycles, k != "throughput"))
    figures = " and ".join(f"{s.cycles:,} cycles in {k} placement" for k, s in sorted(pre_sims.items()))
    preason = f"{pkind}: the prefill takes {figures}" + ("" if len(pre_sims) > 1 else " (the only one made)")
    return GenerationPlacement(chosen, sims[best], last, pre_sims[pkind], pkind, preason,
                               {k: s.cycles for k, s in sorted(sims.items())},
                               {k: s.cycles for k, s in sorted(pre_sims.items())})
