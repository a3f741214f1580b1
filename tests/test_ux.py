"""What a new user meets first: `wafer` alone, --help, mistakes caught at once (before torch is
imported), a quiet stderr by default, the README's examples, and a readable mesh.png."""

import argparse
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from waferscale.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _commands() -> dict[str, argparse.ArgumentParser]:
    p = build_parser()
    (sub,) = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_wafer_alone_lists_the_commands(capsys):
    code, out, err = run_cli(capsys)
    assert code == 2 and out == ""
    for name in _commands():
        assert f"\n    {name}" in err, name
    assert err.rstrip().splitlines()[-1] == "wafer: error: give a command (`wafer COMMAND --help` for its options)"


def _help_entries(text: str) -> dict[str, str]:
    """Each option of a --help text (by its last spelling, e.g. --batch) with its help text."""
    entries, current = {}, None
    for line in text.split("\n"):
        if line.startswith("  -"):
            head, _, rest = line.strip().partition("  ")
            current = head.split(", ")[-1].split(" ")[0]
            entries[current] = rest.strip()
        elif current is not None and line.startswith("   ") and line.strip():
            entries[current] = (entries[current] + " " + line.strip()).strip()
        elif not line.strip():
            current = None
    return entries


@pytest.mark.parametrize("command", [None, *_commands()])
def test_every_option_has_help_text_and_shows_its_default(capsys, monkeypatch, command):
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as e:
        main([command, "--help"] if command else ["--help"])
    assert e.value.code == 0
    entries = _help_entries(capsys.readouterr().out)
    parser = _commands()[command] if command else build_parser()
    options = [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]
    assert options
    for a in options:
        text = entries.get(a.option_strings[-1])
        assert text, f"{a.option_strings[-1]} of `wafer {command or ''}` has no help text"
        if not (a.default is None or a.default is False or a.default is argparse.SUPPRESS):  # 0 is a default
            assert "default" in text, f"{a.option_strings[-1]} of `wafer {command}` does not show its default"
    if command == "compile":
        for flag in ("--batch", "--prompt-len", "--new-tokens"):
            assert len(entries[flag]) > 12, entries[flag]
        assert "(default 1)" in entries["--batch"] and "(default 0)" in entries["--seed"]


# Mistakes a user makes in the first minute: each one line, found before torch (or transformers)
# is imported, i.e. before seconds of imports and a trace.
FAST_ERRORS = [
    (["compile", "nosuchmodel"], "unknown model 'nosuchmodel'"),
    (["compile", "cerebras-gpt-11m"], "did you mean cerebras-gpt-111m"),
    (["compile", "tiny", "--target", "nosuch"], "unknown target 'nosuch'"),
    (["compile", "tiny", "--target", "mesh:0x4"], "impossible mesh"),
    (["compile", "tiny", "--sparsity", "1.5"], "--sparsity 1.5 must be in (0, 1]"),
    (["compile", "tiny", "--target", "wse2", "--train", "--sparsity", "0"], "--sparsity 0.0 must be in (0, 1]"),
    (["compile", "tiny", "--batch", "0"], "--batch and --seq must be at least 1"),
    (["compile", "tiny", "--seed", "-1"], "--seed = -1 is out of range"),
    (["compile", "tiny", "--generate", "--target", "wse2", "--prompt-len", "0", "--new-tokens", "4"],
     "--prompt-len must be at least 1"),
    (["compile", "tiny", "--train", "--target", "wse2", "--systems", "0"], "--systems = 0 is out of range"),
    (["compile", "tiny", "--train", "--target", "wse2", "--lora", "4", "--lora-alpha", "nan"],
     "--lora-alpha nan must be a number above 0"),
    (["compile", "tiny", "--print-ir-after=fuse"], "(the passes that run: canonicalize); fuse runs with --target"),
    (["compile", "tiny", "-p", "canonicalize,frobnicate"], "unknown pass 'frobnicate'"),
    (["compile", "tiny", "--mode", "streaming"], "--mode streaming is the mode of placement on a machine"),
    (["run", "nope"], "unknown model 'nope'"),
    (["run", "tiny", "--train", "--steps", "0"], "--steps = 0 is out of range"),
    (["run", "tiny", "--tol", "-1"], "--tol -1.0 must be a number from 0"),
    (["bench", "--target", "nosuch"], "unknown target 'nosuch'"),
]


