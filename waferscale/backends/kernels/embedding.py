"""``table[ids]``: vocabulary rows split over the rectangle's rows, features over its columns. The
id of each token is multicast to every core; the core holding that row of the table sends its
slice south down its column, so each output leaves from the last row. Fused, that row applies
an epilogue (the position embedding's add in GPT-2) to the outputs as they pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

import numpy as np

from ...ir.graph import Op
from ...ir.types import DTYPES
from .. import assumptions as A
from ..blocks import block, slices
from .base import Kernel, LowerCtx, Work, lowers
from .fusion import Epilogue, Region, apply_epilogue, region


@dataclass(frozen=True)
class Embedding(Kernel):
    vocab: int
    d: int
    flops_per_token: float = 0.0  # a gather does none; a fused epilogue's
    epilogue: Epilogue | None = None
    decomposition = "vocabulary over rows, features over columns"

    def max_rows(self) -> int:
        return self.vocab

    def max_cols(self) -> int:
        return self.d

    def sram(self, rows, cols):
        vt, dt = block(self.vocab, min(rows, self.vocab)), block(self.d, min(cols, self.d))
        epi = self.epilogue
        return {"weights": vt * dt * self.elem + (epi.params * dt * self.elem if epi else 0),
                "activations_in": 2 * 8 + (2 * epi.streams * dt * self.elem if epi else 0),
                "activations_out": dt * self.elem, "fabric_queues": self.queues()}

    def work(self, p0, p1):
        c = p1 - p0
        streams = self.epilogue.streams if self.epilogue else 0
        # a lookup reads its table row; an epilogue reads its streams and writes the output
        return Work(flops=c * self.flops_per_token, sram_read=c * self.d * (1 + streams) * self.elem,
                    sram_write=c * self.d * self.elem * (1 if self.epilogue else 0),
                    delivered=c * self.d * (1 + streams), edge=c * (1 + self.d * (1 + streams)))

    def model_cycles(self, rows, cols, p0, p1, machine):
        dt = block(self.d, min(cols, self.d))
        # each row's share of the lookups: a task that sends the row of the table (one vector instruction)
        c = machine.costs
        lookup = (dt + c.task_start + c.vector_issue) / min(rows, self.vocab)
        epi = self.epilogue
        if epi is not None:  # the last row also finishes every output, and takes in the residuals
            lanes = machine.datapath(self.dtype).rate * A.ELEMENTWISE_LANE_FRACTION
            lookup += ceil(dt / lanes) * epi.cycles_per_element + c.vector_issue * len(epi.kinds)
            dt = dt * max(1, epi.streams)
        return (p1 - p0) * max(dt, lookup)

    def run(self, op, args, rows, cols):
        if op.kind != "fused":
            return embedding(args[0], args[1], rows, cols)
        body = op.attr["body"]
        reg = region(body)
        env = {v.name: x for v, x in zip(body.inputs, args)}
        table, ids = (env[x.name] for x in reg.anchor.operands)
        y = embedding(table, ids, rows, cols)
        return apply_epilogue(reg.epilogue, env, y, reg.anchor.result.name, slices(self.d, min(cols, self.d)))


def embedding(table: np.ndarray, ids: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Each core looks up only the vocabulary rows it holds, for its block of features."""
    out = np.zeros((*ids.shape, table.shape[1]), dtype=table.dtype)
    for vi in slices(table.shape[0], min(rows, table.shape[0])):
        mine = (ids >= vi.start) & (ids < vi.stop)
        for dj in slices(table.shape[1], min(cols, table.shape[1])):
            out[..., dj] += np.where(mine[..., None], table[np.clip(ids, vi.start, vi.stop - 1), dj], 0)
    return out


@lowers("embedding")
def lower_embedding(op: Op, ctx: LowerCtx, epilogue: Epilogue | None = None, flops_per_token: float = 0.0) -> Embedding:
    vocab, d = op.operands[0].type.shape
    t = op.type
    return Embedding(tokens=ctx.tokens, dtype=t.dtype, elem=DTYPES[t.dtype][1], vocab=vocab, d=d,
                     flops_per_token=flops_per_token, epilogue=epilogue)


def fused_embedding(reg: Region, ctx: LowerCtx, epilogue: Epilogue | None, flops_per_token: float) -> Embedding:
    return lower_embedding(reg.anchor, ctx, epilogue=epilogue, flops_per_token=flops_per_token)
