"""The wafer sections of a compile's outputs: ``placement.json``, the ``report.json`` sections
(``target``, ``mode``, ``machine``, ``time``, ``placement``) and the wafer part of ``report.txt``.
Nothing here depends on wall-clock time, so the same inputs give the same bytes.
"""

from __future__ import annotations

from dataclasses import replace

from ..backends import assumptions as A
from ..backends.kernels import label
from ..backends.program import IO, link_name
from ..errors import UsageError
from ..passes.base import CompileState
from ..passes.place import MODES
from ..runtime.bounds import critical_path
from ..version import __version__
from .energy import run_energy


def model_flops(s: CompileState) -> int:
    """Registry FLOPs of the whole run (all samples), as in report.json's model section."""
    return sum(k.flops for k in s.program.kernels)


def _group_of(s: CompileState) -> dict[int, int]:
    return {k: i for i, g in enumerate(s.placement.groups) for k in g.kernels}


def utilization(s: CompileState, kid: int) -> float:
    """A kernel's executed FLOPs over what its cores could do while they were its: the whole simulated
    time, or in weight streaming its layer's run."""
    k, r = s.program.kernels[kid], s.placement.rects[kid]
    gi = _group_of(s).get(kid) if s.placement.is_streaming else None
    span = s.sim.cycles if gi is None else s.sim.groups[gi].compute
    return s.sim.kernels[kid].executed_flops / (2 * s.machine.lanes(k.model.dtype) * r.cores * max(span, 1))


def sparse_info(s: CompileState, kid: int) -> dict | None:
    """A sparse kernel's weight, density and bytes, and its speed-up: the dense kernel's stage
    cycles on the same rectangle over its own (None for a dense kernel)."""
    k, r = s.program.kernels[kid], s.placement.rects[kid]
    sw = getattr(k.model, "sparse", None)
    if sw is None:
        return None
    dense = replace(k.model, sparse=None).cycles(r.rows, r.cols, 0, s.program.tokens, s.machine)[0]
    own = k.model.cycles(r.rows, r.cols, 0, s.program.tokens, s.machine)[0]
    elem = k.model.elem
    # a product with the sparse weight, or the kernel of its gradient (training; bytes: the gradient's)
    of = "gradient" if k.op.kind == "linear_grad_w" else "weight"
    return {"weight": sw.name, "of": of, "density": sw.density, "nonzeros": sw.nnz, "mask": "exact" if sw.exact
            else "in distribution", "dense_bytes": sw.k * sw.n * elem, "bytes": sw.stored_bytes(elem),
            "dense_cycles_per_sample": dense, "cycles_per_sample": own, "speedup": dense / max(own, 1)}


def sparsity_section(s: CompileState, kernels: list[dict]) -> dict | None:
    """report.json's ``sparsity``: what sparsify made of the program (None when nothing is sparse)."""
    sp = [k["sparse"] for k in kernels if k.get("sparse")]
    if not sp:
        return None
    dense = sum(x["dense_cycles_per_sample"] for x in sp)
    own = sum(x["cycles_per_sample"] for x in sp)
    products = [x for x in sp if x.get("of", "weight") == "weight"]  # a training step's gradient kernels hold no weight
    total = sum(x["dense_bytes"] for x in products)
    return {
        "kernels": len(sp), "weights": len({x["weight"] for x in sp}),
        "density": sum(x["density"] * x["dense_bytes"] for x in products) / total,  # by weight bytes
        "dense_weight_bytes": total, "weight_bytes": sum(x["bytes"] for x in products),
        "index_bytes_per_nonzero": A.SPARSE_INDEX_BYTES,
        # the sparse kernels' stage cycles against the same kernels dense on the same rectangles
        "kernel_speedup": dense / max(own, 1),
        "min_kernel_speedup": min(x["speedup"] for x in sp), "max_kernel_speedup": max(x["speedup"] for x in sp),
        "masks": sorted({x["mask"] for x in sp}),
    }


