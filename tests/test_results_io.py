"""benchmarks/results_io.py's --render: a benchmark's page written again from its committed record is
the committed page, to the byte (so a page says what its JSON holds, and the shared heading and render
branch changed no benchmark's output)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
RENDERED = ["decode", "energy", "generate", "waferllm_mesh", "gpt_oss", "moe", "quantization"]


def bench_module(name: str, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", RENDERED)
def test_render_writes_the_committed_page_again(name, tmp_path, monkeypatch):
    mod = bench_module(name, monkeypatch)
    import results_io

    shutil.copy(BENCH / "results" / f"{name}.json", tmp_path)
    monkeypatch.setattr(results_io, "RESULTS", tmp_path)
    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--render"])
    with pytest.raises(SystemExit) as e:
        mod.main()
    assert e.value.code == 0
    assert (tmp_path / f"{name}.md").read_text() == (BENCH / "results" / f"{name}.md").read_text()
    assert (tmp_path / f"{name}.json").read_text() == (BENCH / "results" / f"{name}.json").read_text()


def test_heading_is_the_title_then_the_command_and_machine(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    from results_io import heading

    assert heading("T", {"command": "python benchmarks/x.py --a 1", "machine": "m"}) == \
        "# T\n\n`python benchmarks/x.py --a 1` on m"
