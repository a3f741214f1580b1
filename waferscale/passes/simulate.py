"""simulate: the tile-level discrete-event simulation of the placed, routed program
(``runtime/tile_sim.py``)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..backends import assumptions as A
from ..errors import UsageError
from ..runtime.stream_sim import simulate_streaming
from ..runtime.tile_sim import simulate
from .base import ROUTED, SIMULATED, CompileState, Pass, option, register


@register
@dataclass(frozen=True)
class Simulate(Pass):
    name = "simulate"
    stage = ROUTED
    gives = SIMULATED
    summary = ("tile-level discrete-event simulation: cycles, per-kernel busy time and bound, roofline; streamed "
               "layers one after another behind their weights")
    chunk: int = option(A.CHUNK_TOKENS, "tokens per simulated chunk (the granularity of the events)")

    def run(self, s: CompileState) -> CompileState:
        if self.chunk < 1:
            raise UsageError(f"simulate{{chunk={self.chunk}}}: a chunk holds at least 1 token")
        if s.placement.is_streaming:
            sim = simulate_streaming(s.program, s.placement, s.routing, chunk=self.chunk,
                                     stream_latency=s.stream_latency,
                                     progress=lambda done, n: s.log(f"simulating: {done}/{n} layers"))
        else:
            sim = simulate(s.program, s.placement, s.routing, chunk=self.chunk,
                           progress=lambda done, n: s.log(f"simulating: {done:,}/{n:,} kernel chunks"))
        s.log(f"simulated {len(sim.spans):,} kernel chunks: {sim.cycles:,} cycles")
        return replace(s, sim=sim)
