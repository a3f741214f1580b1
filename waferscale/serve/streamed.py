"""Serving in weight-streaming mode (`wafer serve --mode streaming`): the step costs from the
weight-streaming simulator, the KV caches held in MemoryX.

The decode step of ``max_batch`` sequences (``serve/wafer.py``'s step graphs) is placed as `wafer
compile --mode streaming` places a program (``passes/streaming.py``): one layer at a time on the
whole wafer, its weights streamed in from MemoryX over the system I/O while the layer before
computes. A step of any shape runs on that placement and is timed by the weight-streaming
simulator (``runtime/stream_sim.py``): every layer's weights stream in once per step, for the
whole batch, so a step's cost grows slowly with its batch (the weights' stream is shared, only the
compute and the KV traffic grow).

**The KV caches live in MemoryX** (our modelling choice: the wafer holds one layer at a time, so
no layer's cache can stay on it between steps). Each layer's keys and values of the step's
sequences stream in with the layer's weights, over the same link and into the same prefetch
(``batch x position`` rows: every row attention reads), and the step's new rows stream out after
the layer has run, over the link's other direction (``assumptions.IO_FULL_DUPLEX``), as training
streams its gradients out. On the wafer, the layer's attention kernel holds ``max_batch x
max_context`` rows as it does in layer-pipelined mode, and every core keeps room for the next
layer's rows beside the next layer's weights (the prefetch, ``WEIGHT_BUFFERS - 1`` layers ahead).

**KV capacity** is what MemoryX holds beside the weights: its smallest configuration
(``Machine.memoryx_bytes``) less the model's weights, in tokens of every layer's keys and values.
Admission is bounded by that (and by ``--max-batch`` and ``--max-context``, which the placement
holds). One system only: several systems would share MemoryX through SwarmX, which serving does not
cost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from math import ceil

from ..backends import assumptions as A
from ..backends.lowering import lower
from ..backends.machine import Machine
from ..backends.program import Placement, Program
from ..errors import FitError
from ..ir.ops.cache import CACHED_ATTENTION, cache_inputs
from ..modes.generate import step_graphs
from ..modes.generate_split import head_on_last_position
from ..passes.place import place
from ..passes.placement_check import verify_placement
from ..passes.route import route
from ..passes.streaming import groups_of, place_streaming, use_streamed_gemm
from ..runtime.stream_sim import simulate_streaming
from .placed import Placed

STEP_PIPELINE = ",lower,place{mode=streaming,streamed_gemm=sparse},route,simulate"  # what _run runs
KV_BASIS = ("weight streaming: the KV caches live in MemoryX; capacity is MemoryX's smallest configuration "
            "(the machine's memoryx_bytes) less the model's weights, in tokens of every layer's keys and values; "
            "each step streams the layer's cached rows of its sequences in with the layer's weights and its new "
            "rows out after it (serve/streamed.py)")


def kv_bytes_per_layer_token(prog: Program) -> list[int]:
    """Per kernel, one token's keys and values that it caches (0 but for cached attention)."""
    out = []
    for k in prog.kernels:
        m = k.model
        out.append(round(2 * m.kv * m.d_head * m.cache_elem) if k.op.kind in CACHED_ATTENTION else 0)
    return out


@dataclass
class StreamedPlaced(Placed):
    """One weight-streamed model: ``wafer.Placed``'s steps (decode, prefill, verify), each simulated by
    the weight-streaming simulator on its program's own placement."""

    systems: int = 1
    per_kernel_kv: list = field(default_factory=list)  # one token's cached bytes per kernel (kv_bytes_per_layer_token)
    prefill_part: tuple = ()  # (placement, routing) of the prefill program (``place_streamed``)
    kv_basis: str = KV_BASIS

    def _run(self, graph, samples: int, tokens: int, position: int, chunk: int) -> float:
        t0 = time.perf_counter()
        prog = lower(graph, samples, tokens, position, self.machine)
        if graph is self.prefill_graph:
            prog = head_on_last_position(prog)
        prog = use_streamed_gemm(prog, "sparse")
        placement = self.prefill_part[0] if graph is self.prefill_graph else self.parts[0][1]
        groups = []
        for g in placement.groups:  # the layer's cached rows in with its weights, its new rows out after it
            per_token = sum(self.per_kernel_kv[k] for k in g.kernels)
            # a sliding-window layer (gpt-oss: backends/kernels/sinks.py) streams its window's rows only
            cached = sum(self.per_kernel_kv[k] * min(position, getattr(prog.kernels[k].model, "window", 0) or position)
                         for k in g.kernels)
            groups.append(replace(g, weight_bytes=g.weight_bytes + samples * cached,
                                  grad_bytes=g.grad_bytes + samples * tokens * per_token))
        step = replace(placement, groups=tuple(groups))
        sim = simulate_streaming(prog, step, route(prog, step), chunk=chunk)
        self.seconds_simulating += time.perf_counter() - t0
        return sim.cycles / self.machine.clock_hz

    def mixed(self, batch: int, context: int, pieces: list[tuple[int, int]]) -> float:
        """A mixed step: the prompt pieces on the prefill program's placement, then the decode step on
        the decode placement, each streaming every layer's weights (the two programs are placed apart,
        so nothing is shared between them): the sum of the parts. The weights streamed twice are the
        over-count docs/serve.md names."""
        return sum(self.prefill(n, p) for n, p in pieces) + (self.decode(batch, context) if batch else 0.0)


