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
full norm), which takes each element as it arrives and passes the result on (``scale_stage``).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

import numpy as np

from ..backends.datapath import Datapath, as_datapath
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


def simulate_chain(x: np.ndarray, stages: list, lanes: Datapath | float, hops: int | list[int],
                   machine: Machine = WSE2) -> ChainResult:
    """``stages``: ``(w, rows, cols)`` for a GEMV on a rows x cols grid, or ``("scale", gamma, cols)``
    for a row-wise scale on a 1 x cols row of cores (``scale_stage``). ``hops``: links between one
    stage's output edge and the next stage's input edge (one figure for every crossing, or one per crossing);
    ``machine``: its fabric's hop and router delay."""
    crossings = list(hops) if isinstance(hops, (list, tuple)) else [hops] * (len(stages) - 1)
    arrivals = np.zeros(len(x), np.int64)
    finish = []
    y = np.asarray(x, np.float32)
    for i, stage in enumerate(stages):
        if isinstance(stage[0], str):
            _, gamma, cols = stage
            y, exits = y * np.asarray(gamma, np.float32), scale_stage(arrivals, cols, machine, lanes)
        else:
            w, rows, cols = stage
            r = simulate_gemv(y, w, rows, cols, lanes, arrivals=arrivals, depth=machine.pe_queue_depth,
                              machine=machine)
            if r.violations:
                raise RuntimeError(f"PE chain: {r.violations[0]}")
            y, exits = r.c[0], r.exits
        finish.append(int(exits.max()))
        if i < len(crossings):
            arrivals = exits + crossing(crossings[i], machine)
    return ChainResult(y, finish[-1], tuple(finish))


def scale_stage(arrivals: np.ndarray, cols: int, machine: Machine = WSE2, lanes: Datapath | float | None = None
                ) -> np.ndarray:
    """When each element leaves a row-wise scale on a 1 x cols row of cores, given when it arrived at
    the row's west edge. Core j holds the scale of the j-th block of elements; an element crosses j
    links east to it. Its task starts on its first element (``Costs.task_start``) and issues one
    vector multiply over its block with the fabric as operand (``Costs.vector_issue``), which takes an
    element as it arrives, at the datapath's rate (one a cycle; f32: ``Costs.f32_elem_cycles``); each
    result leaves east, across the cores after it, to the row's east edge. ``lanes``: the datapath
    (its costs), else the machine's f16 one."""
    dp = machine.datapath("f16") if lanes is None else as_datapath(lanes)
    step = max(1, ceil(1 / dp.rate))
    n = len(arrivals)
    cols = min(cols, n)
    ft = -(-n // cols)
    out = np.zeros(n, np.int64)
    for j in range(cols):
        lo, hi = j * ft, min((j + 1) * ft, n)
        if lo >= hi:
            break
        arr = arrivals[lo:hi] + j * machine.hop_cycles
        t = int(arr[0]) + dp.costs.task_start + dp.costs.vector_issue - 1
        for i, a in enumerate(arr):
            t = max(t, int(a)) + step
            out[lo + i] = t + (cols - 1 - j) * machine.hop_cycles
    return out
