"""llama-3.1-70b fits on four WSE-3s, as Cerebras serves it (Llama 3.1 70B on four CS-3s).

Generation across systems (``generate.py``, ``wafer compile --generate --systems 4``) cuts the
model at transformer blocks into four parts of about equal weight, each placed layer-pipelined on a
wafer of its own with its weights and KV caches in SRAM. For the 80 blocks of llama-3.1-70b the cut
is 19 / 21 / 21 / 19 blocks, the embedding on the first system and the final norm and head on the
last. Tracing all 80 blocks takes a minute, so this test traces 21 blocks of 70B's shapes (on the
meta device, the decode step at a prompt of 128 and 256 new tokens) and places the three shapes of
part that the 80-block model has: placement only, nothing simulated."""

import pytest

from waferscale.backends.lowering import lower
from waferscale.backends.machine import get_machine
from waferscale.frontend.lm import trace_lm
from waferscale.frontend.zoo import lookup
from waferscale.ir import verify
from waferscale.modes.systems import part_program
from waferscale.passes import CompileState, parse_pipeline, run_pipeline
from waferscale.passes.place import place
from waferscale.passes.placement_check import verify_placement
from waferscale.passes.streaming import groups_of

PROMPT, NEW = 128, 256
SYSTEMS = 4


@pytest.fixture(scope="module")
def blocks_of_70b():
    machine = get_machine("wse3")
    cfg = lookup("llama-3.1-70b").config()
    cfg.num_hidden_layers = 21
    dec = trace_lm(cfg, batch=1, seq=1, dtype="f16", weights="meta", positions=True)
    passes = parse_pipeline(f"canonicalize,kv-cache{{capacity={PROMPT + NEW}}},canonicalize,fuse")
    state, _ = run_pipeline(CompileState(verify(dec.graph), samples=1, tokens=1, position=PROMPT, machine=machine),
                            passes)
    prog = lower(state.graph, 1, 1, PROMPT)
    return machine, prog, [ks for _, ks in groups_of(prog)]


@pytest.mark.parametrize("part,groups", [("first: embedding + 19 blocks", slice(0, 20)),
                                         ("middle: 21 blocks", slice(1, 22)),
                                         ("last: 19 blocks + head", slice(3, 23))])
def test_each_part_of_llama_70b_on_four_wse3s_fits_its_wafer(blocks_of_70b, part, groups):
    machine, prog, all_groups = blocks_of_70b
    assert len(all_groups) == 1 + 21 + 1  # the embedding, the blocks, the head (the final norm folded into it)
    kernels = tuple(k for ks in all_groups[groups] for k in ks)
    sub = part_program(prog, kernels, SYSTEMS)
    placement = verify_placement(sub, place(sub, machine))  # raises FitError if it does not fit
    assert placement.cores_used <= machine.cores
    # every weight of the part is resident: a middle part holds 21 of the 80 blocks' 141 GB
    if part.startswith("middle"):
        assert sub.weight_bytes > 0.25 * 141e9


def test_the_largest_part_of_llama_70b_on_four_wse3s_fits_its_wafer_in_latency_placement(blocks_of_70b):
    """The latency placement (every kernel on the region that finishes it soonest, regions shared in
    time) of the middle part, 21 of the 80 blocks: every core's SRAM within capacity
    (``verify_latency``: the resident buffers of the kernels sharing it summed, one set of transient
    ones), so four WSE-3s serve 70B in latency placement too.

    At the WSE-3's 2-cycle hop the fastest rectangles of the first kernels, placed in program order,
    leave no room for the last (finding that out takes a minute), and ``place_latency`` falls back to
    packing them largest first: the test places the part that way directly (the fallback itself is
    tests/test_latency_pack.py's)."""
    from waferscale.passes.latency import pack, sram_map, verify_latency

    machine, prog, all_groups = blocks_of_70b
    assert machine.hop_cycles == 2
    sub = part_program(prog, tuple(k for ks in all_groups[1:22] for k in ks), SYSTEMS)
    placement = pack(sub, machine, largest_first=True)  # raises FitError if it does not fit
    verify_latency(sub, placement)
    full = sram_map(sub, placement)
    assert full.max() <= machine.sram_bytes and full.mean() > 0.8 * machine.usable_sram_bytes  # really that full
