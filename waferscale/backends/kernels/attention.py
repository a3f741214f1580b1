"""Causal (or full) attention of one sample: heads over the columns of the rectangle, keys and
values spread over the rows of each column cyclically (position p on row p mod rows, so causal
work stays balanced); a token's key and value enter its row from the west edge and stay there.
Each query is multicast down its heads' column; each core scores it against its keys and keeps
a partial softmax (running max, sum, weighted values), and the partials are combined down the
column, flash-decoding style.

Grouped-query attention (Llama, Mistral, Qwen2: ``kv_heads`` key/value heads, each serving a group of
query heads): a core keeps the keys and values of the key/value heads its column's query heads
read, once each (a column of query heads from one group holds one), and a token's key and value
stream into its row once per key/value head, multicast along the row to the columns that read it.

The kernel already covers everything between the head split and the head merge: q k^T, the
scale, the causal mask, the softmax and the product with v. The transposes and reshapes of the
split and merge are layout (the order in which the producer sends and the consumer reads), and
no elementwise op sits between attention and the output projection, so the ``fuse`` pass leaves
attention as it is.

Over a KV cache (``cached_attention``, a step of generation) the keys the rows hold are the
cache's: ``capacity`` rows, all ``resident`` samples' at once (generation keeps every sequence's
cache while the batch takes turns), with ``kv_heads`` key heads (fewer than the query heads under
grouped-query attention). A step's token at ``position`` t scores t + 1 keys; its own key and value
enter their row and are appended there. The cost is that of the keys read, so a decode step is
costed at the position it runs at; its partials are combined down each column by WaferLLM's
two-level tree rather than a chain, as a step's latency is what a decode step waits for.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import prod

import numpy as np

from ...errors import UnsupportedError
from ...ir import registry
from ...ir.graph import Op
from ...ir.ops.cache import dequantized
from ...ir.ops.nn import grouped
from ...ir.types import DTYPES
from .. import assumptions as A
from ..blocks import block, slices
from ..column_reduce import TREE, plan
from ..costs import InstructionCount
from ..datapath import accumulator_bytes
from .base import Kernel, LowerCtx, Work, f32, lowers


@dataclass(frozen=True)
class Attention(Kernel):
    heads: int
    d_head: int
    causal: bool
    capacity: int = 0  # rows of key/value a sample holds: its KV cache's (0: its own tokens)
    position: int = 0  # the sequence position of the first token (a decode step's)
    resident: int = 1  # samples whose keys and values are held at once (generation: the batch)
    kv_heads: int = 0  # key/value heads (grouped-query attention); 0: as many as heads
    kv_elem: float = 0  # bytes of a cached key or value (passes/quantize.py kv=fp8: 1); 0: ``elem``
    # an int8 cache (passes/quantize.py kv=int8): 1 byte a code plus its row's f16 scale over d_head is in
    # kv_elem; an fp8 cache (kv=fp8): 1 byte. Either's keys and values are dequantised (int8: codes times
    # scales; fp8: e4m3 converted to f16) as read, one more vector instruction per row
    # (assumptions.DEQUANTIZE_IN_DATAPATH, as a quantised weight: no int8 or fp8 operand in the SDK)
    kv_dequant: bool = False
    decomposition = "heads over columns, key/value positions over rows (cyclic)"
    colors = 3

    @property
    def cache_elem(self) -> float:
        return self.kv_elem or self.elem

    @property
    def key_rows(self) -> int:
        return self.capacity or self.tokens

    def max_rows(self) -> int:
        return self.key_rows

    def max_cols(self) -> int:
        return self.heads

    def _keys(self, p0, p1):
        pos = np.arange(p0, p1) + self.position
        return pos + 1 if self.causal else np.full(p1 - p0, self.tokens)

    @property
    def kv(self) -> int:
        return self.kv_heads or self.heads

    def kv_per_column(self, cols: int) -> int:
        """The most key/value heads a column's query heads read (heads split in blocks over columns)."""
        group = self.heads // self.kv
        return max(len({h // group for h in range(s.start, s.stop)})
                   for s in slices(self.heads, min(cols, self.heads)))

    def sram(self, rows, cols):
        hc, st = block(self.heads, min(cols, self.heads)), block(self.key_rows, min(rows, self.key_rows))
        kv = 2 * self.resident * st * self.kv_per_column(cols) * self.d_head * self.cache_elem
        return {"kv_cache": round(kv) if self.kv_dequant else kv,  # an int8 row: d_head codes and a 2-byte scale
                "activations_in": 2 * hc * self.d_head * self.elem,
                "activations_out": hc * self.d_head * self.elem,
                "partial_sums": 2 * hc * (self.d_head + 2) * 4, "fabric_queues": self.queues()}

    def work(self, p0, p1):
        keys = float(self._keys(p0, p1).sum())
        c, hd = p1 - p0, self.heads * self.d_head
        # executed: the causal triangle only (the registry counts the dense square)
        # per key and head: the score reads q and k (a dot product), the weighted sum reads v and
        # the accumulators and writes the accumulators (an AXPY)
        acc, pairs = accumulator_bytes(self.dtype), self.heads * keys * self.d_head
        kvd = self.kv * self.d_head
        return Work(flops=self.heads * keys * (4 * self.d_head + 6),
                    sram_read=pairs * (3 * self.elem + acc), sram_write=pairs * acc,
                    delivered=c * (hd + 2 * kvd), edge=c * (2 * hd + 2 * kvd))

    def model_cycles(self, rows, cols, p0, p1, machine):
        rows, cols = min(rows, self.key_rows), min(cols, self.heads)
        hc = block(self.heads, cols)
        dp = machine.datapath(self.dtype)
        per_key = self.key_instructions(dp).cycles(dp)
        core_keys = np.ceil(self._keys(p0, p1) / rows)
        compute = hc * core_keys * per_key + dp.costs.task_start
        if self.kv_dequant:  # each key and value row held, dequantised once per query (its key/value head's)
            dq = replace(dp, quant=self.kv_elem)
            compute = compute + self.kv_per_column(cols) * core_keys * self.dequant_instructions().cycles(dq)
        # per column and token: the query multicast down the column and the partials combined
        # down it; a token's key and value enter only its own row, from the west edge
        stream = max(hc * (self.d_head + 2), 2 * self.kv * self.d_head / rows)
        return float(np.maximum(compute, stream).sum())

    def key_instructions(self, dp) -> InstructionCount:
        """What a core issues per key it holds and query head: the score (a dot product over d_head),
        the weighted values (an AXPY over d_head), each one vector instruction, and one exp."""
        return (InstructionCount().call("dot", self.d_head).call("fmac", self.d_head)
                .add("lane", A.TRANSCENDENTAL_CYCLES / dp.lanes))

    def dequant_instructions(self) -> InstructionCount:
        """Over an int8 or fp8 cache, per key row held and key/value head: its key's and value's codes (times
        their row scales, int8) into f16 rows (``dequant``, two vector instructions), which the dot and AXPY
        then read."""
        return InstructionCount().call("dequant", self.d_head, 2)

    def fill(self, rows, cols, machine):
        rows = min(rows, self.key_rows)
        # A partial (weighted values, max, sum: d_head + 2 wavelets) arrives from the fabric and is added
        # and passed on one wavelet per cycle (Costs.psum_add: the ramp's rate, not the lanes'; issue 27:
        # this was ceil((d_head + 2) / 4), 4 values a cycle). The stream is pipelined: each row adds its
        # hop, ramp and add to the latency, and the last add runs the stream's length.
        psum, stream = machine.costs.psum_add, self.d_head + 2
        per_row = machine.hop_cycles + machine.ramp_cycles + psum
        if not self.capacity:  # the partials combined down the column by a chain
            return super().fill(rows, cols, machine) + (rows - 1) * per_row + stream * psum
        # over a KV cache (a decode step, where the latency is the step's time) by WaferLLM's two-level
        # tree (column_reduce.py): about sqrt(rows) adds in turn, each root adding its incoming streams
        # one after another (the column root four), the hops the column's height
        p = plan(rows, TREE)
        depth = max(p.groups) // 2 + len(p.groups) // 2
        passes = p.passes(p.top) if rows > 1 else 0
        return (super().fill(rows, cols, machine) + depth * (machine.ramp_cycles + psum) + passes * stream * psum
                + (rows - 1) * machine.hop_cycles)

    def run(self, op, args, rows, cols):
        attrs = registry.with_defaults(op.kind, op.attr)
        if op.kind == "cached_attention":  # query i of sample b sees the rows up to positions[b, i]
            q, k, v, pos = dequantized(args)
            return attention(q, k, v, dict(attrs, causal=True), rows, cols, qpos=pos[:, None, :, None])
        return attention(*args[:3], attrs, rows, cols)


def attention(q, k, v, attrs: dict, rows: int, cols: int, qpos: np.ndarray | None = None) -> np.ndarray:
    """Per column its heads; per core a partial softmax over its cyclic share of the keys; the
    partials combined down the column. A column's query heads read their group's key/value head. A
    causal query sees the keys up to its position: its index, or ``qpos`` (broadcast against the
    scores, e.g. ``[batch, 1, L, 1]``)."""
    q, k, v = f32(q), f32(k), f32(v)
    k, v = grouped(q, k), grouped(q, v)
    scale = attrs.get("scale") or 1.0 / np.sqrt(q.shape[-1])
    L, S = q.shape[-2], k.shape[-2]
    heads = q.shape[-3] if q.ndim >= 3 else 1
    out = np.empty(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype)
    qpos = np.arange(L)[:, None] if qpos is None else qpos
    for hj in slices(heads, min(cols, heads)):
        qh, kh, vh = q[..., hj, :, :], k[..., hj, :, :], v[..., hj, :, :]
        m = np.full(qh.shape[:-1] + (1,), -np.inf, dtype=q.dtype)
        den = np.zeros_like(m)
        acc = np.zeros(qh.shape[:-1] + (v.shape[-1],), dtype=q.dtype)
        for r in range(min(rows, S)):  # this core's keys: positions r, r + rows, ...
            kp = np.arange(r, S, rows)
            s = (qh @ np.swapaxes(kh[..., kp, :], -1, -2)) * np.asarray(scale, dtype=q.dtype)
            if attrs.get("causal"):
                s = np.where(kp[None, :] <= qpos, s, -np.inf)
            mi = s.max(-1, keepdims=True)
            new = np.maximum(m, mi)
            safe = np.where(np.isinf(new), 0, new)
            p = np.exp(s - safe)
            den = den * np.exp(m - safe) + p.sum(-1, keepdims=True)
            acc = acc * np.exp(m - safe) + p @ vh[..., kp, :]
            m = new
        out[..., hj, :, :] = acc / den
    return out


@lowers("cached_attention")
def lower_cached_attention(op: Op, ctx: LowerCtx) -> Attention:
    q, k = op.operands[0].type, op.operands[1].type
    batch, heads, capacity = q.shape[0], q.shape[1], k.shape[2]
    if ctx.position + ctx.tokens > capacity:
        raise UnsupportedError(f"lowering {ctx.where}: a step at position {ctx.position} of {ctx.tokens} token(s) "
                               f"reads past the KV cache's {capacity} rows")
    t = op.type
    kv_elem = DTYPES[k.dtype][1]
    if len(op.operands) == 6:  # an int8 cache: a code per element and an f16 scale per row of d_head
        kv_elem += op.operands[4].type.nbytes / k.numel
    # a cache narrower than the model's operands (int8 codes, fp8) is widened to them as it is read
    return Attention(tokens=ctx.tokens, dtype=t.dtype, elem=DTYPES[t.dtype][1], heads=heads, d_head=q.shape[-1],
                     causal=True, capacity=capacity, position=ctx.position, resident=batch, kv_heads=k.shape[1],
                     kv_elem=kv_elem, kv_dequant=len(op.operands) == 6 or DTYPES[k.dtype][1] < DTYPES[t.dtype][1])


@lowers("attention")
def lower_attention(op: Op, ctx: LowerCtx) -> Attention:
    q = op.operands[0].type
    if len(op.operands) > 3:
        raise UnsupportedError(f"lowering {ctx.where} to the mesh: attention with an explicit mask "
                               "operand (only causal=true or no mask)")
    if q.shape[-2] != op.operands[1].type.shape[-2]:
        raise UnsupportedError(f"lowering {ctx.where}: cross-attention (queries and keys of different length)")
    heads = prod(q.shape[:-2]) * q.shape[-2] // ctx.total  # per sample
    k = op.operands[1].type
    kv_heads = prod(k.shape[:-2]) * k.shape[-2] // ctx.total
    t = op.type
    return Attention(tokens=ctx.tokens, dtype=t.dtype, elem=DTYPES[t.dtype][1], heads=max(heads, 1),
                     d_head=q.shape[-1], causal=bool(op.attr.get("causal")),
                     kv_heads=kv_heads if 0 < kv_heads < heads and heads % kv_heads == 0 else 0)
