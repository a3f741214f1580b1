"""One engine's batching: continuous batching with chunked prefill under a KV-cache budget in bytes.

- **Admission**: waiting requests are taken in order of arrival (first come, first served; the
  head waits for room, those behind it wait too) while the running batch holds fewer than
  ``max_batch`` and the KV cache has room for the request's whole length (prompt and output: it is
  reserved at admission, so nothing is ever evicted; preemption is not modelled). A request whose
  KV cache could never fit, or whose length passes the program's context, is rejected with a reason.
- **A step**: one decode token of every running sequence past its prefill, and up to ``chunk``
  prompt tokens of the sequences still in prefill (in order of admission; a chunk may finish one
  prompt and start the next). New requests join between steps. A step that carries both runs them
  through the pipeline one after another, its fill paid once (``costs.step_seconds``).
- **Tokens a decode step yields**: one per sequence, or with speculative decoding the cost's
  ``tokens_per_step`` (an expectation: the fraction is carried to the sequence's next step).
- **Roles**: ``both`` (colocated), ``prefill`` (a sequence leaves when its prompt is in, its first
  token sampled: the disaggregated policy moves its KV cache on), ``decode`` (sequences arrive with
  their prompt in the cache, once their KV cache has moved: ``ready``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .costs import StepCost, step_seconds
from .trace import Request


@dataclass(eq=False)
class Seq:
    req: Request
    prefilled: int = 0  # prompt tokens in the KV cache
    generated: int = 0  # output tokens sampled
    kv: int = 0  # bytes reserved
    ready: bool = True  # a decode engine's sequence: its KV cache has arrived
    credit: float = 0.0  # output tokens owed but not yet whole (speculative decoding's expectation)


@dataclass
class Step:
    seconds: float
    decode: list[Seq]
    pieces: list[tuple[Seq, int]]  # prefill: (sequence, tokens)


@dataclass
class Batcher:
    cost: StepCost
    max_batch: int
    chunk: int
    role: str = "both"  # "both", "prefill" or "decode"
    capacity: int = -1  # KV bytes (default: the cost object's)
    waiting: deque = field(default_factory=deque)
    running: list = field(default_factory=list)
    kv_used: int = 0
    kv_peak: int = 0

    def __post_init__(self):
        if self.capacity < 0:
            self.capacity = self.cost.kv_capacity_bytes

    def need(self, req: Request) -> int:
        """KV bytes a request reserves here."""
        tokens = req.prompt if self.role == "prefill" else req.prompt + req.output
        return tokens * self.cost.kv_bytes_per_token

    def never_fits(self, req: Request) -> str | None:
        """Why a request can never run here, or None."""
        length = req.prompt + req.output - 1  # the last token is sampled, never cached
        if length > self.cost.max_context:
            return (f"prompt {req.prompt} + output {req.output} tokens need {length} KV rows, more than the "
                    f"{self.cost.max_context} the program holds per sequence")
        if self.need(req) > self.capacity:
            return (f"its KV cache ({self.need(req):,} B) is more than the {self.role} engine's capacity "
                    f"({self.capacity:,} B)")
        return None

    def admit(self) -> list[Seq]:
        """Move waiting sequences into the batch while they fit; returns those admitted."""
        got = []
        while self.waiting and len(self.running) < self.max_batch:
            s = self.waiting[0]
            need = self.need(s.req)
            if self.kv_used + need > self.capacity:
                break
            self.waiting.popleft()
            s.kv = need
            self.kv_used += need
            self.kv_peak = max(self.kv_peak, self.kv_used)
            self.running.append(s)
            got.append(s)
        return got

    def release(self, s: Seq) -> None:
        self.running.remove(s)
        self.kv_used -= s.kv
        s.kv = 0

    def plan(self) -> Step | None:
        """The next step of the running batch, or None when it has nothing to do."""
        decode, pieces, budget, rows = [], [], self.chunk, 0
        for s in self.running:
            if not s.ready:
                continue
            if s.prefilled < s.req.prompt:
                if budget and self.role != "decode":
                    n = min(budget, s.req.prompt - s.prefilled)
                    pieces.append((s, n))
                    budget -= n
            elif s.generated < s.req.output and self.role != "prefill":
                decode.append(s)
                rows += s.req.prompt + s.generated - 1  # the position of the token fed in
        if not decode and not pieces:
            return None
        t = step_seconds(self.cost, len(decode), rows / len(decode) if decode else 0.0,
                         [(n, s.prefilled) for s, n in pieces])
        return Step(t, decode, pieces)

    def apply(self, step: Step) -> tuple[list[Seq], list[Seq], list[Seq]]:
        """The step done: (first tokens sampled, sequences finished, sequences whose prefill is done)."""
        first, done, prefilled = [], [], []
        for s, n in step.pieces:
            s.prefilled += n
            if s.prefilled == s.req.prompt:
                s.generated = 1
                first.append(s)
                prefilled.append(s)
                if s.req.output == 1 and self.role == "both":
                    done.append(s)
        per_step = getattr(self.cost, "tokens_per_step", 1.0)
        for s in step.decode:
            s.credit += per_step
            n = int(s.credit + 1e-9)  # a whole token at least: per_step >= 1
            s.credit -= n
            s.generated = min(s.generated + n, s.req.output)
            if s.generated == s.req.output:
                done.append(s)
        for s in done:
            self.release(s)
        return first, done, prefilled