def placement_json(s: CompileState) -> dict:
    m, prog, pl, sim = s.machine, s.program, s.placement, s.sim
    g = prog.graph
    total = max(sim.cycles, 1)
    kernels = []
    group_of = _group_of(s)
    for k, r, stage, t in zip(prog.kernels, pl.rects, pl.stage_cycles, sim.kernels):
        sram = k.model.sram(r.rows, r.cols)
        if pl.reserved_bytes:
            sram["reserved"] = pl.reserved_bytes
        kernels.append({
            "id": k.id, "name": k.name, "op": k.op.kind, "computes": label(k.op), "value": k.op.result.name,
            "loc": g.loc(k.op.result),
            "decomposition": k.model.decomposition,
            "algorithm": k.model.algorithm(r.rows, r.cols, m),
            "rect": {"row": r.row, "col": r.col, "rows": r.rows, "cols": r.cols}, "cores": r.cores,
            "sram_bytes_per_core": dict(sram, total=sum(sram.values())),
            "sram_fraction": sum(sram.values()) / m.sram_bytes,
            "weights": list(k.weights), "weight_bytes": k.weight_bytes,
            "flops": k.flops, "executed_flops": t.executed_flops,
            "stage_cycles_per_sample": stage, "busy_cycles": t.busy, "cycles": t.busy,
            "fill_cycles": k.model.fill(r.rows, r.cols, m),
            "roofline_cycles": t.roofline, "busy_fraction": t.busy / total,
            "utilization": utilization(s, k.id), "bound": t.bound,
            "group": pl.groups[group_of[k.id]].name if pl.is_streaming else None,
            "sparse": sparse_info(s, k.id),
        })
    names = {k.id: k.name for k in prog.kernels}
    flows = []
    for rt in s.routing.routes:
        f = prog.flows[rt.flow]
        first = rt.links[0] if rt.links else None
        flows.append({
            "src": f.src, "dst": f.dst, "src_name": "io" if f.src == IO else names[f.src], "dst_name": names[f.dst],
            "value": f.value, "hops": rt.hops, "lanes": rt.lanes, "bytes": rt.bytes_per_sample * prog.samples,
            "bytes_per_sample": rt.bytes_per_sample,
            "route": {"from": list(first[:2]) if first else None, "to": list(rt.end) if rt.end else None,
                      "links": [link_name(x) for x in rt.links] if rt.hops <= 64 else None},
        })
    return {
        "version": __version__, "target": m.as_dict(), "mode": MODES[pl.mode], "mode_reason": pl.reason,
        "band_rows": pl.band_rows, "cores_used": pl.cores_used, "occupancy": pl.occupancy,
        "kernels": kernels, "flows": flows,
        "groups": [{"name": g.name, "kernels": list(g.kernels), "band_rows": g.band_rows,
                    "weight_bytes": g.weight_bytes, "stream_start_cycle": t.stream_start,
                    "stream_end_cycle": t.stream_end, "start_cycle": t.start, "end_cycle": t.end, "bound": t.bound}
                   for g, t in zip(pl.groups, sim.groups)],
        "links": {
            "max_colors": s.routing.max_colors, "mean_hops": s.routing.mean_hops(),
            "busiest": [{"link": link_name(link), "bytes_per_sample": b, "colors": s.routing.link_colors[link]}
                        for link, b in s.routing.busiest(10)],
        },
        "assumptions": assumptions_dict(m),
    }


LEGACY = ("hop_cycles", "router_delay_cycles", "elements_per_wavelet", "reserved_sram_bytes", "queue_bytes_per_color",
          "pe_queue_depth", "ramp_cycles", "inter_system_link_name", "inter_system_latency_s")


def assumptions_dict(machine=None) -> dict:
    """The model's assumed figures (assumptions.py), and the machine file's figures marked assumed, with why."""
    out = {k: v for k, v in vars(A).items() if k.isupper()}
    if machine is not None:  # the names these figures had in assumptions.py, kept for readers of placement.json
        from ..backends.machine import WSE3

        out.update({name.upper(): getattr(machine, name) for name in LEGACY},
                   WSE3_CLOCK_HZ=WSE3.clock_hz, WSE3_F32_FMACS=WSE3.f32_fmacs_per_cycle)
        out["machine"] = {k: {"value": getattr(machine, k), "why": text}
                          for k, kind, text in machine.sources if kind == "assumed"}
    return out


