"""``trace.json``: the simulated timeline in Chrome trace format (opens in Perfetto or
chrome://tracing), one track per kernel, one slice per chunk of tokens it computed; in weight
streaming also a track of the weights arriving over the system I/O, a slice per layer, and a
track of the layers' runs."""

from __future__ import annotations

import json

from ..backends.kernels import label
from ..passes.base import CompileState

# Slices of the kernels' tracks at most: a trace beyond about this many events no longer opens
# smoothly in Perfetto (and grows by megabytes); longer runs show their first samples, whole.
MAX_TRACE_SLICES = 200_000


def chrome_trace(p: CompileState) -> str:
    us = 1e6 / p.machine.clock_hz  # microseconds per cycle
    events = [{"ph": "M", "pid": 1, "name": "process_name",
               "args": {"name": f"{p.program.graph.name} on {p.machine.name} ({p.machine.rows}x{p.machine.cols})"}}]
    for k in p.program.kernels:
        events.append({"ph": "M", "pid": 1, "tid": k.id, "name": "thread_name",
                       "args": {"name": f"{k.id:03d} {k.name}"}})
        events.append({"ph": "M", "pid": 1, "tid": k.id, "name": "thread_sort_index", "args": {"sort_index": k.id}})
    spans = p.sim.spans
    samples = len({s[1] for s in spans}) or 1
    per_sample = len(spans) / samples
    keep = max(1, int(MAX_TRACE_SLICES // max(per_sample, 1)))  # whole samples, the first ones
    if keep < samples:
        spans = [s for s in spans if s[1] < keep]
    for kid, sample, chunk, start, end in sorted(spans, key=lambda s: (s[0], s[3])):
        events.append({"ph": "X", "pid": 1, "tid": kid, "name": label(p.program.kernels[kid].op),
                       "ts": round(start * us, 6), "dur": round((end - start) * us, 6),
                       "args": {"sample": sample, "chunk": chunk, "cycles": end - start}})
    if p.placement.is_streaming:  # weight streaming: the I/O link and the layers, below the kernels
        stream, layers = len(p.program.kernels), len(p.program.kernels) + 1
        for tid, name in ((stream, "weights from MemoryX (system I/O)"), (layers, "layers")):
            events.append({"ph": "M", "pid": 1, "tid": tid, "name": "thread_name", "args": {"name": name}})
            events.append({"ph": "M", "pid": 1, "tid": tid, "name": "thread_sort_index", "args": {"sort_index": tid}})
        for g in p.sim.groups:
            events.append({"ph": "X", "pid": 1, "tid": stream, "name": g.name, "ts": round(g.stream_start * us, 6),
                           "dur": round(g.stream * us, 6), "args": {"bytes": g.weight_bytes, "cycles": g.stream}})
            events.append({"ph": "X", "pid": 1, "tid": layers, "name": g.name, "ts": round(g.start * us, 6),
                           "dur": round(g.compute * us, 6), "args": {"bound": g.bound, "cycles": g.compute}})
    doc = {"traceEvents": events, "displayTimeUnit": "ns",
           "otherData": {"cycles": p.sim.cycles, "clock_hz": p.machine.clock_hz, "target": p.machine.name,
                         "samples_shown": min(keep, samples), "samples": samples,
                         "note": "" if keep >= samples else f"the kernels' slices of the first {keep} of {samples} "
                                 f"samples only (at most {MAX_TRACE_SLICES:,} slices: report/trace.py)"}}
    return json.dumps(doc, separators=(",", ":"), sort_keys=True) + "\n"
