"""Graph passes as text in, text out: each tests/passes/*.ir holds a graph, a ``# RUN:`` line naming
the pipeline, and FileCheck ``# CHECK`` lines (LLVM's syntax, checked by the ``filecheck`` package)
that the output of ``wafer opt FILE -p PIPELINE`` must match. Every output also parses back to
itself, and computes what its input computed."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from waferscale.cli import main
from waferscale.ir import parse, print_graph, verify
from waferscale.runtime.interpreter import run

FILES = sorted((Path(__file__).parent / "passes").glob("*.ir"))
RUN = re.compile(r"^# RUN: wafer opt %s -p (\S+) \| filecheck %s$", re.M)


def _opt(capsys, path: Path) -> str:
    pipeline = RUN.search(path.read_text()).group(1)
    code = main(["opt", str(path), "-p", pipeline])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_pass_output_matches_its_checks(capsys, path):
    out = _opt(capsys, path)
    r = subprocess.run([sys.executable, "-m", "filecheck", str(path)], input=out, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert print_graph(verify(parse(out))) == out  # the printed form parses back to itself


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_pass_output_computes_what_its_input_did(capsys, path):
    before = parse(path.read_text())
    after = parse(_opt(capsys, path))
    rng = np.random.default_rng(0)
    feed = {v.name: rng.standard_normal(v.type.shape).astype(v.type.np_dtype) for v in before.inputs}
    weights = {v.name: rng.standard_normal(v.type.shape).astype(v.type.np_dtype) for v in before.params}
    for want, got in zip(run(before, feed, weights), run(after, feed, weights)):
        tol = 2e-3 if want.dtype == np.float16 else 1e-5
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=tol, atol=tol)


def test_every_pass_file_has_a_run_line():
    assert len(FILES) >= 8
    for path in FILES:
        assert RUN.search(path.read_text()), f"{path.name} has no '# RUN: wafer opt %s -p ... | filecheck %s' line"
