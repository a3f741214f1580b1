"""Several systems for every mode (modes/systems.py): a pipeline of layers over 2 systems for a
forward pass, a training step and a decode; data parallel for a forward pass and a training step.
(test_replay.py compiles the same runs from the command line and replays them.)"""

import pytest

from waferscale.backends.machine import get_machine
from waferscale.driver import compile_run
from waferscale.errors import UsageError
from waferscale.modes import RunSpec
from waferscale.modes.systems import split_pipeline
from waferscale.passes.autodiff import BACKWARD
from waferscale.report.assemble import validate

TARGET = "mesh:48x48"


def run(mode="inference", **kw):
    kw.setdefault("seq", None if mode == "generate" else 16)
    return compile_run(RunSpec("tiny", mode, kw.pop("options", {}), target=TARGET, **kw)).report


def check_pipeline(report, one_kernels: int) -> dict:
    """Two parts that hold every kernel once, each placed and simulated, and a time that pays every
    system's latency and the link's."""
    validate(report)
    s = report["systems"]
    assert report["run"]["systems"] == 2 and report["run"]["split"] == "pipeline" == s["split"]
    assert len(s["detail"]) == 2 and sum(d["kernels"] for d in s["detail"]) == one_kernels
    assert all(d["cores_used"] > 0 and d["cycles"] > 0 for d in s["detail"])
    clock = report["machine"]["clock_hz"]
    assert s["seconds"] > sum(d["latency_cycles"] for d in s["detail"]) / clock
    assert s["inter_system_link"]["bytes_per_token"][0] > 0
    assert set(report["run"]["executed"]) >= {k for k in report["run"]["executed"] if "/system-" in k} and \
        sum("/system-" in k for k in report["run"]["executed"]) == 2
    return s


def test_a_forward_pass_as_a_pipeline_over_2_systems():
    one = run()
    two = run(systems=2, split="pipeline")
    s = check_pipeline(two, one["program"]["kernels"])
    assert s["tokens_per_s"] == pytest.approx(s["tokens"] / s["seconds"])
    assert "time" not in two  # no one system's time stands for the run's


def test_a_training_step_as_a_pipeline_over_2_systems_keeps_a_layers_backward_with_its_forward():
    one = run("train", batch=2)
    two = run("train", batch=2, systems=2, split="pipeline")
    check_pipeline(two, one["program"]["kernels"] if "program" in one else two["program"]["kernels"])
    t = two["train"]
    assert t["mode"] == "layer-pipelined" and t["split"] == "pipeline" and t["systems"] == 2
    assert two["systems"]["crossings"] == 2  # forward and back
    assert t["step_seconds"] == two["systems"]["seconds"] > t["micro_batch_seconds"]  # the optimizer after
    assert sum(d["optimizer_share"] for d in two["systems"]["detail"]) == pytest.approx(1)


def test_split_pipeline_puts_a_layers_forward_and_backward_kernels_on_one_system():
    from waferscale.frontend.lm import trace_lm
    from waferscale.passes import CompileState, parse_pipeline, run_pipeline

    t = trace_lm("tiny", batch=2, seq=16, weights="meta")
    state, _ = run_pipeline(CompileState(t.graph, samples=2, tokens=16, machine=get_machine(TARGET)),
                            parse_pipeline("canonicalize,autodiff,fuse,lower"))
    prog = state.program
    parts = split_pipeline(prog, 2)
    assert sorted(k for p in parts for k in p) == list(range(len(prog.kernels)))
    part_of = {k: i for i, p in enumerate(parts) for k in p}
    block = {}
    for k in prog.kernels:
        loc = prog.graph.loc(k.op.result) or ""
        if ".h." in loc:
            layer = loc.replace(BACKWARD, "").split(".h.")[1].split(".")[0]
            block.setdefault(layer, set()).add(part_of[k.id])
    assert block and all(len(v) == 1 for v in block.values())  # each block's kernels, both ways, on one system
    assert {min(v) for v in block.values()} == {0, 1}


def test_a_decode_as_a_pipeline_over_2_systems():
    r = run("generate", systems=2, options={"prompt_len": 8, "new_tokens": 4})
    validate(r)
    assert r["run"]["split"] == "pipeline" and len(r["generate"]["systems_detail"]) == 2


def test_data_parallel_inference_scales_throughput():
    one = run(batch=4)
    two = run(batch=4, systems=2)
    validate(two)
    s = two["systems"]
    assert two["run"]["split"] == "data" == s["split"] and s["batch_per_system"] == 2 and two["model"]["batch"] == 2
    assert s["tokens_per_s"] == pytest.approx(2 * s["tokens_per_s_per_system"])
    assert s["tokens_per_s"] > one["time"]["tokens_per_s"]
    # weight streaming pays the SwarmX tree on every stream: slower per system than one system alone
    streamed = run(batch=2, execution="streaming")
    streamed_two = run(batch=4, systems=2, execution="streaming")
    assert streamed_two["systems"]["swarmx_latency_seconds"] > 0
    assert streamed_two["time"]["seconds"] > streamed["time"]["seconds"]


@pytest.mark.parametrize("kw, message", [
    ({"batch": 3, "systems": 2}, "does not split evenly"),
    ({"systems": 2, "split": "pipeline", "execution": "streaming"}, "with --split pipeline"),
    ({"systems": 9, "split": "pipeline"}, "more than the 4 parts"),
])
def test_a_bad_systems_run_is_one_line(kw, message):
    with pytest.raises(UsageError, match=message):
        run(**kw)


def test_data_parallel_training_has_a_per_system_breakdown():
    two = run("train", batch=4, systems=2)
    validate(two)
    s, t = two["systems"], two["train"]
    assert two["run"]["split"] == "data" == s["split"] and len(s["detail"]) == 2
    assert s["seconds"] == t["step_seconds"] and s["tokens_per_s"] == pytest.approx(t["tokens_per_s"])
    assert s["swarmx_latency_seconds"] > 0 and s["reduce_bytes"] == t["stream_out_bytes"] > 0


def test_wafer_compile_systems_split_pipeline_says_the_whole_run(tmp_path, capsys):
    from waferscale.cli import main

    assert main(["compile", "tiny", "--seq", "16", "--target", TARGET, "--systems", "2", "--split", "pipeline",
                 "-q", "-o", str(tmp_path / "p")]) == 0
    assert "2 systems (pipeline):" in capsys.readouterr().out
    assert (tmp_path / "p" / "system-2" / "placement.json").exists()
    assert main(["compile", "tiny", "--seq", "16", "--target", TARGET, "--split", "data", "-q"]) == 2
    assert "add --systems N" in capsys.readouterr().err