def wafer_report(s: CompileState) -> dict:
    """The sections ``wafer compile --target`` adds to report.json."""
    m, prog, pl, sim = s.machine, s.program, s.placement, s.sim
    seconds = sim.cycles / m.clock_hz
    tokens = prog.samples * prog.tokens
    if not (seconds > 0 and tokens > 0):  # e.g. an IR whose shapes were edited to nothing: no rate to report
        raise UsageError(f"the placed program does no work ({sim.cycles} cycles for {tokens} tokens): check the "
                         "model's shapes (a dimension of 0?)")
    stages = pl.stage_cycles
    slowest = max(stages)
    mean = sum(stages) / len(stages)
    bound_cycles = {}
    for t in sim.kernels:
        bound_cycles[t.bound] = bound_cycles.get(t.bound, 0) + 1
    slow = max(range(len(stages)), key=lambda i: (stages[i], -i))
    path_cycles, path = critical_path(prog, pl, s.routing, sim.chunk)
    streamed = sum(g.stream for g in sim.groups)
    exposed = sum(max(0, g.start - (prev.end if prev else 0)) for prev, g in zip([None, *sim.groups], sim.groups))
    steady = (prog.tokens * m.clock_hz / slowest if not pl.is_streaming else  # one sample per slowest stage, or
              tokens * m.clock_hz / sum(max(g.compute, g.stream) for g in sim.groups))  # each layer at its pace
    out = {
        "target": m.name,
        "machine": m.as_dict(),
        "mode": MODES[pl.mode],
        "mode_reason": pl.reason,
        "time": {
            "samples": prog.samples, "tokens": tokens, "cycles": sim.cycles, "seconds": seconds,
            # first token in to the last token of the first sample out (the pipeline's latency)
            "latency_cycles": sim.latency, "latency_seconds": sim.latency / m.clock_hz,
            "tokens_per_s": tokens / seconds, "samples_per_s": prog.samples / seconds,
            "mfu": model_flops(s) / (seconds * m.mfu_peak_flops),
            "mfu_basis": m.mfu_basis,  # the peak MFU is against: the published dense one where there is one
            "mfu_usable_pes": model_flops(s) / (seconds * m.peak_flops),  # against this mesh's own peak
            "steady_tokens_per_s": steady,
            "roofline_cycles": sim.roofline_cycles, "roofline": sim.roofline,
            "slowest_stage": {"kernel": prog.kernels[slow].name, "cycles_per_sample": slowest},
            "kernels_by_bound": dict(sorted(bound_cycles.items())),
            "critical_path_cycles": path_cycles, "critical_path_kernels": len(path),
            "chunk_tokens": sim.chunk,
            # weight streaming: what came over the system I/O, and how much of it the wafer waited for
            "stream_bytes": sum(g.weight_bytes for g in sim.groups),
            "stream_seconds": streamed / m.clock_hz,
            "stream_exposed_seconds": exposed / m.clock_hz,
            "stream_overlap": 1 - exposed / streamed if streamed else 0.0,
        },
        "placement": {
            "kind": "latency" if pl.mode == "latency" else "throughput",
            "kind_reason": pl.kind_reason or f"{'latency' if pl.mode == 'latency' else 'throughput'}: {pl.reason}",
            "occupancy": pl.occupancy, "cores_used": pl.cores_used, "kernels": len(prog.kernels),
            "flows": len(prog.flows), "band_rows": pl.band_rows,
            "slowest_stage_over_mean": slowest / mean,
            "mean_hops": s.routing.mean_hops(), "max_colors": s.routing.max_colors,
            "busiest_links": [{"link": link_name(link), "bytes_per_sample": b}
                              for link, b in s.routing.busiest(5)],
            "weight_bytes_on_wafer": (prog.weight_bytes if not pl.is_streaming else  # streaming: the buffered layers'
                                      A.WEIGHT_BUFFERS * max(g.weight_bytes for g in pl.groups)),
            # what the flows between kernels carry over the whole run, and that times the hops it travels
            "flow_bytes": sum(r.bytes_per_sample for r in s.routing.routes) * prog.samples,
            "flow_byte_hops": sum(r.bytes_per_sample * r.hops for r in s.routing.routes) * prog.samples,
            "sram_peak_bytes_per_core": pl.reserved_bytes + max(sum(k.model.sram(r.rows, r.cols).values())
                                                                for k, r in zip(prog.kernels, pl.rects)),
            "sram_reserved_bytes_per_core": pl.reserved_bytes,
        },
    }
    if pl.is_streaming:
        out["time"]["layers"] = [{"name": g.name, "weight_bytes": g.weight_bytes, "compute_cycles": g.compute,
                                  "stream_cycles": g.stream, "bound": g.bound, "start_cycle": g.start,
                                  "end_cycle": g.end} for g in sim.groups]
        out["time"]["layers_by_bound"] = {b: sum(g.bound == b for g in sim.groups) for b in ("compute", "stream")}
    sp = sparsity_section(s, [{"sparse": sparse_info(s, k.id)} for k in prog.kernels])
    if sp is not None:
        out["sparsity"] = sp
    out["energy"] = run_energy(s)
    return out


