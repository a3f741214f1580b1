"""The latency placer's second packing (passes/latency.py): where placing the kernels in program order
fails on a nearly full wafer, they are placed again largest first, and the placement says so.

The case is tiny-llama's decode step on a 12 x 12 mesh with 3,500 B of usable SRAM per core: in
program order the fastest rectangles of the first kernels leave no room for the last ones, largest
first packs (found by sweeping the SRAM per core; at a 2-cycle hop llama-3.1-70b's quarter on a WSE-3
is such a case, tests/test_multi_wafer_fit.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from waferscale.backends.lowering import lower
from waferscale.backends.machine import get_machine
from waferscale.errors import FitError
from waferscale.frontend.lm import trace_lm
from waferscale.frontend.zoo import lookup
from waferscale.ir import verify
from waferscale.passes import CompileState, parse_pipeline, run_pipeline
from waferscale.passes.latency import pack, place_latency, sram_map, verify_latency
from waferscale.passes.placement_kind import Placed, settle


def decode_step(machine):
    dec = trace_lm(lookup("tiny-llama").config(), batch=1, seq=1, dtype="f16", weights="meta", positions=True)
    passes = parse_pipeline("canonicalize,kv-cache{capacity=16},canonicalize,fuse")
    state, _ = run_pipeline(CompileState(verify(dec.graph), samples=1, tokens=1, position=8, machine=machine), passes)
    return lower(state.graph, 1, 1, 8)


def with_usable_sram(machine, usable: int):
    return replace(machine, sram_bytes=machine.reserved_sram_bytes + usable)


@pytest.fixture(scope="module")
def step():
    mesh = get_machine("mesh:12x12")
    return mesh, decode_step(mesh)


def test_where_program_order_does_not_pack_largest_first_does(step):
    mesh, prog = step
    tight = with_usable_sram(mesh, 3500)
    with pytest.raises(FitError, match="finds no rectangle"):
        pack(prog, tight)  # program order
    p = place_latency(prog, tight)
    verify_latency(prog, p)  # concurrent kernels apart, every core within its SRAM
    assert sram_map(prog, p).max() <= tight.sram_bytes
    assert p.reason.startswith("packed largest first")
    # the report's kind_reason carries it (passes/placement_kind.settle)
    chosen = settle({"latency": Placed(p, None)}, "latency", "simulated both: ...")
    assert chosen.placement.kind_reason == "latency: simulated both: ...; " + p.reason
    # the same kernels, each on a rectangle the kernel's own shapes allow
    assert len(p.rects) == len(prog.kernels) and all(r is not None for r in p.rects)


def test_where_program_order_packs_it_is_kept(step):
    mesh, prog = step
    roomy = with_usable_sram(mesh, 5000)
    p = place_latency(prog, roomy)
    assert p == pack(prog, roomy) and p.reason == ""
    assert settle({"latency": Placed(p, None)}, "latency", "why").placement.kind_reason == "latency: why"


def test_where_neither_packs_the_first_error_is_raised(step):
    mesh, prog = step
    with pytest.raises(FitError, match="latency placement: kernel .* finds no rectangle on mesh:12x12"):
        place_latency(prog, with_usable_sram(mesh, 2000))
