"""Pipeline strings (options, defaults, every error), the pipeline driving `wafer compile`, its
dumps, and resuming a compile from a dump."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waferscale.errors import UsageError
from waferscale.passes import DEFAULT_WAFER, PASSES, check_stages, parse_pipeline, spec

from .test_cli import run_cli


def test_options_parse_typed_and_print_back_with_every_default():
    passes = parse_pipeline(" canonicalize , fuse{epilogues=false}, lower,place{mode=pipelined},route,"
                            "simulate{ chunk = 16 }")
    assert [p.name for p in passes] == ["canonicalize", "fuse", "lower", "place", "route", "simulate"]
    assert passes[1].epilogues is False and passes[1].prologues is True and passes[5].chunk == 16
    assert spec(passes) == ("canonicalize,fuse{epilogues=false,prologues=true},lower,place{mode=pipelined},route,"
                            "simulate{chunk=16}")
    assert spec(parse_pipeline(spec(passes))) == spec(passes)  # the printed form parses to the same
    assert parse_pipeline("") == []
    assert spec(parse_pipeline(DEFAULT_WAFER)).startswith("canonicalize,fuse{epilogues=true,prologues=true},lower")


@pytest.mark.parametrize("text,message", [
    ("canonicalize,frobnicate", r"unknown pass 'frobnicate' in pipeline .* \(known: adamw, autodiff, canonicalize, "
                              r"dce, fuse, kv-cache, lora, lower"),
    ("fuse{epilogue=true}", r"pass 'fuse' has no option 'epilogue'; it takes epilogues=bool \(default true\)"),
    ("fuse{epilogues=yes}", r"option epilogues='yes' of pass 'fuse' is not a bool"),
    ("simulate{chunk=1.5}", r"option chunk='1.5' of pass 'simulate' is not an int"),
    ("place{mode=streamed}", r"option mode=streamed of pass 'place' is not one of auto, pipelined, streaming"),
    ("fuse{epilogues}", r"malformed option 'epilogues' of pass 'fuse': write option=value"),
    ("fuse{epilogues=true,epilogues=false}", r"option 'epilogues' of pass 'fuse' is given twice"),
    ("fuse{epilogues=true", r"unbalanced '\{'"),
    ("fuse}", r"unbalanced '\}'"),
    ("fu se", r"malformed pass 'fu se'"),
])
def test_bad_pipelines_are_one_clear_error(text, message):
    with pytest.raises(UsageError, match=message):
        parse_pipeline(text)


@pytest.mark.parametrize("text,message", [
    ("lower,fuse", r"pass 'fuse' rewrites the graph, but 'lower' has turned it into a mesh program before it: "
                   r"put graph passes before 'lower'"),
    ("place", r"pass 'place' needs the program stage: put 'lower' before it"),
    ("lower,route", r"pass 'route' needs the placed stage: put 'place' before it"),
    ("lower,place,simulate", r"pass 'simulate' needs the routed stage: put 'route' before it"),
    ("lower,place,route,place", r"pass 'place' runs on the program stage, and the pipeline is past it"),
])
def test_passes_out_of_stage_say_what_to_put_where(text, message):
    with pytest.raises(UsageError, match=message):
        check_stages(parse_pipeline(text))


def test_every_pass_is_documented_and_its_options_typed():
    for name, cls in PASSES.items():
        assert cls.summary, name
        for f in cls.options():
            assert f.metadata.get("doc"), (name, f.name)


def test_default_pipelines_are_recorded_with_timings_and_counts(capsys, tmp_path):
    code, _, err = run_cli(capsys, "compile", "tiny", "--seq", "16", "-o", str(tmp_path / "a"), "-q")
    assert code == 0, err
    r = json.loads((tmp_path / "a" / "report.json").read_text())
    assert r["pipeline"] == "canonicalize"
    (p,) = r["compile"]["passes"]
    assert p["name"] == "canonicalize" and p["seconds"] >= 0 and p["before"]["ops"] >= p["after"]["ops"]
    code, _, err = run_cli(capsys, "compile", "tiny", "--seq", "16", "--target", "mesh:32x32", "-o",
                           str(tmp_path / "b"), "-q")
    assert code == 0, err
    r = json.loads((tmp_path / "b" / "report.json").read_text())
    assert r["pipeline"] == spec(parse_pipeline(DEFAULT_WAFER))
    names = [p["name"] for p in r["compile"]["passes"]]
    assert names == ["canonicalize", "fuse", "lower", "place", "route", "simulate"]
    lower = r["compile"]["passes"][2]
    assert set(lower["before"]) == {"ops"} and set(lower["after"]) == {"kernels", "flows"}
    assert lower["after"]["kernels"] == r["placement"]["kernels"] == r["program"]["kernels"]
    assert "Pipeline: canonicalize,fuse{" in (tmp_path / "b" / "report.txt").read_text()


def test_a_pipeline_without_fuse_has_more_kernels_and_no_shorter_time(capsys, tmp_path):
    reports = {}
    for name, pipeline in (("fused", None), ("plain", "canonicalize,lower,place,route,simulate")):
        argv = ["compile", "tiny", "--seq", "32", "--batch", "2", "--target", "mesh:32x32", "-o",
                str(tmp_path / name), "-q"] + (["-p", pipeline] if pipeline else [])
        code, _, err = run_cli(capsys, *argv)
        assert code == 0, err
        reports[name] = json.loads((tmp_path / name / "report.json").read_text())
    assert reports["plain"]["pipeline"] == "canonicalize,lower,place{mode=auto},route,simulate{chunk=64}"
    assert reports["plain"]["placement"]["kernels"] > reports["fused"]["placement"]["kernels"]
    assert reports["plain"]["time"]["cycles"] >= reports["fused"]["time"]["cycles"]


def test_dumps_and_resuming_from_them_give_the_same_report(capsys, tmp_path):
    argv = ["compile", "tiny", "--seq", "32", "--batch", "2", "--target", "mesh:32x32"]
    code, _, err = run_cli(capsys, *argv, "--print-ir-after-all", "-o", str(tmp_path / "a"), "-q")
    assert code == 0, err
    dumps = sorted(p.name for p in (tmp_path / "a" / "ir").iterdir())
    assert dumps == ["00-input.ir", "01-canonicalize.ir", "02-fuse.ir", "03-lower.ir", "04-place.ir",
                     "05-route.ir", "06-simulate.ir"]
    place = (tmp_path / "a" / "ir" / "04-place.ir").read_text()
    assert "program @tiny (2 samples x 32 tokens; pipelined on mesh:32x32" in place
    assert "kernel 1 'transformer.wte/embedding+add': vocabulary over rows" in place and "at rows " in place
    assert "flow io -> " in place
    first = json.loads((tmp_path / "a" / "report.json").read_text())
    first.pop("compile"), first.pop("host")
    ran = first.pop("run")
    for i, start in enumerate(["ir/00-input.ir", "ir/01-canonicalize.ir", "ir/02-fuse.ir", "model.ir"]):
        out = tmp_path / f"resumed{i}"
        code, _, err = run_cli(capsys, "compile", str(tmp_path / "a" / start), "--target", "mesh:32x32",
                               "-o", str(out), "-q")
        assert code == 0, err
        again = json.loads((out / "report.json").read_text())
        assert again["compile"]["frontend"] == "ir"
        again.pop("compile"), again.pop("host")
        assert again.pop("run")["executed"] == ran["executed"], start  # the passes the dump ran, then the rest
        assert again == first, start
        assert (out / "placement.json").read_bytes() == (tmp_path / "a" / "placement.json").read_bytes()
    code, _, err = run_cli(capsys, "compile", str(tmp_path / "a" / "ir" / "03-lower.ir"), "-o", str(tmp_path / "x"),
                           "-q")
    assert code == 2 and "is a dump of the lowered program" in err and err.count("\n") == 1


def test_print_ir_after_and_compile_to(capsys, tmp_path):
    code, _, err = run_cli(capsys, "compile", "tiny", "--seq", "16", "--target", "mesh:32x32",
                           "--print-ir-after", "fuse,place", "--compile-to", "place", "-o", str(tmp_path), "-q")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "ir").iterdir()) == ["02-fuse.ir", "04-place.ir"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".waferscale-output", "ir", "model.ir", "report.json",
                                                          "report.txt"]
    r = json.loads((tmp_path / "report.json").read_text())
    assert r["pipeline"] == "canonicalize,fuse{epilogues=true,prologues=true},lower,place{mode=auto}"
    assert "time" not in r and r["program"]["kernels"] == 13 and r["target"] == "mesh:32x32"


@pytest.mark.parametrize("argv,message", [
    (["-p", "lower,place"], "the pipeline places the program on a machine (lower,place{mode=auto}): give "
                            "--target"),
    (["--mode", "streaming"], "--mode streaming is the mode of placement on a machine: give --target too"),
    (["--target", "mesh:8x8", "--mode", "streaming", "-p", "lower"], "--mode sets the mode of the default pipeline"),
    (["--target", "mesh:32x32", "-p", "place"], "pass 'place' needs the program stage: put 'lower' before it"),
    (["--compile-to", "simulate"], "--compile-to simulate: the pipeline has no pass of that name (the passes that "
                                   "run: canonicalize)"),
    (["--print-ir-after", "fuse"], "--print-ir-after fuse: the pipeline has no pass of that name"),
    (["-p", "fuse{bogus=1}"], "pass 'fuse' has no option 'bogus'"),
])
def test_pipeline_errors_reach_the_cli_as_one_line(capsys, tmp_path, argv, message):
    code, _, err = run_cli(capsys, "compile", "tiny", "--seq", "16", "-o", str(tmp_path / "never"), "-q", *argv)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "never").exists()


def test_opt_runs_graph_passes_only_and_keeps_a_dump_header(capsys, tmp_path):
    run_cli(capsys, "compile", "tiny", "--seq", "16", "-p", "", "-o", str(tmp_path), "-q")
    code, out, _ = run_cli(capsys, "opt", str(tmp_path / "model.ir"), "-p", "canonicalize,fuse")
    assert code == 0
    assert "# pipeline: canonicalize,fuse{epilogues=true,prologues=true}\n" in out and "= fused " in out
    code, _, err = run_cli(capsys, "opt", str(tmp_path / "model.ir"), "-p", "lower")
    assert code == 2 and "wafer opt runs graph passes" in err


def test_passes_command_lists_every_pass_and_option(capsys):
    code, out, _ = run_cli(capsys, "passes")
    assert code == 0
    for name, cls in PASSES.items():
        assert f"  {name} " in out
        for f in cls.options():
            assert f"{f.name}=" in out
    assert "Default pipeline: canonicalize" in out


_NAMES = st.sampled_from(sorted(PASSES) + ["bogus", "Fuse", ""])
_VALUES = st.sampled_from(["true", "false", "0", "64", "-3", "1.5", "pipelined", "streaming", "", "x=y", "{", "}"])
_KEYS = st.sampled_from(["epilogues", "prologues", "chunk", "mode", "nope", ""])
_ITEMS = st.builds(lambda n, kv: n + ("{" + ",".join(f"{k}={v}" for k, v in kv) + "}" if kv else ""),
                   _NAMES, st.lists(st.tuples(_KEYS, _VALUES), max_size=3))


@given(st.lists(_ITEMS, max_size=6).map(",".join))
@settings(max_examples=300, deadline=None)
def test_any_pipeline_string_parses_and_prints_back_or_is_a_usage_error(text):
    try:
        passes = parse_pipeline(text)
    except UsageError as e:
        assert "\n" not in str(e)
        return
    assert spec(parse_pipeline(spec(passes))) == spec(passes)
    try:
        check_stages(passes)
    except UsageError as e:
        assert "\n" not in str(e)