def _bytes(n: float) -> str:
    for scale, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def placement_text(report: dict, pj: dict) -> str:
    """The wafer section of report.txt (and of ``wafer report``)."""
    t, pl, m = report["time"], report["placement"], pj["target"]
    lines = [
        "",
        f"Wafer: {m['name']} ({m['rows']}x{m['cols']} = {m['cores']:,} cores, "
        f"{_bytes(m['sram_bytes_per_core'])} SRAM/core, {m['fmacs_per_cycle']} FMAC/cycle, "
        f"clock {m['clock_hz'] / 1e9:.2f} GHz), mode {pj['mode']}",
        f"  time            {t['samples']} sample(s) x {t['tokens'] // t['samples']} tokens: {t['cycles']:,} cycles = "
        f"{1e3 * t['seconds']:.3f} ms; {t['tokens_per_s'] / 1e6:.3f} M tokens/s "
        f"(steady state {t['steady_tokens_per_s'] / 1e6:.3f} M); MFU {100 * t['mfu']:.1f}% "
        f"(of the {t['mfu_basis']}; {100 * t['mfu_usable_pes']:.1f}% of the usable PEs' peak)",
        f"  latency         first token in to the first sample's last token out: "
        f"{1e3 * t['latency_seconds']:.3f} ms",
        f"  roofline        {t['roofline_cycles']:,.0f} cycles ("
        + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(t["roofline"].items()))
        + f"); simulated / roofline = {t['cycles'] / max(t['roofline_cycles'], 1):.2f}",
        f"  placement       {pl['kernels']} kernels on {pl['cores_used']:,} cores ({100 * pl['occupancy']:.1f}%), "
        f"bands of {pl['band_rows']} rows; slowest stage / mean {pl['slowest_stage_over_mean']:.2f} "
        f"({t['slowest_stage']['kernel']}, {t['slowest_stage']['cycles_per_sample']:,} cycles/sample)",
        f"  fabric          {pl['flows']} flows, mean {pl['mean_hops']:.1f} hops (weighted by bytes), at most "
        f"{pl['max_colors']} of {m['colors']} colors on a link",
        "  busiest links   " + ", ".join(f"{b['link']} {_bytes(b['bytes_per_sample'])}/sample"
                                         for b in pl["busiest_links"][:3]),
        "  bounds          " + ", ".join(f"{n} {k}" for k, n in t["kernels_by_bound"].items()) + " kernels",
        f"  mode            {report.get('mode_reason', '')}",
    ]
    clock = m["clock_hz"]
    if "sparsity" in report:
        sp = report["sparsity"]
        lines.append(
            f"  sparsity        {sp['kernels']} sparse kernels, density {sp['density']:.3f} ({', '.join(sp['masks'])} "
            f"masks): {_bytes(sp['weight_bytes'])} of weights with their indices, against "
            f"{_bytes(sp['dense_weight_bytes'])} dense; speed-up {sp['kernel_speedup']:.2f}x against dense on "
            "the same rectangles "
            f"({sp['min_kernel_speedup']:.2f}x to {sp['max_kernel_speedup']:.2f}x)")
    if "layers" in t:
        lines += [
            f"  streaming       {_bytes(t['stream_bytes'])} of weights over the system I/O in "
            f"{1e3 * t['stream_seconds']:.3f} ms; {100 * t['stream_overlap']:.1f}% of it behind compute; layers "
            + ", ".join(f"{n} {b}-bound" for b, n in t["layers_by_bound"].items()),
            "",
            f"  {'layer':<28} {'weights':>10} {'stream us':>10} {'compute us':>11} {'bound':<8}",
        ]
        lines += [f"  {x['name'][:28]:<28} {_bytes(x['weight_bytes']):>10} {1e6 * x['stream_cycles'] / clock:>10.1f} "
                  f"{1e6 * x['compute_cycles'] / clock:>11.1f} {x['bound']:<8}" for x in t["layers"]]
    sparse = any(k.get("sparse") for k in pj["kernels"])
    lines += [
        "",
        f"  {'id':>4} {'kernel':<52} {'rect r,c rows x cols':<22} {'cores':>8} {'SRAM/core':>10} "
        f"{'util':>6} {'busy':>6} {'bound':<8}" + (f" {'density':>7} {'speedup':>7}" if sparse else ""),
    ]
    for k in pj["kernels"]:
        r = k["rect"]
        rect = f"{r['row']},{r['col']} {r['rows']}x{r['cols']}"
        sp = k.get("sparse")
        lines.append(f"  {k['id']:>4} {k['name'][:52]:<52} {rect:<22} {k['cores']:>8,} "
                     f"{_bytes(k['sram_bytes_per_core']['total']):>10} {100 * k['utilization']:>5.1f}% "
                     f"{100 * k['busy_fraction']:>5.1f}% {k['bound']:<8}"
                     + (f" {sp['density']:>7.3f} {sp['speedup']:>6.2f}x" if sp else ""))
    return "\n".join(line.rstrip() for line in lines) + "\n"
