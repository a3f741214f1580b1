"""The serving simulator's step costs from the wafer: the one place where ``waferscale.serve`` meets
today's generation simulation (``generate.py``).

The model is traced and placed once as ``wafer compile --generate --batch B`` does (the decode step
of ``B = max_batch`` sequences, each with a KV cache of ``max_context`` rows, layer-pipelined, over
``systems`` wafers; in throughput or latency placement, or both and the faster kept:
``serve/engine_placement.py``), then the
tile simulator runs that placement at other shapes: a decode step of ``b`` sequences at position
``p`` (the decode graph lowered for ``b`` samples at ``p``), a prefill chunk of ``n`` tokens at
position ``p`` (the prefill graph lowered for one sample of ``n`` tokens from ``p``), each over the
systems as ``modes.systems.pipeline_seconds`` adds them. Those runs fill a grid of (batch, context) and
(chunk, position); serving reads it by bilinear interpolation (``serve/costs.py``), and the error
of that against direct simulation at random points is measured and reported.

**KV capacity** (per system, then the least over systems, as every system holds its layers' share
of every sequence): each attention kernel keeps its layer's keys and values on its own cores, as
many as the placement gave it for ``B`` caches of ``max_context`` rows. The cache can also grow
into those cores' free SRAM (usable SRAM less everything the placed kernel keeps there), so a
kernel holds ``B x max_context x (held + free) / held`` tokens, where ``held`` is what its cores
hold for the ``B`` caches; the model holds the least of those over its attention kernels, times
one token's keys and values in every layer. Free SRAM on other kernels' cores or on unused cores is
not counted: the KV cache would have to move there, which the placement does not do (our modelling
choice). Smaller batches are simulated on the same rectangles.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, replace

import numpy as np

from ..backends.lowering import lower
from ..backends.machine import Machine, get_machine
from ..errors import FitError, UsageError
from ..ir.ops.cache import CACHED_ATTENTION, cache_inputs
from ..modes.generate import step_graphs
from ..modes.systems import part_program, split_pipeline
from ..passes.latency import place_latency, sram_map
from ..passes.place import place
from ..passes.placement_check import verify_placement
from ..passes.route import route
from .costs import GridCost, build_grid, step_seconds
from .engine_placement import Load, place_engine
from .placed import Placed

ERROR_POINTS = 8  # random points of each kind (decode, prefill, mixed) checked against direct simulation
MAX_ERROR = 0.05
STEP_PIPELINE = ",lower,place,route,simulate"  # each step's program (place_model, Placed._run)
STEP_PIPELINE_LATENCY = ",lower,latency-placement,route,simulate"  # the latency placer is not a pass (as generate's)
REFINE = 0.02  # a grid axis gets a midpoint where the cost strays 2% from the line between its neighbours


def place_model(model: str, machine: Machine, *, max_context: int, max_batch: int = 1, systems: int = 1,
                dtype: str = "f16", seed: int = 0, prompt_len: int | None = None, log=lambda msg: None,
                kind: str | tuple = "throughput", graphs=None, made: dict | None = None) -> Placed:
    """``kind``: ``throughput`` (``passes/place.py``: every kernel its own rectangle) or ``latency``
    (``passes/latency.py``: every kernel where it finishes soonest, cores shared in time), on every
    system alike, or a tuple of one kind per system. ``graphs``: the step graphs already traced
    (``step_graphs``); ``made``: placements already made, {(system index, kind): Placement}
    (``serve/engine_placement.py`` places both kinds from one trace)."""
    p0 = prompt_len or max(1, min(max_context - 1, 64))  # the prefill graph is traced at p0 tokens
    st = graphs or step_graphs(model, prompt_len=p0, new_tokens=max_context - p0, batch=max_batch, dtype=dtype,
                               seed=seed, machine=machine, log=log)
    dgraph = st.decode_state.graph
    dprog = lower(dgraph, max_batch, 1, p0, machine)  # placed for max_batch sequences' KV caches
    kinds = kind if isinstance(kind, tuple) else (kind,) * systems
    parts, held_free = [], []
    for i, ks in enumerate(split_pipeline(dprog, systems)):
        sub = part_program(dprog, ks, systems)
        placement = (made or {}).get((i, kinds[i])) or place_part(sub, machine, kinds[i], max_batch, max_context, log)
        parts.append((ks, placement, route(sub, placement)))
        grow = _kv_growth(sub, placement) if kinds[i] == "latency" else None
        for k, r in zip(sub.kernels, placement.rects):
            if k.op.kind not in CACHED_ATTENTION:
                continue
            sram = k.model.sram(r.rows, r.cols)
            held = sram.get("kv_cache", 0) * r.cores
            if grow is None:
                free = (machine.usable_sram_bytes - sum(sram.values())) * r.cores
            else:  # the cores it shares: their free SRAM split among the caches there, the least over its cores
                free = int(held * (float(grow[r.row:r.row + r.rows, r.col:r.col + r.cols].min()) - 1))
            tokens = max_batch * max_context * (held + free) // held if held else 0
            held_free.append({"system": i + 1, "kernel": k.name, "cores": r.cores, "held_bytes": held,
                              "free_bytes": free, "tokens": tokens})
    kv_total = sum(v.type.nbytes for v in cache_inputs(dgraph))
    tokens = min(d["tokens"] for d in held_free)
    steps = STEP_PIPELINE_LATENCY if "latency" in kinds else STEP_PIPELINE
    return Placed(machine, parts, dgraph, st.prefill_state.graph, max_context, kv_total // (max_batch * max_context),
                  tokens, held_free, systems, pipeline=",".join(p.spec() for p in st.passes) + steps)


def place_part(sub, machine: Machine, kind: str, max_batch: int, max_context: int, log=lambda msg: None):
    """One system's part placed in ``kind`` and checked; a FitError that says what serving asked for."""
    try:
        made = place_latency(sub, machine, log=log) if kind == "latency" else place(sub, machine, log=log)
        return verify_placement(sub, made)
    except FitError as e:
        why = str(e)
        why = why[:why.rfind("; use ")] if "; use " in why else why
        raise FitError(f"serving places {max_batch} sequences' KV caches of {max_context} rows in {kind} "
                       f"placement: {why}; use a smaller --max-batch or --max-context, more --systems or a bigger "
                       "--target") from None


