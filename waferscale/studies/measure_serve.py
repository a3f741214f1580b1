"""A ``wafer sweep`` point of mode: serve: `wafer serve` on synthetic Poisson requests at the point's
rate, its row the measure columns (``measure.KEYS``) where they apply and the serving figures:
TTFT, TPOT and end-to-end percentiles, output tokens/s, goodput.

The step costs (placement and the simulator's cost grid, ``serve/wafer.py``) are what a point
costs; the points of one (model, target, systems, policy, split, max batch, context) share them in
this process (kept in ``_COSTS``): a sweep of rates builds the grid once where its points run in
one process (``--workers 0``), once per worker otherwise.

Row fields: ``tokens_per_s`` the output tokens/s, ``latency_s`` the TTFT p50, ``seconds`` the TPOT
p50, ``cores`` every core of the systems, ``compile_s`` the time to build the cost grid (0 when it
was shared)."""

from __future__ import annotations

import argparse
import time

from ..errors import WaferError

PROMPT, OUTPUT = "uniform:64,512", "uniform:16,256"  # `wafer serve`'s defaults
_COSTS: dict[tuple, object] = {}


def _policy(task: dict, max_context: int):
    from ..serve.build import build_policy

    key = (task["model"], task["target"], task["systems"], task["policy"], task["split"], task["max_batch"],
           max_context, task["dtype"])
    if key in _COSTS:
        return _COSTS[key].fresh(), 0.0
    ns = argparse.Namespace(model=task["model"], target=task["target"], systems=task["systems"],
                            policy=task["policy"], split=task["split"], max_batch=task["max_batch"], chunk=512,
                            dtype=task["dtype"], seed=0, draft=None)
    t0 = time.perf_counter()
    policy, _ = build_policy(ns, max_context, lambda msg: None)
    _COSTS[key] = policy
    return policy.fresh(), time.perf_counter() - t0


def measure_serve(task: dict, *, seq: int) -> dict:
    """The row of one serve point; a user error (does not fit) is a failed row, as in ``measure``."""
    from ..backends.machine import get_machine
    from ..serve.loop import serve
    from ..serve.trace import synthetic

    row = {"model": task["model"], "target": task["target"], "batch": task["max_batch"], "seq": seq, "pipeline": ""}
    t0 = time.perf_counter()
    try:
        prompt = f"fixed:{task['prompt_len']}" if task["prompt_len"] else PROMPT
        output = f"fixed:{task['new_tokens']}" if task["new_tokens"] else OUTPUT
        reqs = synthetic(task["rate"], task["requests"], prompt=prompt, output=output, seed=0)
        max_context = -(-max(r.prompt + r.output for r in reqs) // 64) * 64
        policy, built = _policy(task, max_context)
        s = serve(reqs, policy, slo_ttft=task["slo_ttft"], slo_tpot=task["slo_tpot"]).summary()
    except WaferError as e:
        return row | {"ok": False, "error": str(e).splitlines()[0], "compile_s": round(time.perf_counter() - t0, 3)}
    q = lambda key, p: (s.get(key) or {}).get(p)  # noqa: E731
    m = get_machine(task["target"])
    return row | {
        "mode": "serve", "ok": True, "error": "", "compile_s": round(built, 3), "cores": m.cores * task["systems"],
        "latency_s": q("ttft_seconds", "p50"), "seconds": q("tpot_seconds", "p50"),
        "tokens_per_s": s.get("output_tokens_per_second"), "steady_tokens_per_s": s.get("output_tokens_per_second"),
        "bound": "", "ttft_p50_s": q("ttft_seconds", "p50"), "ttft_p90_s": q("ttft_seconds", "p90"),
        "ttft_p99_s": q("ttft_seconds", "p99"), "tpot_p50_s": q("tpot_seconds", "p50"),
        "tpot_p90_s": q("tpot_seconds", "p90"), "tpot_p99_s": q("tpot_seconds", "p99"),
        "e2e_p99_s": q("e2e_seconds", "p99"), "goodput_rps": s.get("goodput_requests_per_second"),
        "completed": s["completed"], "rejected": s["rejected"], "queue_max": s.get("queue_max", 0),
        "pass_seconds": {"cost_grid": round(built, 4), "serve": round(time.perf_counter() - t0 - built, 4)},
    }
