"""Links of more than one cycle a hop, as delay lines, for every PE-level loop.

Used by ``pe_tree`` and ``pe_fmac`` (the GEMM and GEMV, and the chains of them in ``pe_chain``),
``pe_streamed`` and ``pe_rowwise``; ``pe_tree_fused`` and ``pe_tree_jit`` (the tree's fast loops at
such a hop) follow the same rule with arrays of their own.

A wavelet sent on a link in cycle c is in the receiving router's input queue from the start of
cycle ``c + hop`` (``Machine.hop_cycles``; a WSE-3's is 2, wse3.yaml), so it can move on in that
cycle; a one-cycle hop is the loops' plain queue-to-queue move. The link is pipelined: it takes one
wavelet a cycle whatever the hop. Flow control is by credits, and a credit crosses the link back
as a wavelet crosses it forward: the sender sees a place freed in cycle c from the start of cycle
``c + hop``. So it may send while the queue's occupancy, the wavelets on their way to it and the
places freed that it does not see yet are fewer than the depth. At one cycle that is the loops'
rule ("the receiving queue had room at the start of the cycle"); at two a queue of 4 wavelets
covers the round trip (2 + 2 cycles) and a link runs at one wavelet a cycle. Both directions taking
a hop's latency is our assumption: the one WSE-3 fabric measurement (docs/calibration-sources.md)
gives a hop's latency, 2 cycles, and about one wavelet a cycle a link, not how credits return.
"""

from __future__ import annotations

import numpy as np


class DelayLine:
    """The wavelets on the links into every queue of ``shape``, and the credits on their way back
    (counts, one stage per cycle of the hop after the first). A one-cycle hop is a line of no
    stages: what is sent is in the queue at the next cycle, and the sender sees the queue itself."""

    def __init__(self, hop: int, shape: tuple[int, ...]):
        if hop < 1:
            raise ValueError("a hop takes at least one cycle")
        self.ahead = np.zeros((hop - 1, *shape), np.uint8)  # wavelets on the links
        self.back = np.zeros((hop - 1, *shape), np.uint8)  # places freed that the sender does not see yet
        self.held = np.zeros(shape, np.uint16)  # both: the places the sender counts as taken beyond the queue's
        self.at = 0

    def push(self, sent: np.ndarray, freed: np.ndarray | None = None) -> np.ndarray:
        """Put this cycle's sends (per receiving queue) on the links and the places freed in the
        queues this cycle (``freed``; None for a sink, which needs no credits: then on every push, or
        the credits on their way back would stay held) on their way back; return the wavelets that
        reach their queue now (sent ``hop - 1`` cycles ago), for the caller to add to it."""
        if not len(self.ahead):
            return sent
        i = self.at
        out = self.ahead[i].copy()
        self.ahead[i] = sent
        self.held += sent
        self.held -= out
        if freed is not None:
            self.held -= self.back[i]
            self.back[i] = freed
            self.held += freed
        self.at = (i + 1) % len(self.ahead)
        return out

    def room(self, queue: np.ndarray, depth: int) -> np.ndarray:
        """Where the sender may send this cycle, as the sender sees the queue."""
        return queue < depth if not len(self.ahead) else queue + self.held < depth
