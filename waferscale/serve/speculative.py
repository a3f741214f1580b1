"""Speculative decoding as a step cost: a draft model proposes ``k`` tokens one decode step at a
time, the target verifies them in one step of ``k + 1`` positions (the ``k`` drafts and the token
before them), and keeps the longest accepted prefix plus one token of its own.

With each draft token accepted with probability ``p`` independently (the usual model, Leviathan et
al. 2023, "Fast Inference from Transformers via Speculative Decoding", eq. 1), a verify step yields
``(1 - p^(k+1)) / (1 - p)`` tokens on average (``k + 1`` at ``p = 1``). The scheduler advances each
sequence by that expectation, carried over between steps as a fraction (``scheduler.Seq.credit``),
so a run is deterministic; the spread of the accepted count around its mean is not modelled.

A decode step of ``batch`` sequences at mean position ``c`` costs ``k`` draft decode steps (at
positions ``c .. c + k - 1``), one target verify step of ``k + 1`` positions from ``c``, and a
hand-off (the draft tokens to the target and the verdict back; ``handoff`` seconds). A prompt
chunk is prefilled by both models; they sit on disjoint cores (two regions of the mesh, or
separate systems), so it costs the slower of the two. Both models keep a KV cache for every
sequence: a request is admitted when both have room, so the capacity in tokens is the smaller of
the two, and a token takes both models' bytes.

This module knows nothing of the wafer: the two costs come from ``serve/wafer.py`` (or are
synthetic in tests)."""

from __future__ import annotations

from dataclasses import dataclass

from .costs import StepCost


def expected_tokens(accept: float, k: int) -> float:
    """Tokens a verify step of ``k`` draft tokens yields on average, each accepted with probability
    ``accept``: 1 + p + ... + p^k."""
    if not 0 <= accept <= 1:
        raise ValueError(f"acceptance rate {accept} is not a probability")
    if accept == 1:
        return float(k + 1)
    return (1 - accept ** (k + 1)) / (1 - accept)


@dataclass(frozen=True)
class Speculative:
    """A StepCost of speculative decoding from the target's cost (with ``verify`` of ``k + 1``
    positions) and the draft's."""

    target: StepCost
    draft: StepCost
    k: int
    accept: float
    handoff: float = 0.0  # seconds per verify step: draft tokens to the target and its verdict back

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"draft tokens per step must be at least 1 (got {self.k})")
        got = getattr(self.target, "verify_tokens", 0)
        if got != self.k + 1:
            raise ValueError(f"the target's verify cost is for {got} positions, not k + 1 = {self.k + 1}")

    @property
    def tokens_per_step(self) -> float:
        return expected_tokens(self.accept, self.k)

    @property
    def kv_bytes_per_token(self) -> int:
        return self.target.kv_bytes_per_token + self.draft.kv_bytes_per_token

    @property
    def kv_capacity_bytes(self) -> int:
        tokens = min(self.target.kv_capacity_bytes // self.target.kv_bytes_per_token,
                     self.draft.kv_capacity_bytes // self.draft.kv_bytes_per_token)
        return tokens * self.kv_bytes_per_token

    @property
    def max_context(self) -> int:
        # a verify step writes k + 1 rows past the last accepted token
        return min(self.target.max_context, self.draft.max_context) - self.k

    def draft_seconds(self, batch: int, context: float) -> float:
        return sum(self.draft.decode(batch, context + i) for i in range(self.k))

    def decode(self, batch: int, context: float) -> float:
        return self.draft_seconds(batch, context) + self.target.verify(batch, context) + self.handoff

    def prefill(self, tokens: int, position: int) -> float:
        return max(self.target.prefill(tokens, position), self.draft.prefill(tokens, position))
