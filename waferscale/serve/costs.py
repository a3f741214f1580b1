"""Step costs: what the scheduler asks, and nothing about where the answer comes from.

A step-cost object answers, in seconds:

- ``decode(batch, context)``: one decode step of ``batch`` sequences whose positions average
  ``context`` (attention reads every cached row, so a step's cost is taken at the batch's mean
  position: linear in the position, the sum over the batch is the batch times the mean);
- ``prefill(tokens, position)``: a chunk of ``tokens`` prompt tokens of one sequence, the first at
  ``position`` (chunked prefill: the rows before it are in the KV cache);

optionally ``verify(batch, context)``: a step of ``verify_tokens`` positions of each of ``batch``
sequences from ``context`` (speculative decoding's verify step, ``serve/speculative.py``), and
optionally ``tokens_per_step``: output tokens a decode step yields per sequence (1 when absent);

and holds ``kv_bytes_per_token`` (one token's keys and values in every layer), ``kv_capacity_bytes``
(what the KV caches may take in all) and ``max_context`` (rows per sequence the program holds).

**A mixed step** (``step_seconds``): the decode tokens of the running batch and prompt chunks in
one step run through the same pipeline one after another (``runtime/tile_sim.py``'s ``then``: a
ragged step simulated as one, ``serve/placed.py`` ``Placed.mixed``), so the pipeline's fill is paid
once, not once a part. Each part's cost is about the fill plus its tokens' stream; the step costs
the sum of its parts less the fill for every part but one, the fill being a one-sequence decode
step less what a second sequence adds (``2 decode(1, c) - decode(2, c)``). Checked against direct
simulation of mixed steps at random points (``serve.costs.*.error_points``, kind ``mixed``).

``GridCost`` is what serving uses: costs on a grid of (batch, context) and (chunk, position), read
between the points by bilinear interpolation (clamped at the edges, so the grid must span what is
asked), with a third grid of (batch, context) for the verify step when one is asked for.
``LinearCost`` is a synthetic one (a latency plus per-token terms) for fast tests.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Protocol


def step_seconds(cost, batch: int, context: float, pieces: list[tuple[int, int]]) -> float:
    """One step of ``batch`` decode tokens at mean ``context`` and prompt ``pieces`` (tokens,
    position): the parts' costs summed, the pipeline's fill paid once (the module's docstring).
    Speculative decoding's costs (no ``mixed`` attribute) keep the plain sum: not checked for them."""
    parts = ([cost.decode(batch, context)] if batch else []) + [cost.prefill(n, p) for n, p in pieces]
    total = sum(parts)
    if len(parts) < 2 or not getattr(cost, "mixed", False):
        return total
    return total - (len(parts) - 1) * fill_seconds(cost, context if batch else pieces[0][1])


def fill_seconds(cost, context: float) -> float:
    """The pipeline's fill at ``context``: a one-sequence decode step less one sequence's stream (what
    a second sequence adds), ``2 decode(1) - decode(2)``."""
    return 2 * cost.decode(1, context) - cost.decode(2, context)


class StepCost(Protocol):
    kv_bytes_per_token: int
    kv_capacity_bytes: int
    max_context: int

    def decode(self, batch: int, context: float) -> float: ...

    def prefill(self, tokens: int, position: int) -> float: ...


def _bracket(xs: tuple[float, ...], x: float) -> tuple[int, int, float]:
    """Indices i, j of the grid points around x and x's weight toward j (clamped at the ends)."""
    if x <= xs[0]:
        return 0, 0, 0.0
    if x >= xs[-1]:
        return len(xs) - 1, len(xs) - 1, 0.0
    j = bisect_right(xs, x)
    i = j - 1
    return i, j, (x - xs[i]) / (xs[j] - xs[i])


@dataclass(frozen=True)
class Grid:
    """Values on a rectangular grid, xs by ys, read by bilinear interpolation."""

    xs: tuple[float, ...]
    ys: tuple[float, ...]
    values: tuple[tuple[float, ...], ...]  # values[i][j] at (xs[i], ys[j])

    def __call__(self, x: float, y: float) -> float:
        i0, i1, u = _bracket(self.xs, x)
        j0, j1, v = _bracket(self.ys, y)
        f = self.values
        return ((1 - u) * ((1 - v) * f[i0][j0] + v * f[i0][j1])
                + u * ((1 - v) * f[i1][j0] + v * f[i1][j1]))

    def as_dict(self, x: str, y: str) -> dict:
        return {x: list(self.xs), y: list(self.ys), "seconds": [list(r) for r in self.values]}


def _refine(points: list[int], f, tol: float, rounds: int) -> list[int]:
    """Integer points of one axis, with midpoints added where f strays from the straight line between
    its neighbours by more than ``tol`` (relative), up to ``rounds`` times."""
    pts = sorted(set(points))
    for _ in range(rounds):
        new = []
        for a, b in zip(pts, pts[1:]):
            if b - a < 2:
                continue
            m = (a + b) // 2
            fa, fb, fm = f(a), f(b), f(m)
            if abs(fa + (fb - fa) * (m - a) / (b - a) - fm) > tol * fm:
                new.append(m)
        if not new:
            break
        pts = sorted(set(pts) | set(new))
    return pts


def build_grid(xs, ys, fn, *, tol: float = 0.0, rounds: int = 3) -> Grid:
    """fn on the grid xs by ys; with ``tol``, each axis is first refined (``_refine``) along the grid's
    first and last line of the other axis, where a cost's steps show."""
    memo: dict = {}

    def f(x, y):
        if (x, y) not in memo:
            memo[x, y] = float(fn(x, y))
        return memo[x, y]

    xs, ys = sorted(set(xs)), sorted(set(ys))
    if tol > 0:
        nx = set().union(*(_refine(xs, lambda x, y=y: f(x, y), tol, rounds) for y in (ys[0], ys[-1])))
        ny = set().union(*(_refine(ys, lambda y, x=x: f(x, y), tol, rounds) for x in (xs[0], xs[-1])))
        xs, ys = sorted(nx), sorted(ny)
    return Grid(tuple(xs), tuple(ys), tuple(tuple(f(x, y) for y in ys) for x in xs))


@dataclass(frozen=True)
class GridCost:
    decode_grid: Grid  # (batch, context)
    prefill_grid: Grid  # (chunk tokens, position)
    kv_bytes_per_token: int
    kv_capacity_bytes: int
    max_context: int
    verify_grid: Grid | None = None  # (batch, context), verify_tokens positions a sequence
    verify_tokens: int = 0
    mixed: bool = True  # a mixed step pays the fill once (step_seconds)

    def decode(self, batch: int, context: float) -> float:
        return self.decode_grid(batch, context)

    def verify(self, batch: int, context: float) -> float:
        if self.verify_grid is None:
            raise AssertionError("this cost grid was built without a verify step")
        return self.verify_grid(batch, context)

    def prefill(self, tokens: int, position: int) -> float:
        return self.prefill_grid(tokens, position)


@dataclass(frozen=True)
class LinearCost:
    """A synthetic step cost: ``latency`` per step plus per-token and per-cached-row terms."""

    kv_bytes_per_token: int = 1024
    kv_capacity_bytes: int = 1 << 20
    max_context: int = 4096
    latency: float = 1e-3
    per_sequence: float = 1e-5
    per_row: float = 1e-8
    per_prompt_token: float = 2e-5
    verify_tokens: int = 1
    mixed: bool = False  # True: a mixed step pays the latency once (step_seconds)

    def decode(self, batch: int, context: float) -> float:
        return self.latency + batch * (self.per_sequence + self.per_row * context)

    def verify(self, batch: int, context: float) -> float:
        return self.latency + batch * self.verify_tokens * (self.per_sequence + self.per_row * context)

    def prefill(self, tokens: int, position: int) -> float:
        return self.latency + tokens * (self.per_prompt_token + self.per_row * (position + tokens / 2))