def test_name_and_number_mistakes_fail_before_torch_is_imported(tmp_path):
    """One subprocess for all the cases (a fresh interpreter, so sys.modules says what each case
    imported): each is exit 2 with one line, torch and transformers never imported, nothing written."""
    code = (
        "import json, sys\n"
        "from waferscale.cli import main\n"
        "results = []\n"
        f"for argv in {json.dumps([a for a, _ in FAST_ERRORS])}:\n"
        "    rc = main(argv + (['-o', sys.argv[1]] if argv[0] in ('compile', 'bench') else []))\n"
        "    results.append((rc, [m for m in ('torch', 'transformers') if m in sys.modules]))\n"
        "print(json.dumps(results))\n"
    )
    out = tmp_path / "never"
    p = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=120,
                       cwd=ROOT)
    assert p.returncode == 0, p.stderr
    results = json.loads(p.stdout)
    lines = p.stderr.strip().split("\n")
    assert len(lines) == len(FAST_ERRORS), p.stderr
    for (argv, message), (rc, heavy), line in zip(FAST_ERRORS, results, lines):
        assert rc == 2 and heavy == [], (argv, rc, heavy)
        assert line.startswith("wafer: error: ") and message in line, (argv, line)
    assert not out.exists()


def test_the_api_checks_options_before_the_trace(monkeypatch):
    import waferscale
    from waferscale import sources
    from waferscale.errors import UsageError

    def no_trace(*a, **kw):
        raise AssertionError("traced before the options were checked")

    monkeypatch.setattr(sources, "trace_lm", no_trace)  # where every mode traces (sources.trace)
    with pytest.raises(UsageError, match=r"density=1.5 must be in \(0, 1\]"):
        waferscale.compile("tiny", sparsity=1.5)
    with pytest.raises(UsageError, match="the passes that run: canonicalize"):
        waferscale.compile("tiny", print_ir_after="fuse")
    with pytest.raises(UsageError, match="--compile-to route: the pipeline has no pass"):
        waferscale.compile("tiny", target="wse2", compile_to="route", pipeline="canonicalize,fuse")


def test_print_ir_after_fuse_as_the_readme_writes_it(capsys, tmp_path):
    readme = (ROOT / "docs" / "guide.md").read_text()  # the README's guide, moved
    (line,) = [x for x in readme.splitlines() if "--print-ir-after=fuse" in x and x.startswith("wafer compile")]
    argv = line.split("#")[0].split()[1:]
    assert argv == ["compile", "MODEL", "--target", "T", "--print-ir-after=fuse"]
    argv = [{"MODEL": "tiny", "T": "mesh:32x32"}.get(a, a) for a in argv]
    code, _, err = run_cli(capsys, *argv, "--seq", "16", "-q", "-o", str(tmp_path / "ok"))
    assert code == 0, err
    assert [p.name for p in (tmp_path / "ok" / "ir").iterdir()] == ["02-fuse.ir"]
    # Without --target, fuse does not run: one line naming the passes that do and what to add.
    code, _, err = run_cli(capsys, "compile", "tiny", "--seq", "16", "--print-ir-after=fuse", "-q",
                           "-o", str(tmp_path / "never"))
    assert code == 2 and err.count("\n") == 1
    assert "(the passes that run: canonicalize); fuse runs with --target" in err
    assert not (tmp_path / "never").exists()


def test_default_stderr_is_a_few_lines_and_v_shows_the_details(capsys, tmp_path):
    argv = ["compile", "tiny", "--seq", "16", "--target", "mesh:32x32"]
    code, out, err = run_cli(capsys, *argv, "-o", str(tmp_path / "a"))
    assert code == 0, err
    lines = err.splitlines()
    assert 2 <= len(lines) <= 5, err  # tracing, traced, placed
    assert "\r" not in err and "band height" not in err and "wrote " not in err  # stderr is not a terminal here
    assert "placed on mesh:32x32" in err and "mesh:32x32 (layer-pipelined)" in out
    for verbose in (["-v", *argv], [*argv, "-v"]):  # before or after the command
        code, _, err = run_cli(capsys, *verbose, "-o", str(tmp_path / "b"))
        assert code == 0, err
        assert "band height" in err and "pass fuse{" in err and "wrote " in err and len(err.splitlines()) > 10
    code, _, err = run_cli(capsys, *argv, "-q", "-o", str(tmp_path / "c"))
    assert code == 0 and err == ""


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_details_are_one_status_line_on_a_terminal_and_nothing_elsewhere():
    from waferscale.cli.console import Progress

    for stream in (_Terminal(), io.StringIO()):
        log = Progress(stream=stream)
        log("tracing tiny")
        for i in range(50):
            log(f"band height {i}: slowest stage {i} cycles/sample")
        log("simulating: 3/26 kernel chunks")
        log("placed on wse2")
        log.close()
        text = stream.getvalue()
        milestones = [x.rsplit("\r", 1)[-1] for x in text.split("\n")[:-1]]  # what stays on screen
        assert [x.split("] ", 1)[1] for x in milestones] == ["tracing tiny", "placed on wse2"], text
        if isinstance(stream, _Terminal):
            assert "\r" in text and "band height 0" in text  # drawn in place
            assert text.count("\n") == 2  # the two milestones; the status line never adds a line
            assert text.count("band height") < 10  # at most ten redraws a second
        else:
            assert text.count("\n") == 2 and "\r" not in text and "band" not in text


