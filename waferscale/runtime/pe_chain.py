"""PE-level chains of kernels: a GEMV whose vector is the output of the GEMV before it, each element
entering the next grid's west edge as soon as it has left the previous grid's south edge and
crossed the fabric between them (``hops`` links and the router delay), so the next kernel starts on
the first elements (element streaming). The ground truth that the tile runtime's streaming between
kernels (``tile_sim.py``) is held to (``tests/test_streaming_chain.py``).

Each stage is ``pe_sim.simulate_gemv`` with ``arrivals``: its row injectors send an element only from
the cycle it arrived. The elements of the producer's output leave its south edge one per cycle per
column, in order; element ``e`` is element ``e`` of the consumer's vector (K split over its rows).
A stage may also be a row-wise scale (``("scale", gamma)``: RMSNorm's multiply by a weight, each
element scaled as it passes on the way, one datapath cycle per element, ``pe_rowwise`` holds the
full norm), which delays each element by its cycles and passes it on in order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backends.datapath import Datapath
from ..backends.machine import WSE2, Machine
from .pe_sim import simulate_gemv


@dataclass(frozen=True)
class ChainResult:
    y: np.ndarray  # the last stage's output
    cycles: int  # from the first stage's first injection to the last element out of the last stage
    finish: tuple[int, ...]  # per stage, the cycle its last output element left


def crossing(hops: int, machine: Machine = WSE2) -> int:
    """Cycles from an element leaving one grid to it being at the next grid's edge injector."""
    return hops * machine.hop_cycles + machine.router_delay_cycles


def simulate_chain(x: np.ndarray, stages: list, lanes: Datapath | float, hops: int,
                   machine: Machine = WSE2) -> ChainResult:
    """``stages``: ``(w, rows, cols)`` for a GEMV on a rows x cols grid. ``hops``: links between one
    stage's output edge and the next stage's input edge; ``machine``: its fabric's hop and router delay."""
    arrivals = np.zeros(len(x), np.int64)
    finish = []
    y = np.asarray(x, np.float32)
    for w, rows, cols in stages:
        r = simulate_gemv(y, w, rows, cols, lanes, arrivals=arrivals)
        if r.violations:
            raise RuntimeError(f"PE chain: {r.violations[0]}")
        y = r.c[0]
        finish.append(int(r.exits.max()))
        arrivals = r.exits + crossing(hops, machine)
    return ChainResult(y, finish[-1], tuple(finish))
