"""The compiler driver: a run spec in, a report out.

``compile_run`` takes a ``RunSpec`` (the model, the mode and its options, the target, ...), asks the
mode's class (``modes/``, by name from the registry: the driver knows no mode of its own) to trace
its graphs and run its pipelines, assembles the report (``report/assemble.py``: every mode's, with
the ``run`` section that ``replay`` compiles again), and, where the mode asks for one, compiles the
baseline it is set beside as a second, named run. ``compile_model`` is the forward pass of
``waferscale.compile`` with its keyword arguments; ``write_compiled`` writes the output directory.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .backends.machine import get_machine
from .compiled import Compiled, peak_rss_bytes, write_compiled
from .errors import UsageError
from .ir import Graph
from .modes import Context, RunSpec, get_mode
from .passes import CompileState, parse_pipeline, run_pipeline
from .report.assemble import assemble, stamp_host, strip_host
from .sources import check_source

__all__ = ["Compiled", "RunSpec", "compile_model", "compile_run", "peak_rss_bytes", "replay", "run_passes",
           "write_compiled"]


def compile_run(run: RunSpec, log=lambda msg: None, ready=lambda: None) -> Compiled:
    """Compile one run: the mode's graphs through its pipelines, then the report. ``ready`` runs once
    the run is checked, before any work (a front's own checks: its output directory).

    A mode that makes its own report (``own_report``: ``serve``, one placed program per engine) runs
    here too, checked as every mode is: its result comes back as ``Compiled.outcome``, with its report
    (whose ``run`` records the spec and what executed, as every report's) and its files."""
    t0 = time.perf_counter()
    mode = get_mode(run.mode)
    run = mode.resolve(run)
    run.model = os.fspath(run.model) if isinstance(run.model, os.PathLike) else run.model
    check_source(run.model)
    machine = get_machine(run.target) if run.target is not None else None  # a bad target fails before any work
    mode.check(run)
    ready()
    ctx = Context(run, machine, log)
    out = mode.run(ctx)
    if mode.own_report:
        return Compiled(out.report, None, "", None, dict(out.files), t0, outcome=out)
    baseline = None
    second = mode.baseline(run)
    if second is not None:
        log(f"the baseline: {second.mode} {second.options}")
        base = compile_run(second, log).report
        baseline = {"run": base["run"], **({mode.section: base[mode.section]} if mode.section else {})}
    record = run.record() | {"executed": ctx.executed_pipelines()}
    report = assemble(run=record, outcome=out, machine=machine, section=mode.section, baseline=baseline)
    if baseline is not None:
        mode.compare(report, baseline)
    stamp_host(report, time.perf_counter() - t0, peak_rss_bytes())
    return Compiled(report, out.state, out.ir_text, out.traced, out.files, t0)


def compile_model(spec_, example_inputs=None, *, batch: int = 1, seq: int | None = None, dtype: str | None = None,
                  weights: str = "auto", seed: int = 0, frontend: str = "torch-export", target: str | None = None,
                  pipeline: str | None = None, print_ir_after: tuple[str, ...] = (), print_ir_after_all: bool = False,
                  compile_to: str | None = None, mode: str | None = None, sparsity: float | None = None,
                  quantize: str | None = None,
                  systems: int | None = None, split: str | None = None, log=lambda msg: None) -> Compiled:
    """A forward pass (mode ``inference``): ``mode`` here is the execution mode on the wafer (auto,
    pipelined, streaming), as in ``wafer compile --mode``; ``systems`` and ``split`` (data or pipeline)
    spread it over several systems (``modes/systems.py``)."""
    run = RunSpec(spec_, "inference", {"sparsity": sparsity, "quantize": quantize}, target=target,
                  execution=mode, batch=batch, seq=seq,
                  dtype=dtype, weights=weights, seed=seed, frontend=frontend, pipeline=pipeline,
                  compile_to=compile_to, print_ir_after=tuple(print_ir_after), print_ir_after_all=print_ir_after_all,
                  example_inputs=example_inputs, systems=systems, split=split)
    return compile_run(run, log)


def run_passes(graph: Graph, pipeline: str, *, batch: int = 1, seq: int = 1, target: str | None = None,
               weights=None, log=lambda msg: None) -> CompileState:
    """Run a pipeline on a graph of ``batch`` samples of ``seq`` tokens (on ``target`` for the wafer
    passes, with the model's ``weights`` if it has any) and return where it got: the graph, the
    weights (sparsify prunes them), and the program, placement, routing and simulation as far as the
    pipeline went."""
    machine = get_machine(target) if target is not None else None
    return run_pipeline(CompileState(graph, samples=batch, tokens=seq, machine=machine, weights=weights, log=log),
                        parse_pipeline(pipeline), log=log)[0]


def replay(src_dir: Path, log=lambda msg: None) -> tuple[Compiled, bool]:
    """Compile again the run recorded in src_dir/report.json; and whether the new report is the
    same as the recorded one but for ``host`` and the wall-clock keys."""
    try:
        old = json.loads((Path(src_dir) / "report.json").read_text())
    except OSError as e:
        raise UsageError(f"cannot read {src_dir}/report.json: {e.strerror}; pass a directory written by "
                         "`wafer compile -o DIR`") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UsageError(f"{src_dir}/report.json is not a JSON report: pass a directory written by "
                         "`wafer compile -o DIR`") from None
    if not isinstance(old, dict) or not isinstance(old.get("run"), dict):
        raise UsageError(f"{src_dir}/report.json has no run section: it was written by a waferscale before "
                         "replay (compile again)")
    c = compile_run(RunSpec.from_record(old["run"]), log)
    same = json.dumps(strip_host(c.report), sort_keys=True) == json.dumps(strip_host(old), sort_keys=True)
    return c, same
