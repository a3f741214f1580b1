"""Disaggregated: a prefill engine and a decode engine on separate parts of the machine (two regions
of one mesh, or separate systems), each with its own step costs and KV budget.

A request is prefilled in the prefill engine, which samples its first token; the decode engine then
admits it (a batch slot and KV room for its whole length), and its prompt's KV cache moves over
the link between them: ``bytes / bytes_per_s + latency``, one transfer at a time on the link (the
next starts when the previous one's bytes are through). The prefill engine holds the request's KV
cache until the move ends; the request decodes from the decode engine's next step on."""

from __future__ import annotations

from dataclasses import dataclass

from ..costs import StepCost
from ..loop import TransferEnd
from ..scheduler import Batcher, Seq


@dataclass(frozen=True)
class Link:
    bytes_per_s: float
    latency: float
    name: str = ""


class Disaggregated:
    name = "disaggregated"

    def __init__(self, prefill: StepCost, decode: StepCost, link: Link, *, max_batch: int, chunk: int):
        self.pre = Batcher(prefill, max_batch, chunk, "prefill")
        self.dec = Batcher(decode, max_batch, chunk, "decode")
        self.engines = [self.pre, self.dec]
        self.link = link
        self.link_free = 0.0
        self.source: dict[int, Seq] = {}  # request id -> its sequence in the prefill engine
        self.moved_bytes = 0
        self.transfer_seconds = 0.0

    def fresh(self) -> Disaggregated:
        """A new, idle policy on the same step costs and link."""
        return Disaggregated(self.pre.cost, self.dec.cost, self.link, max_batch=self.pre.max_batch,
                             chunk=self.pre.chunk)

    def on_arrival(self, sim, req) -> None:
        why = self.pre.never_fits(req) or self.dec.never_fits(req)
        if why:
            sim.store.rejected(req.id, why)
            return
        self.pre.waiting.append(Seq(req))
        sim.kick(self.pre)

    def on_admit(self, sim, engine, s) -> None:
        if engine is self.pre:
            sim.store.admitted(s.req.id, sim.now)
            return
        nbytes = s.req.prompt * self.pre.cost.kv_bytes_per_token
        start = max(sim.now, self.link_free)
        self.link_free = start + nbytes / self.link.bytes_per_s
        self.moved_bytes += nbytes
        self.transfer_seconds += self.link_free + self.link.latency - start
        sim.at(self.link_free + self.link.latency, TransferEnd(s))

    def on_step_end(self, sim, engine, step) -> None:
        first, done, prefilled = engine.apply(step)
        for s in first:
            sim.store.first_token(s.req.id, sim.now)
        for s in done:
            sim.store.finished(s.req.id, sim.now)
        if engine is self.pre:
            for s in prefilled:
                if s.req.output == 1:
                    self.pre.release(s)
                    sim.store.finished(s.req.id, sim.now)
                else:
                    self.source[s.req.id] = s
                    self.dec.waiting.append(Seq(s.req, prefilled=s.req.prompt, generated=1, ready=False))
            sim.kick(self.dec)
        sim.kick(engine)

    def on_transfer_end(self, sim, seq) -> None:
        seq.ready = True
        self.pre.release(self.source.pop(seq.req.id))
        sim.kick(self.dec)
        sim.kick(self.pre)
