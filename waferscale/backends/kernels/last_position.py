"""A kernel that computes only the last position of its run: the LM head of a prefill, whose logits
are wanted at the last prompt token only (the first new token is sampled from them, as
``runtime/generate.py`` does). Its rectangle holds the whole weight, as in the decode step it
shares; of the run's chunks only the one holding the last position costs anything: one token."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..machine import Machine
from .base import ChunkCost, Kernel, Work


@dataclass(frozen=True)
class LastPosition:
    inner: Kernel  # the kernel at one token per sample
    tokens: int  # the run's tokens per sample; only the last is computed

    @classmethod
    def of(cls, kernel: Kernel) -> LastPosition:
        return cls(replace(kernel, tokens=1), kernel.tokens)

    def __getattr__(self, name):  # sram, max_rows, colors, run ... are the one-token kernel's
        return getattr(self.inner, name)

    def work(self, p0: int, p1: int) -> Work:
        return self.inner.work(0, 1) if p0 < self.tokens <= p1 else Work(0.0, 0.0, 0.0, 0.0, 0.0)

    def chunk(self, rows: int, cols: int, p0: int, p1: int, machine: Machine) -> ChunkCost:
        if p0 < self.tokens <= p1:
            return self.inner.chunk(rows, cols, 0, 1, machine)
        return ChunkCost(0, "compute", 0.0, 0.0)

    def cycles(self, rows: int, cols: int, p0: int, p1: int, machine: Machine) -> tuple[int, str]:
        c = self.chunk(rows, cols, p0, p1, machine)
        return c.cycles, c.bound
