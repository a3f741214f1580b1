"""The discrete-event loop: a heap of timed events, one small class per kind, fired in time order
(ties in the order they were scheduled, so a run is deterministic). A policy owns the engines
(``scheduler.Batcher``) and answers the events; the loop starts an idle engine's next step."""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass

from .metrics import Store
from .scheduler import Batcher, Seq, Step
from .trace import Request


@dataclass
class Arrival:
    req: Request

    def fire(self, sim: Simulation) -> None:
        sim.policy.on_arrival(sim, self.req)


@dataclass
class StepEnd:
    engine: Batcher
    step: Step

    def fire(self, sim: Simulation) -> None:
        sim.busy.discard(id(self.engine))
        sim.store.steps += 1
        sim.policy.on_step_end(sim, self.engine, self.step)
        sim.store.sample(sim.now, sum(len(e.waiting) for e in sim.policy.engines),
                         sum(e.kv_used for e in sim.policy.engines))


@dataclass
class TransferEnd:
    seq: Seq

    def fire(self, sim: Simulation) -> None:
        sim.policy.on_transfer_end(sim, self.seq)


class Simulation:
    def __init__(self, policy, store: Store):
        self.policy, self.store = policy, store
        self.now = 0.0
        self.heap: list = []
        self.order = itertools.count()
        self.busy: set[int] = set()
        store.kv_capacity = sum(e.capacity for e in policy.engines)

    def at(self, t: float, event) -> None:
        heapq.heappush(self.heap, (t, next(self.order), event))

    def kick(self, engine: Batcher) -> None:
        """Start an idle engine's next step: admit what fits, then plan."""
        if id(engine) in self.busy:
            return
        for s in engine.admit():
            self.policy.on_admit(self, engine, s)
        step = engine.plan()
        if step is not None:
            self.busy.add(id(engine))
            self.at(self.now + step.seconds, StepEnd(engine, step))

    def run(self, requests: list[Request]) -> Store:
        for r in requests:
            self.at(r.arrival, Arrival(r))
        while self.heap:
            self.now, _, ev = heapq.heappop(self.heap)
            ev.fire(self)
        return self.store


def serve(requests: list[Request], policy, *, slo_ttft: float | None = None, slo_tpot: float | None = None) -> Store:
    """Run the requests through the policy's engines; the store holds what happened."""
    return Simulation(policy, Store(requests, slo_ttft, slo_tpot)).run(requests)