def test_a_long_pe_level_run_shows_its_cycles_on_a_terminal(capsys, monkeypatch):
    """`wafer simulate-kernel --level pe`: a bar of the cycles simulated against the tile level's
    estimate on a terminal, erased before the result; nothing of it elsewhere. (The tree's cycle loops
    report their cycles; the compiled loop, which takes seconds at most, does not: it is kept out.)"""
    from waferscale.runtime import pe_tree_events

    monkeypatch.setattr(pe_tree_events, "JIT_HOP_MAX_CORES", 0)
    argv = ["simulate-kernel", "gemv", "--k", "1024", "--n", "1024", "--mesh", "16x16,core=wse3", "--reduce", "tree",
            "--level", "pe"]
    term, captured = _Terminal(), sys.stderr
    monkeypatch.setattr(sys, "stderr", term)
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "simulating: " in term.getvalue() and "1024/2489 PE-level cycles" in term.getvalue()  # a bar
    assert "\n" not in term.getvalue()  # the status line never adds a line
    assert "pe level:   2489 cycles" in out and "simulating" not in out
    monkeypatch.setattr(sys, "stderr", captured)
    code, out, err = run_cli(capsys, *argv)
    assert code == 0 and err == "" and "pe level:   2489 cycles" in out


def test_the_sweep_documents_density_as_it_works():
    from waferscale.studies.sweep_spec import parse_spec

    helps = _help_entries_of("sweep")
    assert "(0, 1]" in helps["--density"] and "1.0 only" not in helps["--density"]
    for f in ("README.md", "docs/studies.md", "examples/sweep.yaml"):
        text = (ROOT / f).read_text()
        assert "issue 12" not in text and "1.0 only" not in text and "only 1.0" not in text, f
    spec = parse_spec({"model": "tiny", "mesh": "32x32", "density": [1.0, 0.5]})
    assert sorted(p.density for p in spec.points()) == [0.5, 1.0]


def _help_entries_of(command: str) -> dict[str, str]:
    return _help_entries(_commands()[command].format_help())


def test_kernel_labels_go_where_they_fit():
    from waferscale.report.mesh_plot import _font, kernel_labels, label_texts

    font = _font(14)
    assert label_texts("transformer.h.0.mlp.c_fc/layernorm+linear+gelu") == [
        "h.0.mlp.c_fc/layernorm+linear+gelu", "h.0.mlp.c_fc", "c_fc"]
    names = {0: "transformer.h.0.attn.c_attn/layernorm+linear", 1: "transformer.h.0.attn/attention",
             2: "lm_head/layernorm+linear"}
    boxes = {0: (0, 0, 400, 60), 1: (400, 0, 20, 400), 2: (420, 0, 3, 3)}
    labels = {x[4]: x[5] for x in kernel_labels(boxes, names, font)}
    assert labels == {"h.0.attn.c_attn/layernorm+linear": False, "h.0.attn/attention": True}


def test_the_sram_panel_shows_typical_usage():
    """The SRAM colours of the cores in use: light to dark up to the fullest core, so that the
    median core is neither black (as on a 0..capacity scale of a dark colour map) nor empty grey."""
    import waferscale
    from waferscale.report.mesh_plot import EMPTY, SRAM_CMAP, _arrays, _colour

    c = waferscale.compile("tiny", seq=16, target="mesh:32x32")
    _, sram, _, _ = _arrays(c.state)
    rgb = _colour(sram, SRAM_CMAP, 0, float(np.nanmax(sram)))
    used = np.isfinite(sram)
    luminance = (rgb[used] @ np.array([0.299, 0.587, 0.114]))
    assert np.median(luminance) > 60 and (rgb[used] != EMPTY).any(axis=1).all()
    assert luminance.max() - luminance.min() > 60  # kernels apart from each other


def test_the_readme_is_a_front_page_whose_links_lead_somewhere():
    """Under 250 lines, the two quick-start commands as they were, and every relative link of it and of
    docs/*.md names a file that exists (the guide, the design notes and the results moved to docs/)."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 250
    assert "make demo " in readme and "make test " in readme and "the first run installs" in readme
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for link in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if not link.startswith(("http://", "https://")):
                assert (doc.parent / link).exists(), f"{doc.name}: {link}"
