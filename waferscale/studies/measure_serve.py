"""A ``wafer sweep`` point of mode: serve: the mode ``serve`` run by the driver
(``driver.compile_run``, as `wafer serve` runs it) on synthetic Poisson requests at the point's
rate; its row the measure columns (``measure.KEYS``) where they apply and the serving figures:
TTFT, TPOT and end-to-end percentiles, output tokens/s, goodput.

The step costs (placement and the simulator's cost grid, ``serve/wafer.py``) are what a point
costs; the points of one (model, target, systems, policy, split, max batch, context) share them in
this process (the mode keeps the latest it built: ``modes/serve.py`` ``_built``): a sweep of rates
builds the grid once where its points run in one process (``--workers 0``), once per worker
otherwise.

Row fields: ``tokens_per_s`` the output tokens/s, ``latency_s`` the TTFT p50, ``seconds`` the TPOT
p50, ``cores`` every core of the systems, ``compile_s`` the time to build the cost grid (0 when it
was shared), ``pipeline`` each engine's executed pipeline (``run.executed``, as ``measure.row_of``)."""

from __future__ import annotations

import time

from ..errors import WaferError

PROMPT, OUTPUT = "uniform:64,512", "uniform:16,256"  # `wafer serve`'s defaults


def serve_spec(task: dict):
    """The run spec of a serve point: `wafer serve`'s defaults but for the point's keys."""
    from ..modes import RunSpec

    options = {"rate": repr(float(task["rate"])), "requests": task["requests"],
               "prompt_dist": f"fixed:{task['prompt_len']}" if task["prompt_len"] else PROMPT,
               "output_dist": f"fixed:{task['new_tokens']}" if task["new_tokens"] else OUTPUT,
               "policy": task["policy"], "max_batch": task["max_batch"], "chunk": 512,
               "slo_ttft": task["slo_ttft"], "slo_tpot": task["slo_tpot"]}
    if task.get("placement"):
        options["placement"] = task["placement"]
    if task.get("split") is not None:
        options["split"] = task["split"]
    return RunSpec(task["model"], "serve", options, target=task["target"], systems=task["systems"],
                   dtype=task["dtype"], seed=0, execution=task.get("execution"))


def measure_serve(task: dict, *, seq: int) -> dict:
    """The row of one serve point; a user error (does not fit) is a failed row, as in ``measure``."""
    from ..backends.machine import get_machine
    from ..driver import compile_run

    row = {"model": task["model"], "target": task["target"], "batch": task["max_batch"], "seq": seq, "pipeline": ""}
    t0 = time.perf_counter()
    try:
        report = compile_run(serve_spec(task)).report
    except WaferError as e:
        return row | {"ok": False, "error": str(e).splitlines()[0], "compile_s": round(time.perf_counter() - t0, 3)}
    s, built = report["serve"]["summary"], report["host"]["cost_grid_seconds"]
    q = lambda key, p: (s.get(key) or {}).get(p)  # noqa: E731
    m = get_machine(task["target"])
    return row | {
        "pipeline": ";".join(f"{k}:{v}" for k, v in report["run"]["executed"].items()),
        "mode": "serve", "ok": True, "error": "", "compile_s": round(built, 3), "cores": m.cores * task["systems"],
        "latency_s": q("ttft_seconds", "p50"), "seconds": q("tpot_seconds", "p50"),
        "tokens_per_s": s.get("output_tokens_per_second"), "steady_tokens_per_s": s.get("output_tokens_per_second"),
        "bound": "", "ttft_p50_s": q("ttft_seconds", "p50"), "ttft_p90_s": q("ttft_seconds", "p90"),
        "ttft_p99_s": q("ttft_seconds", "p99"), "tpot_p50_s": q("tpot_seconds", "p50"),
        "tpot_p90_s": q("tpot_seconds", "p90"), "tpot_p99_s": q("tpot_seconds", "p99"),
        "e2e_p99_s": q("e2e_seconds", "p99"), "goodput_rps": s.get("goodput_requests_per_second"),
        "completed": s["completed"], "rejected": s["rejected"], "queue_max": s.get("queue_max", 0),
        "pass_seconds": {"cost_grid": round(built, 4), "serve": round(report["host"]["serve_seconds"], 4)},
    }
