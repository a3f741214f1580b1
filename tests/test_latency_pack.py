"""The latency placer's second packing (passes/latency.py): where placing the kernels in program order
fails on a nearly full wafer, they are placed again largest first, and the placement says so.

The case is tiny-llama's decode step on a 12 x 12 mesh with 5 KiB of SRAM per core (3,072 B usable
beside the code reserve): in program order the fastest rectangles of the first kernels leave no room
for the last ones, largest first packs (found by sweeping the SRAM per core, so a change of the cost
model may move it; at a 2-cycle hop llama-3.1-70b's quarter on a WSE-3 is such a case,
tests/test_multi_wafer_fit.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from waferscale.backends.lowering import lower
from waferscale.backends.machine import get_machine
from waferscale.errors import FitError
from waferscale.frontend.lm import trace_lm
from waferscale.frontend.zoo import lookup
from waferscale.generate import compile_generate
from waferscale.ir import verify
from waferscale.passes import CompileState, parse_pipeline, run_pipeline
from waferscale.passes.latency import pack, place_latency, verify_latency

TIGHT = "mesh:12x12,sram_kib=5"


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
    tight = get_machine(TIGHT)
    with pytest.raises(FitError, match="finds no rectangle"):
        pack(prog, tight)  # program order
    p = place_latency(prog, tight)
    verify_latency(prog, p)  # concurrent kernels apart, every core within its usable SRAM
    assert p.reason.startswith("packed largest first")
    assert p == pack(prog, tight, largest_first=True)


def test_the_report_says_how_the_latency_placement_was_packed():
    r = compile_generate("tiny-llama", prompt_len=8, new_tokens=8, batch=1, target=TIGHT,
                         placement="latency").report
    why = r["placement"]["kind_reason"]
    assert why.startswith("latency: asked for (--placement latency)") and why.endswith(
        "; packed largest first (in program order the fastest rectangles of the first kernels left no room for "
        "the last)")
    assert r["generate"]["systems_detail"][0]["placement_kind_reason"] == why
    assert r["mode_reason"].startswith("packed largest first")


def test_where_program_order_packs_it_is_kept(step):
    mesh, prog = step
    roomy = with_usable_sram(mesh, 5000)
    p = place_latency(prog, roomy)
    assert p == pack(prog, roomy) and p.reason == ""
    assert p.rects != pack(prog, roomy, largest_first=True).rects  # the packings differ: no fallback taken


def test_where_neither_packs_the_first_error_is_raised(step):
    mesh, prog = step
    # program order fails on o_proj, largest first on another kernel: the error is program order's
    with pytest.raises(FitError, match=r"latency placement: kernel model\.layers\.1\.self_attn\.o_proj.* finds no "
                                       r"rectangle on mesh:12x12"):
        place_latency(prog, with_usable_sram(mesh, 2000))
