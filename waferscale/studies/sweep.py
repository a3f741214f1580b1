"""``wafer sweep``: a design-space sweep, each point a compile and simulation, run in parallel on Ray.

The spec (``sweep_spec.py``) gives the points. Each (model, dtype, batch, seq) is traced once, in
the driver, on the meta device; its graph is put in Ray's object store and every point that shares
it runs as a Ray task calling ``measure`` (``measure.py``): a point costs its passes, never another
``torch.export``. ``ray.init()`` starts a local Ray by default (nothing to set up); ``address``
joins a running cluster instead, whose nodes need waferscale installed.

A point that fails (does not fit, impossible mesh, seq beyond the model's context) is a row with
``ok`` false and its one-line reason. Each finished point is appended to ``DIR/points.jsonl`` at
once, keyed by the point's id (a hash of its parameters), so a sweep that was interrupted and is
run again skips the points already there. The outputs are then written from the spec's points in
its order, whatever order they finished in, each file whole or not at all: ``sweep.csv`` (one row a
point), ``sweep.json`` (the spec and the rows), ``pareto.png`` (tokens/s against the mesh's cores
and its SRAM per core, the Pareto front marked) and ``sweep.parquet`` where pyarrow is installed.

A point that raises anything but a ``WaferError`` is a bug: it is a row too (``internal error:
...``), but it is not written to ``points.jsonl``, so the run after the fix computes it.
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import limits as L
from ..errors import UsageError, WaferError
from ..report.outputs import open_dir
from ..version import __version__
from .measure import measure, measure_run
from .sweep_outputs import COLUMNS, pareto, summary, table_rows, to_csv, write_outputs  # noqa: F401  (the sweep's names)
from .sweep_spec import Point, Spec

POINTS_FILE = "points.jsonl"
SWEEP_FILES = (POINTS_FILE, "sweep.csv", "sweep.json", "pareto.png", "serve.png", "sweep.parquet")  # all a sweep writes
TIMING = ("compile_s", "pass_seconds")  # the only fields that differ between two runs of one point
INTERNAL = "internal error: "


@dataclass
class SweepResult:
    rows: list[dict]  # one per point, in the spec's order
    resumed: int  # points read back from points.jsonl
    ran: int  # points computed now
    seconds: float
    workers: int
    files: list[Path] = field(default_factory=list)
    internal: list[str] = field(default_factory=list)  # tracebacks of the points that hit a bug

    @property
    def failed(self) -> int:
        return sum(not r["ok"] for r in self.rows)


def run_point(graph, point: dict) -> dict:
    """One point's row (what a Ray task runs). A user error is a failed row (``measure``); anything
    else is a bug, kept as a failed row marked ``internal error`` with its traceback."""
    try:
        where = {k: point[k] for k in ("model", "batch", "seq", "target")}
        if point.get("serve") is not None:  # mode: serve: `wafer serve` on synthetic requests
            from .measure_serve import measure_serve

            return measure_serve(point["serve"], seq=point["seq"])
        if point.get("run") is not None:  # a driven point: the driver compiles it, its row is its report's
            return measure_run(point["run"], **where)
        return measure(graph, point["pipeline"], **where)
    except Exception as e:  # one point's bug must not stop the sweep
        return _failed(point, f"{INTERNAL}{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                       traceback=traceback.format_exc())


def _failed(point: dict, error: str, **extra) -> dict:
    return {"model": point["model"], "target": point["target"], "batch": point["batch"], "seq": point["seq"],
            "pipeline": point["pipeline"], "ok": False, "error": error, **extra}


def _task(p: Point) -> dict:
    return {"model": p.model, "pipeline": p.pipeline, "batch": p.batch, "seq": p.seq, "target": p.target,
            "run": p.run_spec() if p.driven and p.run != "serve" else None,
            "serve": p.serve_task() if p.run == "serve" else None}


def read_points(path: Path) -> dict[str, dict]:
    """The rows already in points.jsonl, by point id. A line that is not JSON (a torn line, from a kill)
    is skipped; one that is not UTF-8 was not written by a sweep (it writes ASCII JSON): one error line."""
    from ..safe_read import JsonSyntaxError, iter_lines, loads_json

    done = {}
    if not path.exists():
        return done
    for number, line, _ in iter_lines(path, "sweep's points.jsonl", L.MAX_POINTS_FILE_BYTES, L.MAX_POINTS_LINE_BYTES):
        try:
            text = line.decode()
        except UnicodeDecodeError:
            raise UsageError(f"{path}: line {number:,} is not UTF-8 text, which `wafer sweep` never writes: was the "
                             "file edited? move it away or mend the line to resume") from None
        try:
            rec = loads_json(text, f"{path}: line {number:,}")
        except JsonSyntaxError:  # nesting too deep or a huge number are errors: a kill leaves neither
            continue
        if isinstance(rec, dict) and isinstance(rec.get("point"), str) and _resumable(rec.get("row")):
            done[rec["point"]] = rec["row"]
    return done


_NUMBERS = ("compile_s", "kernels", "flows", "cores", "cores_used", "sram_peak_bytes_per_core", "flow_bytes",
            "stream_bytes", "latency_s", "seconds", "tokens_per_s", "steady_tokens_per_s", "mfu")


def _resumable(row) -> bool:
    """A row of the shape ``measure`` gives (a line that is not is skipped, and its point runs again)."""
    if not isinstance(row, dict) or not isinstance(row.get("ok"), bool):
        return False
    if not isinstance(row.get("pass_seconds", {}), dict) or not isinstance(row.get("error", ""), str | None):
        return False
    def number(v) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool)

    if not all(number(row.get(k)) or row.get(k) is None for k in _NUMBERS):
        return False
    return not row["ok"] or (number(row.get("cores")) and number(row.get("tokens_per_s")))  # the Pareto front's


class _Appender:
    """Appends one JSON line per finished point to points.jsonl, flushed at once."""

    def __init__(self, path: Path):
        torn = False
        if path.exists() and path.stat().st_size:
            with open(path, "rb") as f:  # read_points has checked it is a regular file
                f.seek(-1, os.SEEK_END)
                torn = f.read(1) != b"\n"
        self.f = open(path, "a")
        if torn:  # a line cut short by a kill: end it, so that the next one is whole
            self.f.write("\n")

    def add(self, p: Point, row: dict) -> None:
        self.f.write(json.dumps({"point": p.id, "params": p.params(), "row": row, "version": __version__},
                                sort_keys=True) + "\n")
        self.f.flush()

    def close(self) -> None:
        self.f.close()


def _traces(groups: dict[tuple, list[Point]], put, log) -> Iterator[tuple[Point, Any, str]]:
    """Yields (point, graph handle or None, trace error) group by group, tracing each group's graph
    as it is reached, so the first points run while the next graph is traced."""
    from ..frontend.lm import trace_lm

    for key, points in groups.items():
        if key[0] == "driver":  # the driver traces it
            yield points[0], "", ""
            continue
        model, dtype, batch, seq = key
        try:
            t = trace_lm(model, batch=batch, seq=seq, dtype=dtype, weights="meta")
            handle, error = put(t.graph), ""
            log(f"traced {model} (batch {batch}, seq {seq}, {dtype}): {len(t.graph.ops)} ops, "
                f"{len(points)} point(s)")
        except WaferError as e:
            handle, error = None, str(e).splitlines()[0]
        for p in points:
            yield p, handle, error


def run_sweep(spec: Spec, out: str | Path, *, workers: int | None = None, address: str | None = None,
              use_ray: bool = True, log: Callable[[str], None] = lambda msg: None,
              progress: bool = False) -> SweepResult:
    """Run the points of ``spec`` not yet in ``out/points.jsonl`` and write the outputs.

    workers: Ray CPUs of the local instance (default: every CPU), or at most this many points at
    once on a cluster; 0 runs the points one by one in this process, without Ray (as use_ray=False).
    address: a Ray cluster to join (``ray://host:10001`` or ``host:6379``). A Ray this process has
    already started (``ray.init`` by the caller) is used as it is and left running."""
    import time

    t0 = time.perf_counter()
    out = Path(out)
    open_dir(out, "sweep", SWEEP_FILES)  # new, empty, or an earlier sweep's: never a directory we did not write
    points = spec.points()
    done = read_points(out / POINTS_FILE)
    rows = {p.id: done[p.id] for p in points if p.id in done}
    resumed = len(rows)
    todo: dict[tuple, list[Point]] = {}
    for p in points:
        if p.id not in rows:
            todo.setdefault(p.trace_key, []).append(p)
    n_todo = sum(len(v) for v in todo.values())
    if resumed:
        log(f"resuming: {resumed} of {len(points)} point(s) already in {out / POINTS_FILE}")
    internal: list[str] = []
    use_ray = use_ray and workers != 0
    n_workers = 1
    appender = _Appender(out / POINTS_FILE)
    bar = None
    try:
        if n_todo:
            from tqdm import tqdm

            # disable=None: a bar only on a terminal; in CI or a pipe its redraws would pile up
            bar = tqdm(total=n_todo, desc="sweep", unit="point", disable=None if progress else True, leave=False)
            say = log

            def log(msg: str) -> None:  # above the bar, not through it
                with tqdm.external_write_mode():
                    say(msg)

            def finish(p: Point, row: dict) -> None:
                tb = row.pop("traceback", None)
                if tb is None:
                    appender.add(p, row)
                else:
                    internal.append(f"point {p.id} ({p.target}, {p.model}):\n{tb}")
                rows[p.id] = row
                bar.update()

            if use_ray:
                n_workers = _run_ray(todo, finish, workers, address, log)
            else:
                for p, graph, error in _traces(todo, lambda g: g, log):
                    finish(p, run_point(graph, _task(p)) if not error else _failed(_task(p), error))
    finally:
        appender.close()
        if bar is not None:
            bar.close()
    ordered = [rows[p.id] for p in points]
    table = table_rows(points, ordered)
    files = write_outputs(spec, table, out)
    return SweepResult(table, resumed, n_todo, time.perf_counter() - t0, n_workers, files, internal)


def _run_ray(todo: dict[tuple, list[Point]], finish, workers: int | None, address: str | None, log) -> int:
    """Points as Ray tasks, at most twice the workers in flight; returns the workers used."""
    import logging

    try:
        import ray
    except ImportError:
        raise UsageError("wafer sweep runs its points on Ray, which is not installed: pip install -e '.[sweep]' "
                         "(or run without it: --no-ray)") from None
    started = not ray.is_initialized()
    if started and address:
        _check_reachable(address)
        try:
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        except Exception as e:  # Ray raises ConnectionError, RuntimeError or ValueError here
            raise UsageError(f"cannot join the Ray cluster at {address}: {str(e).strip().splitlines()[0]}") from None
    elif started:
        ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, logging_level=logging.ERROR,
                 log_to_driver=False)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        n = min(workers, cpus) if workers and (address or not started) else cpus
        log(f"ray: {'joined ' + address if address and started else 'local'}, {cpus} CPU(s), "
            f"up to {n} point(s) at once")
        remote = ray.remote(num_cpus=1, max_retries=0)(run_point)
        pending: dict = {}
        source = _traces(todo, ray.put, log)

        def submit() -> bool:
            item = next(source, None)
            if item is None:
                return False
            p, graph, error = item
            if error:
                finish(p, _failed(_task(p), error))
            else:
                pending[remote.remote(graph, _task(p))] = p
            return True

        more = True
        while more or pending:
            while more and len(pending) < 2 * n:
                more = submit()
            if not pending:
                continue
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                p = pending.pop(ref)
                try:
                    row = ray.get(ref)
                except ray.exceptions.RayError as e:  # the worker died (out of memory, killed)
                    row = _failed(_task(p), f"{INTERNAL}{type(e).__name__}: {str(e).splitlines()[0]}",
                                  traceback=str(e))
                finish(p, row)
        return n
    finally:
        if started:
            ray.shutdown()


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A quick TCP connect to HOST:PORT (Ray itself retries an unreachable cluster for minutes)."""
    import re
    import socket

    m = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)", address)
    if not m:  # "auto", or a form Ray resolves itself
        return
    try:
        socket.create_connection((m[1], int(m[2])), timeout=timeout).close()
    except OSError as e:
        raise UsageError(f"cannot join the Ray cluster at {address}: no answer from {m[1]} port {m[2]} "
                         f"({e.strerror or e}); is `ray start --head` running there?") from None
