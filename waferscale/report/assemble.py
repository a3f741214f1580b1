"""The one assembler of ``report.json``, for every mode: the common sections (model, ir,
pipeline, compile, program, target and machine, the wafer's placement and time), the mode's own
section, the ``run`` section (the complete spec of what ran, from which ``wafer replay`` compiles
it again), ``schema_version`` (of ``report.schema.json``), and ``host``: the wall-clock and memory
figures of this compile on this machine, the only part of a report that two runs of one spec do
not share. The older wall-clock keys under ``compile`` stay beside it."""

from __future__ import annotations

import copy
import json
from importlib import resources

from ..passes.base import SIMULATED
from ..version import __version__
from .wafer import wafer_report

SCHEMA_VERSION = 1


def assemble(*, run: dict, outcome, machine, section: str | None, baseline: dict | None = None) -> dict:
    """report.json of a run (``modes.base.Outcome``): common sections, then the mode's."""
    state, g = outcome.state, outcome.graph
    c = outcome.compile  # what a mode leaves out of it: its passes' time counts as ours
    c.setdefault("passes", [])
    c.setdefault("our_seconds", c.get("import_seconds", 0.0) + c.get("analyze_seconds", 0.0)
                 + sum(p["seconds"] for p in c["passes"]))
    report = {
        "schema_version": SCHEMA_VERSION,
        "version": __version__,
        "model": outcome.model,
        "ir": {"ops": g.op_counts(), "op_count": len(g.ops), "param_count": len(g.params)},
        "pipeline": outcome.pipeline,
        "compile": outcome.compile,
        "run": run,
    }
    program = outcome.program if outcome.program is not None else state.program
    if program is not None:
        report["program"] = {"kernels": len(program.kernels), "flows": len(program.flows),
                             "weight_bytes": program.weight_bytes}
    if machine is not None:
        report["target"], report["machine"] = machine.name, machine.as_dict()
    if state.stage == SIMULATED:
        report.update(wafer_report(state))
    if section is not None and outcome.section is not None:
        report[section] = outcome.section
    report.update(outcome.extra)
    if baseline is not None:
        report["baseline"] = baseline
    return report


def _wall_clock(key: str) -> bool:
    return key.endswith("seconds") or "rss" in key or key.endswith("_bytes_peak")


def stamp_host(report: dict, seconds: float, peak_rss: int) -> None:
    """Set the compile's end-to-end time and peak memory, in ``host`` and in the older keys."""
    c = report["compile"]
    c["seconds"], c["peak_rss_bytes"] = seconds, peak_rss
    report["host"] = {
        "seconds": seconds, "peak_rss_bytes": peak_rss,
        "compile": {k: v for k, v in c.items() if _wall_clock(k) and k not in ("seconds", "peak_rss_bytes")},
        "pass_seconds": [p["seconds"] for p in c.get("passes", [])],
    }


def strip_host(report: dict) -> dict:
    """The report less what depends on the host and the moment (``host``, the wall-clock and memory
    keys under ``compile``, and a serve report's ``serve.timing`` and each engine's placement and grid
    seconds): what two runs of one spec share byte for byte."""
    r = copy.deepcopy(report)
    r.pop("host", None)
    c = r.get("compile", {})
    for k in [k for k in c if _wall_clock(k)]:
        del c[k]
    for p in c.get("passes", []):
        p.pop("seconds", None)
    sv = r.get("serve")
    if isinstance(sv, dict):  # serve's own report: its timing, each engine's placement and grid seconds
        sv.pop("timing", None)
        for cost in (sv.get("costs") or {}).values():
            if isinstance(cost, dict):
                cost.pop("place_seconds", None)
                cost.pop("grid_seconds", None)
    return r


def schema() -> dict:
    return json.loads(resources.files(__package__).joinpath("report.schema.json").read_text())


def validate(report: dict) -> None:
    """Raise ``jsonschema.ValidationError`` where the report does not follow report.schema.json."""
    import jsonschema

    jsonschema.validate(report, schema())