def place_streamed(model: str, machine: Machine, *, max_context: int, max_batch: int = 1, systems: int = 1,
                   dtype: str = "f16", seed: int = 0, prompt_len: int | None = None,
                   log=lambda msg: None) -> StreamedPlaced:
    if systems != 1:
        raise FitError("not supported: serving in weight-streaming mode over several systems (their MemoryX and "
                       "SwarmX are not costed for serving): use --systems 1")
    p0 = prompt_len or max(1, min(max_context - 1, 64))
    st = step_graphs(model, prompt_len=p0, new_tokens=max_context - p0, batch=max_batch, dtype=dtype, seed=seed,
                     machine=machine, log=log)
    dgraph = st.decode_state.graph
    prog = use_streamed_gemm(lower(dgraph, max_batch, 1, p0, machine), "sparse", log=log)
    per_kernel = kv_bytes_per_layer_token(prog)
    per_group = [sum(per_kernel[k] for k in ks) for _, ks in groups_of(prog)]
    # room on every core for the next layers' cached rows of max_batch sequences, beside their weights
    kv_prefetch = ceil((A.WEIGHT_BUFFERS - 1) * max(per_group) * max_batch * max_context / machine.cores)
    placement = _place(prog, machine, kv_prefetch, max_batch, max_context, log)
    pprog = use_streamed_gemm(head_on_last_position(lower(st.prefill_state.graph, 1, p0, 0, machine)), "sparse")
    pplacement = _place(pprog, machine, kv_prefetch, max_batch, max_context, log)
    kv_total = sum(v.type.nbytes for v in cache_inputs(dgraph))
    per_token = kv_total // (max_batch * max_context)
    free = machine.memoryx_bytes - prog.weight_bytes
    tokens = int(free // per_token) if free > 0 else 0
    if tokens < 1:
        raise FitError(f"serving in weight-streaming mode keeps the KV caches in MemoryX, and {machine.name}'s "
                       f"({machine.memoryx_bytes:,.0f} B) has no room beside the weights ({prog.weight_bytes:,} B)")
    detail = [{"system": 1, "where": "MemoryX", "memoryx_bytes": machine.memoryx_bytes,
               "weight_bytes": prog.weight_bytes, "free_bytes": free, "tokens": tokens,
               "kv_prefetch_bytes_per_core": kv_prefetch}]
    return StreamedPlaced(machine, [(tuple(range(len(prog.kernels))), placement, route(prog, placement))], dgraph,
                          st.prefill_state.graph, max_context, per_token, tokens, detail, per_kernel_kv=per_kernel,
                          prefill_part=(pplacement, route(pprog, pplacement)),
                          pipeline=",".join(p.spec() for p in st.passes) + STEP_PIPELINE)


def _place(prog: Program, machine: Machine, kv_prefetch: int, max_batch: int, max_context: int, log) -> Placement:
    """The weight-streaming placement of a step program, ``kv_prefetch`` bytes of each core kept for
    the next layer's KV rows."""
    if kv_prefetch >= machine.sram_bytes - machine.reserved_sram_bytes:
        raise FitError(f"serving in weight-streaming mode prefetches a layer's KV cache of {max_batch} sequences of "
                       f"{max_context} rows, {kv_prefetch:,} B per core, more than {machine.name}'s SRAM: use a "
                       "smaller --max-batch or --max-context")
    small = replace(machine, sram_bytes=machine.sram_bytes - kv_prefetch)
    try:
        placement = place_streaming(prog, small, place, log=log)
    except FitError as e:
        raise FitError(f"serving in weight-streaming mode places {max_batch} sequences' KV caches of {max_context} "
                       f"rows with {kv_prefetch:,} B per core kept for the next layer's: {e}") from None
    return verify_placement(prog, replace(placement, machine=machine,
                                          reserved_bytes=placement.reserved_bytes + kv_prefetch))
