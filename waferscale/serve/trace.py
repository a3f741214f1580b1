"""Request traces: a file (CSV or JSONL) or synthetic arrivals, as a list of ``Request``.

A file row holds an arrival time in seconds, prompt tokens and output tokens. Column names
accepted (case as written): ``arrival``/``arrival_time``/``timestamp``/``TIMESTAMP``,
``prompt_tokens``/``prompt``/``ContextTokens``, ``output_tokens``/``output``/``GeneratedTokens``:
the public Azure LLM inference traces (``TIMESTAMP,ContextTokens,GeneratedTokens``) are read as
they are; their timestamps (dates) become seconds after the first request. A malformed row is
refused with its row number (one line, ``UsageError``).

Synthetic: Poisson arrivals (exponential gaps) or gamma arrivals (gaps with a coefficient of
variation ``cv``) at ``rate`` requests/s; prompt and output lengths from a named distribution
(``fixed:N``, ``uniform:LO,HI``, ``exp:MEAN``, ``lognormal:MEDIAN,SIGMA``), all from one seed.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from ..errors import UsageError

ARRIVAL = ("arrival", "arrival_time", "timestamp", "TIMESTAMP", "time")
PROMPT = ("prompt_tokens", "prompt", "ContextTokens", "input_tokens")
OUTPUT = ("output_tokens", "output", "GeneratedTokens")


@dataclass(frozen=True)
class Request:
    id: int
    arrival: float  # seconds
    prompt: int  # tokens
    output: int  # tokens to generate (the first comes from the prefill)


def _column(names: list[str], choices: tuple[str, ...], what: str, path: str) -> str:
    for c in choices:
        if c in names:
            return c
    raise UsageError(f"{path}: no {what} column (one of {', '.join(choices)}); it has {', '.join(names) or 'none'}")


def _time(v, row: int, path: str) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        t = float(v)
    elif isinstance(v, str):
        try:
            t = float(v)
        except ValueError:
            try:  # the Azure traces: "2023-11-16 18:15:46.6805900" (fractions of up to 7 digits)
                head, _, frac = v.strip().partition(".")
                t = datetime.fromisoformat(head).timestamp() + (float("0." + frac) if frac else 0.0)
            except ValueError:
                raise UsageError(f"{path}: row {row}: arrival {v!r} is neither seconds nor a date "
                                 "(YYYY-MM-DD HH:MM:SS[.frac])") from None
    else:
        raise UsageError(f"{path}: row {row}: arrival {v!r} is not a number of seconds")
    if not math.isfinite(t):
        raise UsageError(f"{path}: row {row}: arrival {v!r} is not a finite time")
    return t


def _count(v, row: int, what: str, path: str, least: int) -> int:
    try:
        n = int(v) if not isinstance(v, bool) else None
        if isinstance(v, float) and v != n or isinstance(v, str) and str(n) != v.strip():
            n = None
    except (TypeError, ValueError):
        n = None
    if n is None or n < least:
        raise UsageError(f"{path}: row {row}: {what} {v!r} is not a whole number of at least {least}")
    return n


def _rows(path: str, text: str) -> list[tuple[int, dict]]:
    if path.endswith(".jsonl"):
        out = []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except ValueError:
                raise UsageError(f"{path}: row {i}: not a JSON object") from None
            if not isinstance(d, dict):
                raise UsageError(f"{path}: row {i}: not a JSON object")
            out.append((i, d))
        return out
    reader = csv.DictReader(io.StringIO(text))
    rows = []
    for d in reader:
        if None in d or None in d.values():
            raise UsageError(f"{path}: row {reader.line_num}: {len(reader.fieldnames or [])} columns expected")
        rows.append((reader.line_num, d))
    return rows


def read_trace(path: str | Path) -> list[Request]:
    """The requests of a CSV or JSONL trace, in order of arrival; times start at the first arrival."""
    shown = str(path)
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read the trace {shown}: {getattr(e, 'strerror', None) or e}") from None
    rows = _rows(shown, text)
    if not rows:
        raise UsageError(f"{shown}: no requests in the trace")
    names = list(rows[0][1])
    a, p, o = (_column(names, c, w, shown) for c, w in ((ARRIVAL, "arrival"), (PROMPT, "prompt tokens"),
                                                          (OUTPUT, "output tokens")))
    got = []
    for row, d in rows:
        for c in (a, p, o):
            if c not in d:
                raise UsageError(f"{shown}: row {row}: no {c}")
        got.append((_time(d[a], row, shown), _count(d[p], row, "prompt tokens", shown, 1),
                    _count(d[o], row, "output tokens", shown, 1)))
    t0 = min(t for t, _, _ in got)
    order = sorted(range(len(got)), key=lambda i: (got[i][0], i))
    return [Request(n, got[i][0] - t0, got[i][1], got[i][2]) for n, i in enumerate(order)]


def _lengths(spec: str, n: int, rng: np.random.Generator, flag: str) -> np.ndarray:
    kind, _, args = spec.partition(":")
    try:
        v = [float(x) for x in args.split(",")] if args else []
    except ValueError:
        v = None
    shapes = {"fixed": 1, "uniform": 2, "exp": 1, "lognormal": 2}
    if kind not in shapes or v is None or len(v) != shapes[kind] or any(x <= 0 for x in v):
        raise UsageError(f"{flag} {spec!r}: give fixed:N, uniform:LO,HI, exp:MEAN or lognormal:MEDIAN,SIGMA "
                         "(positive numbers)")
    if kind == "fixed":
        x = np.full(n, v[0])
    elif kind == "uniform":
        if v[1] < v[0]:
            raise UsageError(f"{flag} {spec!r}: LO must not be above HI")
        x = rng.integers(int(v[0]), int(v[1]) + 1, n)
    elif kind == "exp":
        x = rng.exponential(v[0], n)
    else:
        x = v[0] * np.exp(v[1] * rng.standard_normal(n))
    return np.maximum(np.rint(x), 1).astype(np.int64)


def synthetic(rate: float, requests: int, *, arrivals: str = "poisson", cv: float = 1.0,
              prompt: str = "uniform:64,512", output: str = "uniform:16,256", seed: int = 0) -> list[Request]:
    """``requests`` requests arriving at ``rate`` per second; the first at time 0."""
    if not rate > 0 or not math.isfinite(rate):
        raise UsageError(f"--rate must be a positive number of requests per second (got {rate})")
    if requests < 1:
        raise UsageError(f"--requests must be at least 1 (got {requests})")
    rng = np.random.default_rng(seed)
    if arrivals == "poisson":
        gaps = rng.exponential(1 / rate, requests)
    elif arrivals == "gamma":
        if not cv > 0:
            raise UsageError(f"--cv must be positive (got {cv})")
        k = 1 / cv**2  # shape; the mean gap k * theta is 1 / rate
        gaps = rng.gamma(k, 1 / (rate * k), requests)
    else:
        raise UsageError(f"--arrivals {arrivals!r}: give poisson or gamma")
    gaps[0] = 0.0
    times = np.cumsum(gaps)
    ps, os_ = _lengths(prompt, requests, rng, "--prompt-dist"), _lengths(output, requests, rng, "--output-dist")
    return [Request(i, float(times[i]), int(ps[i]), int(os_[i])) for i in range(requests)]
