"""Colocated: prefill and decode share every core, as one pipeline; one engine batches both
(continuous batching with chunked prefill, ``scheduler.Batcher`` role ``both``)."""

from __future__ import annotations

from ..costs import StepCost
from ..scheduler import Batcher, Seq


class Colocated:
    name = "colocated"

    def __init__(self, cost: StepCost, *, max_batch: int, chunk: int):
        self.engine = Batcher(cost, max_batch, chunk, "both")
        self.engines = [self.engine]

    def fresh(self) -> Colocated:
        """A new, idle policy on the same step costs (a run leaves its engines' state behind)."""
        return Colocated(self.engine.cost, max_batch=self.engine.max_batch, chunk=self.engine.chunk)

    def on_arrival(self, sim, req) -> None:
        why = self.engine.never_fits(req)
        if why:
            sim.store.rejected(req.id, why)
            return
        self.engine.waiting.append(Seq(req))
        sim.kick(self.engine)

    def on_admit(self, sim, engine, s) -> None:
        sim.store.admitted(s.req.id, sim.now)

    def on_step_end(self, sim, engine, step) -> None:
        first, done, _ = engine.apply(step)
        for s in first:
            sim.store.first_token(s.req.id, sim.now)
        for s in done:
            sim.store.finished(s.req.id, sim.now)
        sim.kick(engine)

    def on_transfer_end(self, sim, seq) -> None:
        raise AssertionError("a colocated engine moves no KV cache")
