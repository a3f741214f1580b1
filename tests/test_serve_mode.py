"""Serving as a mode (``modes/serve.py``): registered, run from a spec, its report recording what
ran as every mode's does, and `wafer serve` a front over it (the same requests.jsonl)."""

import json

import pytest

from waferscale.cli.serve import serve_run
from waferscale.driver import compile_run
from waferscale.errors import UsageError
from waferscale.modes import MODES, RunSpec, get_mode

from .test_cli import run_cli

OPTIONS = {"rate": "3000", "requests": 12, "prompt_dist": "uniform:2,10", "output_dist": "uniform:1,6",
           "max_batch": 2, "chunk": 8, "max_context": 16}
ARGV = ("serve", "tiny", "--target", "mesh:32x32", "--rate", "3000", "--requests", "12", "--prompt-dist",
        "uniform:2,10", "--output-dist", "uniform:1,6", "--max-batch", "2", "--chunk", "8", "--max-context", "16",
        "--seed", "3", "-q")


def test_serve_is_a_registered_mode_with_the_face_of_the_others():
    assert "serve" in MODES
    m = get_mode("serve")
    assert m.name == "serve" and m.section == "serve" and m.graphs and m.own_report
    assert m.options["policy"] == "colocated" and m.options["max_batch"] == 16
    with pytest.raises(UsageError, match="has no option 'batchsize'"):
        m.resolve(RunSpec("tiny", "serve", {"batchsize": 2}, target="mesh:32x32"))
    with pytest.raises(UsageError, match="give the requests"):
        serve_run(RunSpec("tiny", "serve", {}, target="mesh:32x32"))
    with pytest.raises(UsageError, match="serve needs a target"):  # checked by the driver, as every mode
        compile_run(RunSpec("tiny", "serve", dict(OPTIONS)))


def test_a_serve_run_through_the_mode_is_wafer_serves(capsys, tmp_path):
    served = serve_run(RunSpec("tiny", "serve", dict(OPTIONS), target="mesh:32x32", seed=3))  # f16, 1 system: defaults
    code, out, err = run_cli(capsys, *ARGV, "-o", str(tmp_path))
    assert code == 0, err
    assert (tmp_path / "requests.jsonl").read_text() == served.files["requests.jsonl"]
    assert len(served.files["requests.jsonl"].splitlines()) == 12
    report = json.loads((tmp_path / "report.json").read_text())
    for key in ("version", "model", "target", "serve", "host"):  # the keys `wafer serve` wrote before the mode
        assert key in report
    run = report["run"]
    assert run["mode"] == "serve" and run["options"]["max_batch"] == 2 and run["seed"] == 3
    # --placement auto, one sequence at a time at this load: the latency placement (tests/test_serve_placement.py)
    assert report["serve"]["costs"]["all"]["placement_kind"] == "latency" and report["serve"]["placement"] == {
        "asked": "auto", "all": "latency"}
    assert set(run["executed"]) == {"all"}
    assert run["executed"]["all"].endswith(",lower,latency-placement,route,simulate")
    assert "fuse" in run["executed"]["all"] and report["mode"] == "latency (cores shared in time)"
    assert report["serve"]["costs"]["all"]["pipeline"] == run["executed"]["all"]
    assert json.loads(served.files["report.json"])["run"] == run


def test_the_command_lines_policies_are_the_modes():
    """cli/serve.py spells the policies out (importing the mode would import torch before a mistyped
    name could fail fast): they must stay the mode's."""
    from waferscale.cli import serve as cli_serve
    from waferscale.modes import serve as mode_serve

    assert cli_serve.POLICIES == mode_serve.POLICIES
    assert cli_serve.table is mode_serve.table and callable(cli_serve.build_policy)
