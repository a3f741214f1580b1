"""The one store of serving metrics: what happened to every request, and the queue and KV-cache
occupancy over time. The scheduler and policies report events here; they keep no statistics.

Per request: TTFT (arrival to the first token, sampled at the end of its prefill), TPOT (the time
per output token after the first: (end - first token) / (output - 1)), end-to-end latency. Over
the run: their p50/p90/p99, output tokens/s (all completed requests' output tokens over the time
from the first arrival to the last completion), tokens/s per user (the mean of 1 / TPOT), goodput
(requests/s that meet both SLOs given, over the same time).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from .trace import Request

PERCENTILES = (50, 90, 99)
TIMELINE_POINTS = 256


@dataclass
class Row:
    req: Request
    admitted: float | None = None
    first: float | None = None
    end: float | None = None
    rejected: str | None = None


class Store:
    def __init__(self, requests: list[Request], slo_ttft: float | None = None, slo_tpot: float | None = None):
        self.rows = {r.id: Row(r) for r in requests}
        self.slo_ttft, self.slo_tpot = slo_ttft, slo_tpot
        self.samples: list[tuple[float, int, int]] = []  # (time, requests waiting, KV bytes in use)
        self.kv_capacity = 0
        self.kv_peak = 0
        self.steps = 0

    def admitted(self, rid: int, t: float) -> None:
        if self.rows[rid].admitted is None:
            self.rows[rid].admitted = t

    def first_token(self, rid: int, t: float) -> None:
        self.rows[rid].first = t

    def finished(self, rid: int, t: float) -> None:
        self.rows[rid].end = t

    def rejected(self, rid: int, reason: str) -> None:
        self.rows[rid].rejected = reason

    def sample(self, t: float, waiting: int, kv: int) -> None:
        self.samples.append((t, waiting, kv))
        self.kv_peak = max(self.kv_peak, kv)

    @staticmethod
    def _tpot(r: Row) -> float | None:
        if r.end is None or r.req.output < 2:
            return None
        return (r.end - r.first) / (r.req.output - 1)

    def _meets(self, r: Row) -> bool:
        if r.end is None:
            return False
        tpot = self._tpot(r)
        return ((self.slo_ttft is None or r.first - r.req.arrival <= self.slo_ttft)
                and (self.slo_tpot is None or tpot is None or tpot <= self.slo_tpot))

    def jsonl(self) -> str:
        out = []
        for rid in sorted(self.rows):
            r = self.rows[rid]
            d = {"id": rid, "arrival": r.req.arrival, "prompt_tokens": r.req.prompt, "output_tokens": r.req.output,
                 "status": "rejected" if r.rejected else "done" if r.end is not None else "unfinished"}
            if r.rejected:
                d["reason"] = r.rejected
            else:
                d.update(admitted=r.admitted, first_token=r.first, end=r.end,
                         ttft=None if r.first is None else r.first - r.req.arrival, tpot=self._tpot(r),
                         e2e=None if r.end is None else r.end - r.req.arrival, meets_slo=self._meets(r))
            out.append(json.dumps(d, sort_keys=True) + "\n")
        return "".join(out)

    def summary(self) -> dict:
        done = [r for r in self.rows.values() if r.end is not None]
        if not done:
            return {"requests": len(self.rows), "completed": 0,
                    "rejected": sum(r.rejected is not None for r in self.rows.values())}
        t0 = min(r.req.arrival for r in self.rows.values())
        span = max(r.end for r in done) - t0
        ttft = np.array([r.first - r.req.arrival for r in done])
        tpots = [t for t in map(self._tpot, done) if t is not None]
        e2e = np.array([r.end - r.req.arrival for r in done])

        def stats(x) -> dict:
            if len(x) == 0:
                return {}
            x = np.asarray(x, dtype=float)
            return {"mean": float(x.mean()), **{f"p{p}": float(np.percentile(x, p)) for p in PERCENTILES},
                    "max": float(x.max())}

        good = sum(self._meets(r) for r in done)
        tokens = sum(r.req.output for r in done)
        waits = [w for _, w, _ in self.samples]
        return {
            "requests": len(self.rows), "completed": len(done),
            "rejected": sum(r.rejected is not None for r in self.rows.values()),
            "unfinished": sum(r.end is None and r.rejected is None for r in self.rows.values()),
            "seconds": span, "steps": self.steps,
            "ttft_seconds": stats(ttft), "tpot_seconds": stats(tpots), "e2e_seconds": stats(e2e),
            "output_tokens": tokens, "output_tokens_per_second": tokens / span if span > 0 else None,
            "tokens_per_second_per_user": float(np.mean([1 / t for t in tpots])) if tpots else None,
            "slo_ttft_seconds": self.slo_ttft, "slo_tpot_seconds": self.slo_tpot,
            "meeting_slo": good, "goodput_requests_per_second": good / span if span > 0 else None,
            "queue_max": max(waits, default=0), "kv_capacity_bytes": self.kv_capacity, "kv_peak_bytes": self.kv_peak,
        }

    def timeline(self) -> dict:
        """Queue length and KV occupancy over time, at most TIMELINE_POINTS samples (evenly picked)."""
        s = self.samples
        if len(s) > TIMELINE_POINTS:
            idx = np.linspace(0, len(s) - 1, TIMELINE_POINTS).round().astype(int)
            s = [s[i] for i in idx]
        return {"seconds": [t for t, _, _ in s], "waiting": [w for _, w, _ in s], "kv_bytes": [k for _, _, k in s]}
