"""One design point measured: a traced graph run through a pipeline on a target, reduced to the
figures that ``wafer bench`` and ``wafer sweep`` tabulate (one flat row per point).

The graph is traced once per (model, batch, seq) by the caller and reused across pipelines and
machines: a point costs its passes, never another ``torch.export``.
"""

from __future__ import annotations

import time

from ..errors import WaferError
from ..ir.graph import Graph
from ..passes.base import CompileState
from ..passes.pipeline import parse_pipeline, run_pipeline
from ..report.wafer import wafer_report

# The row's columns, in order (a failed point has the first ones and ``error``).
KEYS = ("model", "target", "batch", "seq", "pipeline", "mode", "ok", "error", "compile_s", "kernels", "flows",
        "cores", "cores_used", "sram_peak_bytes_per_core", "flow_bytes", "stream_bytes", "latency_s", "seconds",
        "tokens_per_s", "steady_tokens_per_s", "mfu", "bound", "tokens_per_joule", "average_watts",
        # mode: serve's (measure_serve.py); empty for the other modes
        "ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "tpot_p50_s", "tpot_p90_s", "tpot_p99_s", "e2e_p99_s",
        "goodput_rps", "completed", "rejected", "queue_max")


def measure(graph: Graph, pipeline: str, *, model: str, batch: int, seq: int, target: str) -> dict:
    """The row of one point. A user error (does not fit, impossible mesh, bad pipeline) is a row
    with ``ok`` false and its one-line reason, never an exception."""
    from ..backends.machine import get_machine

    row = {"model": model, "target": target, "batch": batch, "seq": seq, "pipeline": pipeline}
    t0 = time.perf_counter()
    try:
        passes = parse_pipeline(pipeline)
        row["pipeline"] = ",".join(p.spec() for p in passes)
        state = CompileState(graph, samples=batch, tokens=seq, machine=get_machine(target))
        state, records = run_pipeline(state, passes)
        if state.sim is None:
            raise WaferError(f"pipeline {row['pipeline']!r} does not simulate: end it with ...,route,simulate")
        rep = wafer_report(state)
    except WaferError as e:
        return row | {"ok": False, "error": str(e).splitlines()[0], "compile_s": round(time.perf_counter() - t0, 3)}
    t, pl, m = rep["time"], rep["placement"], state.machine
    bounds = t["kernels_by_bound"]
    row |= {
        "mode": rep["mode"], "ok": True, "error": "", "compile_s": round(sum(r.seconds for r in records), 3),
        "kernels": pl["kernels"], "flows": pl["flows"], "cores": m.cores, "cores_used": pl["cores_used"],
        "sram_peak_bytes_per_core": pl["sram_peak_bytes_per_core"], "flow_bytes": pl["flow_bytes"],
        "stream_bytes": t["stream_bytes"], "latency_s": t["latency_seconds"], "seconds": t["seconds"],
        "tokens_per_s": t["tokens_per_s"], "steady_tokens_per_s": t["steady_tokens_per_s"], "mfu": t["mfu"],
        "bound": max(bounds, key=lambda b: (bounds[b], b)) if bounds else "",
        # the energy section's (report/energy.py): a sweep can rank its points by tokens per joule
        "tokens_per_joule": rep["energy"]["tokens_per_joule"], "average_watts": rep["energy"]["average_watts"],
    }
    row["pass_seconds"] = {r.name: round(r.seconds, 4) for r in records}
    return row


def measure_run(run, *, model: str, batch: int, seq: int, target: str) -> dict:
    """The row of one point compiled by the driver (any mode, any systems): its figures are its
    report's (``row_of``). A user error is a failed row, as in ``measure``."""
    from ..driver import compile_run

    row = {"model": model, "target": target, "batch": batch, "seq": seq, "pipeline": run.pipeline or ""}
    t0 = time.perf_counter()
    try:
        report = compile_run(run).report
    except WaferError as e:
        return row | {"ok": False, "error": str(e).splitlines()[0], "compile_s": round(time.perf_counter() - t0, 3)}
    return row | row_of(report)


def row_of(report: dict) -> dict:
    """A report's figures as a row of ``KEYS``: the wafer's placement and time where the report has
    them, the mode's headline time and rate over them (train: the step; generate: a decode token),
    ``cores`` the cores of every system the run takes."""
    run, m = report["run"], report["machine"]
    systems = run["systems"] or 1
    pl, t = report.get("placement", {}), report.get("time", {})
    bounds = t.get("kernels_by_bound", {})
    row = {
        "pipeline": run["executed"] and ";".join(f"{k}:{v}" for k, v in run["executed"].items()),
        "mode": report.get("mode", ""), "ok": True, "error": "", "compile_s": round(report["compile"]["seconds"], 3),
        "kernels": report["program"]["kernels"], "flows": report["program"]["flows"], "cores": m["cores"] * systems,
        "cores_used": pl.get("cores_used"), "sram_peak_bytes_per_core": pl.get("sram_peak_bytes_per_core"),
        "flow_bytes": pl.get("flow_bytes"), "stream_bytes": t.get("stream_bytes"),
        "latency_s": t.get("latency_seconds"), "seconds": t.get("seconds"), "tokens_per_s": t.get("tokens_per_s"),
        "steady_tokens_per_s": t.get("steady_tokens_per_s"), "mfu": t.get("mfu"),
        "bound": max(bounds, key=lambda b: (bounds[b], b)) if bounds else "",
    }
    if "systems" in report:  # a run over several systems: the whole run's figures
        s = report["systems"]
        row |= {"seconds": s["seconds"], "tokens_per_s": s["tokens_per_s"], "latency_s": s.get("latency_seconds"),
                "cores_used": sum(x["cores_used"] for x in s["detail"])}
    if "train" in report:
        tr = report["train"]
        row |= {"mode": tr["mode"], "seconds": tr["step_seconds"], "tokens_per_s": tr["tokens_per_s"],
                "steady_tokens_per_s": tr["tokens_per_s"], "mfu": tr["mfu"]}
    if "generate" in report:
        g = report["generate"]
        d = g["systems_detail"]
        row |= {"mode": "pipelined", "seconds": g["decode_seconds_per_token"], "latency_s": g["ttft_seconds"],
                "tokens_per_s": g["decode_tokens_per_second"], "steady_tokens_per_s": g["decode_tokens_per_second"],
                "cores_used": sum(x["cores_used"] for x in d),
                "sram_peak_bytes_per_core": max(x["sram_peak_bytes_per_core"] for x in d)}
    e = report.get("energy")  # none for a run split as a pipeline of systems in training
    row |= {"tokens_per_joule": e and e["tokens_per_joule"], "average_watts": e and e["average_watts"]}
    seconds: dict[str, float] = {}
    for p in report["compile"]["passes"]:  # a pass that ran on several graphs: its time on all of them
        seconds[p["name"]] = seconds.get(p["name"], 0.0) + p["seconds"]
    row["pass_seconds"] = {k: round(v, 4) for k, v in seconds.items()}
    return row
