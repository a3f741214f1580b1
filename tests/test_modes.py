"""Modes as files behind one face: the registry, a mode registered here compiling end to end, the
driver knowing no mode by name, and what the report records of the pipelines each mode ran."""

import ast
import json
from pathlib import Path

import pytest

import waferscale
from waferscale.errors import UsageError
from waferscale.ir import print_graph
from waferscale.modes import MODES, Context, Mode, Outcome, get_mode, register_mode
from waferscale.passes import CompileState, parse_pipeline
from waferscale.report.assemble import validate

PACKAGE = Path(waferscale.__file__).parent


def test_the_three_modes_are_registered_with_one_face():
    assert {"inference", "train", "generate"} <= set(MODES)
    for name in ("inference", "train", "generate"):
        m = get_mode(name)
        assert m.name == name and m.graphs and callable(m.run) and isinstance(m.options, dict)
    assert get_mode("train").section == "train" and get_mode("generate").section == "generate"
    with pytest.raises(UsageError, match="unknown mode 'nosuch'"):
        get_mode("nosuch")


def test_the_driver_imports_no_mode_by_name():
    tree = ast.parse((PACKAGE / "driver.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    modes = {"inference", "train", "generate", "training", "generate_split", "train_report"}
    assert not [n for n in names if set(n.split(".")) & modes], sorted(names)
    assert "modes.get_mode" in names  # through the registry


@register_mode
class Halves(Mode):
    """A mode of this test's own: the forward pass at half the batch, twice, its times added."""

    name = "test-halves"
    section = "halves"
    graphs = ("half",)
    options = {"halves": 2}

    def run(self, ctx: Context) -> Outcome:
        halves = ctx.run.options["halves"]
        src = ctx.trace("half", batch=ctx.run.batch // halves)
        state = CompileState(src.graph, samples=src.model["batch"], tokens=src.model["seq"], machine=ctx.machine)
        state, records = ctx.pipeline("half", state, "canonicalize,fuse,lower,place{mode=pipelined},route,simulate")
        seconds = halves * state.sim.cycles / ctx.machine.clock_hz
        c = dict(src.compile, passes=[r.as_dict() for r in records])
        return Outcome(state, state.graph, print_graph(state.graph), src.model, c,
                       ",".join(r.spec for r in records), {"seconds": seconds, "halves": halves})


def test_a_mode_registered_elsewhere_compiles_end_to_end(tmp_path):
    c = waferscale.compile("tiny", mode="test-halves", batch=4, seq=16, target="mesh:32x32")
    r = c.report
    assert r["halves"]["halves"] == 2 and r["model"]["batch"] == 2
    assert r["halves"]["seconds"] == pytest.approx(2 * r["time"]["seconds"])
    assert r["run"]["mode"] == "test-halves" and r["run"]["options"] == {"halves": 2}
    assert r["run"]["executed"] == {"half": "canonicalize,fuse{epilogues=true,prologues=true},lower,"
                                            "place{mode=pipelined},route,simulate{chunk=64}"}
    validate(r)
    c.write(tmp_path / "out")
    assert json.loads((tmp_path / "out" / "report.json").read_text())["halves"]["halves"] == 2
    with pytest.raises(UsageError, match="mode test-halves has no option 'thirds'"):
        get_mode("test-halves").resolve(waferscale.modes.RunSpec("tiny", "test-halves", {"thirds": 3}))


def test_a_split_a_mode_does_not_take_is_refused():
    run = waferscale.modes.RunSpec("tiny", "generate", split="data")
    with pytest.raises(UsageError, match="not supported: --split data in mode generate"):
        get_mode("generate").resolve(run)


def test_the_older_meaning_of_mode_is_the_execution_mode():
    c = waferscale.compile("tiny", seq=16, target="mesh:32x32", mode="streaming")
    assert c.report["run"]["mode"] == "inference" and c.report["run"]["execution"] == "streaming"
    assert c.report["mode"] == "weight-streaming" and c.state.placement.is_streaming
    assert "place{mode=streaming}" in c.report["run"]["executed"]["model"]


def test_train_records_the_pipelines_it_ran_and_simulates_once():
    c = waferscale.compile("tiny", mode="train", batch=2, seq=16, target="mesh:32x32", execution="streaming",
                           systems=2)
    ex = c.report["run"]["executed"]
    assert ex["train"].startswith("canonicalize,autodiff{") and ",recompute," in ex["train"]
    assert ex["train"].endswith("place{mode=streaming},route,simulate{chunk=64}")  # streamed_gemm=auto
    assert ex["step"].endswith(",recompute,adamw{lr=0.0006,beta1=0.9,beta2=0.95,eps=1e-08,weight_decay=0.1,clip=1.0}")
    names = [p["name"] for p in c.report["compile"]["passes"]]
    assert names.count("simulate") == 1
    assert c.report["pipeline"].count("simulate") == 1
    # the SwarmX tree's latency is in the one recorded simulation: later streams start later than on one system
    one = waferscale.compile("tiny", mode="train", batch=1, seq=16, target="mesh:32x32", execution="streaming")
    assert c.report["time"]["cycles"] > one.report["time"]["cycles"]
    assert [p.name for p in parse_pipeline(ex["train"])].count("simulate") == 1


def test_a_lora_baseline_is_a_named_second_run():
    c = waferscale.compile("tiny", mode="train", batch=2, seq=16, target="mesh:32x32",
                           lora="lora{rank=2,alpha=8.0,targets=c_attn}")
    r = c.report
    assert r["run"]["options"]["lora"] == "lora{rank=2,alpha=8.0,targets=c_attn}"
    base = r["baseline"]
    assert base["run"]["options"] == {"lora": None, "sparsity": None, "micro_batch": None, "tokens": None}
    assert base["run"]["execution"] == "pipelined"  # the execution mode the LoRA run chose
    assert "lora" not in base["run"]["executed"]["train"]
    assert r["train"]["lora"]["full_fine_tuning"]["step_seconds"] == base["train"]["step_seconds"]
    validate(r)


def test_generate_records_what_each_system_ran():
    c = waferscale.compile("tiny", mode="generate", prompt_len=8, new_tokens=4, systems=2, target="mesh:32x32")
    ex = c.report["run"]["executed"]
    names = ["decode/system-1", "decode/system-2", "decode_last/system-1", "decode_last/system-2",
             "prefill/system-1", "prefill/system-2"]
    assert sorted(ex) == sorted(names + [f"{n}/latency" for n in names])  # and what the latency candidate ran
    graph = "canonicalize,kv-cache{capacity=12},canonicalize,fuse{epilogues=true,prologues=true},lower,"
    assert ex["decode/system-2"] == graph + "place{mode=pipelined},route,simulate{chunk=1}"
    assert ex["decode_last/system-1"] == graph + "simulate{chunk=1}"  # on the decode step's placement
    assert ex["prefill/system-1"] == graph + "route,simulate{chunk=64}"
    assert ex["decode/system-2/latency"] == graph + "latency-placement,route,simulate{chunk=1}"
    assert c.report["generate"]["systems"] == 2 and c.report["run"]["systems"] == 2
    validate(c.report)