def _kv_growth(sub, placement):
    """Latency placement: per core, how far its KV caches can grow, (KV bytes there + free SRAM) / KV bytes
    there (infinite where no cache is): attention kernels of several layers may share a core, and
    their caches then share its free SRAM, in proportion to their size."""
    full = sram_map(sub, placement)
    kv = np.zeros_like(full)
    for k, r in zip(sub.kernels, placement.rects):
        if k.op.kind in CACHED_ATTENTION:  # sink attention's caches too (gpt-oss)
            kv[r.row:r.row + r.rows, r.col:r.col + r.cols] += k.model.sram(r.rows, r.cols).get("kv_cache", 0)
    free = np.maximum(placement.machine.usable_sram_bytes - full, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(kv > 0, (kv + free) / np.maximum(kv, 1), np.inf)


def _grid_points(max_batch: int, max_context: int, chunk: int):
    """The grid's first points; ``build_grid`` adds midpoints where the cost bends (REFINE)."""
    batches = sorted({1, max_batch} | {4**i for i in range(1, max_batch.bit_length()) if 4**i < max_batch})
    contexts = sorted({1, max_context // 2, max_context - 1})
    chunks = sorted({1, 2, chunk} | {4**i for i in range(1, chunk.bit_length()) if 4**i < chunk})
    # a chunk's first position: a full chunk's last is max_context - chunk, a short piece's (a prompt's
    # last) up to max_context - 1 (the grid's point there is simulated at max_context - tokens)
    positions = sorted({0, (max_context - chunk) // 2, max_context - chunk, max_context - 1})
    return batches, contexts, chunks, positions


@dataclass
class WaferCost:
    cost: GridCost
    placed: Placed
    report: dict


def wafer_costs(model: str, target: str | Machine, *, max_context: int, max_batch: int, chunk: int, systems: int = 1,
                dtype: str = "f16", seed: int = 0, what: str = "", error_seed: int = 0, verify_tokens: int = 0,
                execution: str = "pipelined", placement: str = "throughput", load: Load | None = None,
                log=lambda msg: None) -> WaferCost:
    """Place the model, simulate its steps on the grid, measure the interpolation error. With
    ``verify_tokens``, a third grid of (batch, context) holds the verify step of that many positions a
    sequence (speculative decoding's target; the program holds ``max_context`` rows, so the context
    axis stops ``verify_tokens`` short of it). ``execution``: ``pipelined`` (every weight and KV cache
    in SRAM, above) or ``streaming`` (weights and KV caches streamed from MemoryX, ``serve/streamed.py``).
    ``placement`` (pipelined only): ``throughput``, ``latency`` or ``auto`` at the operating point of
    ``load`` (``serve/engine_placement.py``); the prefill grid is on the prefill's placement."""
    machine = get_machine(target) if isinstance(target, str) else target
    if chunk > max_context - 1:
        chunk = max_context - 1
    t0 = time.perf_counter()
    chosen = None
    if execution == "streaming":
        from .streamed import place_streamed

        placed = pre = place_streamed(model, machine, max_context=max_context, max_batch=max_batch, systems=systems,
                                      dtype=dtype, seed=seed, prompt_len=chunk, log=log)
    else:
        chosen = place_engine(place_model, place_part, model, machine, kind=placement, load=load,
                              max_context=max_context, max_batch=max_batch, chunk=chunk, systems=systems,
                              dtype=dtype, seed=seed, verify_tokens=verify_tokens, log=lambda msg: log(what + msg))
        placed, pre = chosen.decode, chosen.prefill
    t_place = time.perf_counter() - t0
    b, c, n, p = _grid_points(max_batch, max_context, chunk)
    log(f"{what}simulating decode steps and prefill chunks for the cost grid (from {len(b)} x {len(c)} and "
        f"{len(n)} x {len(p)} points, refined where the cost bends)")
    t1 = time.perf_counter()
    dgrid = build_grid(b, c, placed.decode, tol=REFINE)
    pgrid = build_grid(n, p, lambda x, y: pre.prefill(x, min(y, max_context - x)), tol=REFINE)
    vgrid = None
    if verify_tokens:
        top = max_context - verify_tokens
        vgrid = build_grid(b, sorted({0, top // 2, top}),
                           lambda x, y: placed.verify(x, verify_tokens, min(y, top)), tol=REFINE)
    t_grid = time.perf_counter() - t1
    capacity = min(placed.kv_capacity_tokens, pre.kv_capacity_tokens)  # both hold the KV caches
    latency = any(pl.mode == "latency" for _, pl, _ in placed.parts)
    cost = GridCost(dgrid, pgrid, placed.kv_bytes_per_token, capacity * placed.kv_bytes_per_token,
                    max_context, vgrid, verify_tokens, mixed=execution != "streaming" and pre is placed and not latency)
    rng = random.Random(error_seed)
    checks = []
    for _ in range(ERROR_POINTS):
        bb, cc = rng.randint(1, max_batch), rng.randint(1, max_context - 1)
        checks.append({"kind": "decode", "batch": bb, "context": cc, "simulated": placed.decode(bb, cc),
                       "interpolated": cost.decode(bb, cc)})
        nn = rng.randint(1, chunk)
        pp = rng.randint(0, max_context - nn)
        checks.append({"kind": "prefill", "tokens": nn, "position": pp, "simulated": pre.prefill(nn, pp),
                       "interpolated": cost.prefill(nn, pp)})
        mb, mc = rng.randint(1, max_batch), rng.randint(1, max_context - 1)
        mn = rng.randint(1, chunk)
        mp = rng.randint(0, max_context - mn)
        checks.append({"kind": "mixed", "batch": mb, "context": mc, "tokens": mn, "position": mp,
                       "simulated": placed.mixed(mb, mc, [(mn, mp)]) if pre is placed else
                       placed.decode(mb, mc) + pre.prefill(mn, mp),
                       "interpolated": step_seconds(cost, mb, mc, [(mn, mp)]),
                       "sum_of_parts": cost.decode(mb, mc) + cost.prefill(mn, mp)})
        if vgrid is not None:
            vb, vc = rng.randint(1, max_batch), rng.randint(0, max_context - verify_tokens)
            checks.append({"kind": "verify", "batch": vb, "context": vc, "tokens": verify_tokens,
                           "simulated": placed.verify(vb, verify_tokens, vc), "interpolated": cost.verify(vb, vc)})
    for x in checks:
        x["error"] = abs(x["interpolated"] - x["simulated"]) / x["simulated"]
    worst = max(x["error"] for x in checks)
    report = {
        "machine": machine.name, "rows": machine.rows, "cols": machine.cols, "systems": systems,
        "max_context": max_context, "kv_bytes_per_token": placed.kv_bytes_per_token,
        "kv_capacity_tokens": capacity, "kv_capacity_bytes": cost.kv_capacity_bytes,
        "execution": execution,
        "kv_capacity_basis": getattr(placed, "kv_basis", None) or  # serve/streamed.py's has its own
        "the program is placed for max_batch KV caches of max_context rows; the least, over "
                             "attention kernels, of max_batch x max_context x (held + free) / held: each layer's KV "
                             "cache on its own attention kernel's cores, grown into their free SRAM (usable SRAM "
                             "less what the placed kernel keeps there); other cores' free SRAM is not counted"
        + ("; latency placement: a core's free SRAM (usable less every kernel's resident bytes there and the largest "
           "transient set) is shared by the KV caches of every attention kernel on it, in proportion to their size, "
           "and a kernel's caches grow as far as its fullest core allows" if latency else ""),
        "kv_kernels": placed.kv_detail,
        "cores_used": [pl.cores_used for _, pl, _ in placed.parts],
        "decode_grid": dgrid.as_dict("batch", "context"), "prefill_grid": pgrid.as_dict("chunk", "position"),
        **({"verify_grid": {**vgrid.as_dict("batch", "context"), "tokens": verify_tokens}} if vgrid else {}),
        "interpolation": "bilinear, clamped at the grid's edges",
        "mixed_step": {**(MIXED_STEP if cost.mixed else MIXED_STEP_TWO if pre is not placed else MIXED_STEP_LATENCY
                          if latency else MIXED_STEP_STREAMING),
                       "max_error": max(x["error"] for x in checks if x["kind"] == "mixed")},
        "error_points": checks, "max_interpolation_error": worst, "max_error_allowed": MAX_ERROR,
        "place_seconds": t_place, "grid_seconds": t_grid, "pipeline": placed.pipeline,
        "placement_mode": placed.parts[0][1].mode,
        **(chosen.record if chosen is not None else {}),
    }
    if pre is not placed:
        report["prefill_pipeline"] = pre.pipeline
        report["prefill_kv_capacity_tokens"] = pre.kv_capacity_tokens
        report["decode_kv_capacity_tokens"] = placed.kv_capacity_tokens
    if worst > MAX_ERROR:
        log(f"warning: {what}the cost grid's interpolation error reaches {100 * worst:.1f}%, above "
            f"{100 * MAX_ERROR:.0f}% (report.json serve.costs.error_points)")
    return WaferCost(cost, placed, report)


MIXED_STEP = {
    "cost": "the decode step and each prefill piece summed, less the pipeline's fill for every part but one (the "
            "fill: 2 decode(1, context) - decode(2, context), a one-sequence step less one sequence's stream; "
            "serve/costs.py step_seconds)",
    "basis": "mixed steps simulated as one (runtime/tile_sim.py simulate(then=...): the chunk, then the batch's "
             "decode tokens, through the same placed pipeline) at random points: error_points of kind mixed, with the "
             "sum of the parts beside them",
}


MIXED_STEP_STREAMING = {
    "cost": "the decode step and each prefill piece summed (weight streaming: the prefill and decode programs are "
            "placed apart and each streams every layer's weights; serve/streamed.py StreamedPlaced.mixed)",
    "basis": "the same sum simulated part by part at random points: error_points of kind mixed",
}


MIXED_STEP_LATENCY = {
    "cost": "the decode step and each prefill piece summed: in latency placement a step's items take their turns on "
            "cores shared in time, so there is little pipeline fill to share (the fill rule, 2 decode(1) - decode(2), "
            "cannot be read off a grid of one batch: on the tiny model at --max-batch 1 it was 43% off the simulated "
            "mixed steps, the plain sum 5%; at --max-batch 4, 1.8% and 2.9%)",
    "basis": "mixed steps simulated as one (runtime/tile_sim.py simulate(then=...)) at random points: error_points of "
             "kind mixed",
}


MIXED_STEP_TWO = {
    "cost": "the decode step and each prefill piece summed: the prefill runs on the other placement "
            "(prefill_placement_kind), so the parts share no pipeline fill (serve/engine_placement.py)",
    "basis": "the same sum simulated part by part, each on its placement, at random points: error_points of kind "
             "mixed",
}


def region(machine: Machine, fraction: float, first: bool, names: tuple[str, str] = ("prefill", "decode"),
           flag: str = "--split") -> Machine:
    """The rows of a mesh split at ``fraction``: the first region (prefill, or a draft model) or the
    rest (decode, or the target)."""
    top = int(round(machine.rows * fraction))
    if not 1 <= top < machine.rows:
        raise UsageError(f"{flag} {fraction} leaves no rows to one region of {machine.name}'s {machine.rows}: give "
                         "a fraction strictly between 0 and 1")
    rows = top if first else machine.rows - top
    return replace(machine, name=f"{machine.name} ({names[0] if first else names[1]} region: {rows} of "
                                 f"{machine.rows} rows)", rows=rows, fabric_rows=0, die_cores=0)

