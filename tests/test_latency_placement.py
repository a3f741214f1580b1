"""Latency placement (passes/latency.py, passes/placement_kind.py): regions shared in time, independent
kernels apart, never slower than throughput placement for a decode step at batch 1, and the report
says which was kept and why."""

from __future__ import annotations

import pytest

from waferscale.generate import compile_generate
from waferscale.passes.latency import ancestors, concurrent, verify_latency
from waferscale.runtime.switching import handover_cycles
from waferscale.runtime.tile_sim import sharing


@pytest.fixture(scope="module")
def tiny_auto():
    return compile_generate("tiny-llama", prompt_len=8, new_tokens=8, batch=1, target="mesh:48x48")


@pytest.mark.parametrize("model,target", [("tiny", "mesh:48x48"), ("cerebras-gpt-111m", "mesh:160x160")])
def test_latency_never_slower_than_throughput_at_batch_1(model, target):
    g = compile_generate(model, prompt_len=8, new_tokens=8, batch=1, target=target).report["generate"]
    cycles = g["systems_detail"][0]["decode_cycles_by_placement"]
    assert set(cycles) == {"latency", "throughput"}
    assert cycles["latency"] <= cycles["throughput"]
    assert g["placement_kind"] == "latency"
    assert g["decode_seconds_first"] >= g["decode_roofline_seconds_first"]  # the roofline still holds


def test_report_names_the_placement_kind_and_why(tiny_auto):
    r = tiny_auto.report
    assert r["placement"]["kind"] == "latency" == r["generate"]["placement_kind"]
    why = r["placement"]["kind_reason"]
    assert why.startswith("latency: simulated both") and "throughput placement" in why
    assert r["generate"]["prefill_placement_kind"] in ("latency", "throughput")
    assert r["mode"].startswith("latency")


def test_placement_option_overrides():
    g = compile_generate("tiny-llama", prompt_len=8, new_tokens=8, batch=1, target="mesh:48x48",
                         placement="throughput").report["generate"]
    assert g["placement_kind"] == "throughput" and "asked for (--placement throughput)" in g["placement_kind_reason"]
    assert set(g["systems_detail"][0]["decode_cycles_by_placement"]) == {"throughput"}


def test_concurrent_kernels_apart_and_shared_cores_take_turns(tiny_auto):
    s = tiny_auto.state
    prog, pl, sim = s.program, s.placement, s.sim
    verify_latency(prog, pl)
    anc = ancestors(prog)
    names = [k.name for k in prog.kernels]
    q = next(i for i, n in enumerate(names) if "q_proj" in n)
    k = next(i for i, n in enumerate(names) if "k_proj" in n)
    assert concurrent(anc, q, k) and not pl.rects[q].overlaps(pl.rects[k])  # q and k may run at once: apart
    share = sharing(pl)
    assert any(share)  # cores are shared in time
    span = {kk: (a, b) for kk, _, _, a, b in sim.spans}
    hand = handover_cycles(prog, pl, share)
    assert all(h > 0 for h, others in zip(hand, share) if others) and all(h == 0 for h, o in zip(hand, share) if not o)
    for a, others in enumerate(share):
        for b in others:  # kernels that share cores never run at the same time, and hand the router over
            assert span[a][1] <= span[b][0] or span[b][1] <= span[a][0]
            if b > a:
                assert span[b][0] >= span[a][1] + hand[b] - 1  # spans are rounded to whole cycles


def test_cli_placement_option(tmp_path, capsys):
    from waferscale.cli import build_parser, main
    from waferscale.passes.placement_kind import KINDS

    opt = next(a for a in build_parser()._subparsers._group_actions[0].choices["compile"]._actions
               if "--placement" in a.option_strings)
    assert set(opt.choices) == set(KINDS) and opt.help
    assert main(["compile", "tiny", "--target", "mesh:48x48", "--placement", "latency", "-q"]) == 2
    assert "--placement set(s) up generation" in capsys.readouterr().err
    code = main(["compile", "tiny-llama", "--target", "mesh:48x48", "--generate", "--prompt-len", "8", "--new-tokens",
                 "8", "--placement", "throughput", "-q", "-o", str(tmp_path / "out")])
    assert code == 0
    import json

    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["placement"]["kind"] == "throughput" and report["generate"]["placement_asked"] == "throughput"


def test_decode_time_split_adds_up(tiny_auto):
    g = tiny_auto.report["generate"]
    split = g["decode_time_split_seconds"]
    assert set(split) == {"compute", "fabric", "fill", "wait"} and min(split.values()) >= 0
    assert sum(split.values()) == pytest.approx(g["decode_seconds_first"], rel=0.01)
    assert split["compute"] > 0 and split["fill"] > 0


def test_prefill_head_costs_the_last_position_only():
    from waferscale.backends.lowering import lower
    from waferscale.backends.machine import get_machine
    from waferscale.generate import step_graphs
    from waferscale.modes.generate_split import head_on_last_position

    m = get_machine("mesh:32x32")
    st = step_graphs("tiny-llama", prompt_len=8, new_tokens=4)
    full = lower(st.prefill_state.graph, 1, 8, 0)
    last = head_on_last_position(full)
    changed = [i for i, (a, b) in enumerate(zip(full.kernels, last.kernels)) if a.model is not b.model]
    # the head alone (its final RMSNorm folded into it by fuse: lm_head/rmsnorm+linear)
    assert [full.kernels[i].name for i in changed] == [k.name for k in full.kernels if k.name.startswith("lm_head/")]
    (h,) = changed
    one = lower(st.decode_state.graph, 1, 1, 8).kernels[h].model  # the decode step's head: one token
    for rows, cols in ((4, 8), (8, 16)):
        got = [last.kernels[h].model.cycles(rows, cols, p0, p1, m)[0] for p0, p1 in ((0, 4), (4, 8))]
        assert got[0] == 0 and got[1] == one.cycles(rows, cols, 0, 1, m)[0]
        assert full.kernels[h].model.cycles(rows, cols, 4, 8, m)[0] > got[1]
