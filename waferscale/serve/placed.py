"""A model placed for serving (``serve/wafer.py`` places it): its decode steps, prefill chunks and
verify steps, each lowered for the shape at hand and simulated on demand through the placement
(``serve/streamed.py``'s weight-streamed model is the same face over the streaming simulator)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..backends import assumptions as A
from ..backends.lowering import lower
from ..backends.machine import Machine
from ..modes.generate_split import head_on_last_position
from ..modes.systems import part_program
from ..modes.systems import pipeline_seconds as run_seconds
from ..passes.route import route
from ..runtime.tile_sim import simulate


@dataclass
class Placed:
    """One placed model (on one region or a pipeline of systems) that simulates steps on demand."""

    machine: Machine
    parts: list  # [(kernels, placement, routing)] per system
    decode_graph: object
    prefill_graph: object
    max_context: int
    kv_bytes_per_token: int
    kv_capacity_tokens: int
    kv_detail: list
    systems: int
    seconds_simulating: float = 0.0
    pipeline: str = ""  # what ran: the step graphs' passes, then each step lowered, placed, routed, simulated

    def _program(self, graph, samples: int, tokens: int, position: int):
        prog = lower(graph, samples, tokens, position, self.machine)
        if graph is self.prefill_graph:  # the LM head on the chunk's last position only, as generate's prefill
            prog = head_on_last_position(prog)
        return prog

    def _run(self, graph, samples: int, tokens: int, position: int, chunk: int) -> float:
        return self._sim([(self._program(graph, samples, tokens, position), chunk)])

    def _sim(self, runs: list) -> float:
        """One step of these (program, chunk) runs, their items one after another through the pipeline."""
        t0 = time.perf_counter()
        sims = []
        for ks, placement, _ in self.parts:
            subs = [(part_program(prog, ks, self.systems), chunk) for prog, chunk in runs]
            first = subs[0][0]
            sims.append(simulate(first, placement, route(first, placement), chunk=subs[0][1], then=tuple(subs[1:])))
        self.seconds_simulating += time.perf_counter() - t0
        return run_seconds(sims, self.machine)

    def mixed(self, batch: int, context: int, pieces: list[tuple[int, int]]) -> float:
        """A mixed step simulated as one: each prompt piece (tokens, position), then ``batch`` decode
        tokens at ``context``, through the same pipeline. The pieces go first: over several systems
        (``modes.systems.pipeline_seconds``: the first sample through every system in turn, then the
        slowest system's rest) a chunk is then counted through the systems in turn, as a prefill
        alone is; behind the decode tokens it would count as overlapped across the systems, which a
        prefill alone never is (llama-3.1-70b on four systems: the sum-less-fill rule 137% above)."""
        runs = [(self._program(self.prefill_graph, 1, n, p), A.CHUNK_TOKENS) for n, p in pieces]
        runs += [(self._program(self.decode_graph, batch, 1, int(round(context))), 1)] if batch else []
        return self._sim(runs)

    def decode(self, batch: int, position: int) -> float:
        return self._run(self.decode_graph, batch, 1, int(round(position)), 1)

    def prefill(self, tokens: int, position: int) -> float:
        return self._run(self.prefill_graph, 1, tokens, position, A.CHUNK_TOKENS)

    def verify(self, batch: int, tokens: int, position: int) -> float:
        """Speculative decoding's verify step: ``tokens`` new positions of each of ``batch`` sequences
        from ``position``, the LM head on every one: the decode graph lowered for that many tokens,
        the tokens one chunk."""
        return self._run(self.decode_graph, batch, tokens, int(round(position)), A.CHUNK_TOKENS)
