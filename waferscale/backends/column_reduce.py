"""How the partial sums of one column of cores are reduced: who sends to whom, and in what order
each core adds what it receives. One plan serves the tile-level time (``gemm.py``) and the PE-level
simulator (``runtime/pe_sim.py``); it depends on the number of rows only.

A core's partial sums travel as **streams** of ``nt`` wavelets, one per partial sum, each of one of
four kinds: phase 1 southward (``S1``) and northward (``N1``) between neighbours, phase 2 southward
(``S2``) and northward (``N2``) between group roots, through the routers in between. A core adds
its incoming streams one after the other, in the order ``N1, S1, N2, S2`` (phase 1 before phase 2;
from below, the shorter side, before from above), each as one vector operation over ``nt``
wavelets; the last is fused with the send of the core's own stream (add and forward), and a core
that receives nothing just sends. So a core with ``i`` incoming streams takes ``max(1, i)`` passes
of ``nt`` cycles of its datapath per token.

- ``chain``: every row adds what comes from the north to its own sums and sends them south; the
  last row's sums leave at the south edge. As a plan: one group rooted at the last row.
- ``tree``, the two-level centre-rooted tree of WaferLLM's MeshGEMV (He et al., OSDI 2025): the
  rows are cut into ``round(sqrt(rows))`` groups of consecutive rows (``blocks.split``: sizes differ
  by at most one, larger first) rooted at their centre row (``start + size // 2``). In phase 1 the
  rows above a root form a chain southward to it and the rows below a chain northward; the root
  adds both. In phase 2 the group roots do the same towards the root of the centre group
  (``groups // 2``), the column root, each root-to-root stream passing through the routers between
  them; the column root sends the column's sums south to the edge, through the routers below it.

Colors (the SDK lets a router take a color from one port only): the chain alternates two colors by
row parity. The tree needs six: phase 1 two, alternating by row parity (the northward chains with
the opposite parity, so a root takes different colors from north and south); phase 2 southward two,
alternating by group parity, the column root's stream to the edge on its own group's; phase 2
northward two more. ``colors`` gives them and ``color_conflicts`` checks them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from math import sqrt

from .blocks import offsets, split

CHAIN, TREE = "chain", "tree"
REDUCES = (CHAIN, TREE)
S1, N1, S2, N2 = range(4)  # stream kinds
KIND_NAMES = ("S1", "N1", "S2", "N2")
ORDER = (N1, S1, N2, S2)  # the order a core adds its incoming streams
SOUTHWARD = (True, False, True, False)


@dataclass(frozen=True)
class ColumnPlan:
    reduce: str
    rows: int
    groups: tuple[int, ...]  # rows per group, top to bottom
    roots: tuple[int, ...]  # the root row of each group
    top: int  # the column root: its stream leaves at the south edge
    ins: tuple[tuple[int, ...], ...]  # per row: the kinds it receives, in the order it adds them
    out: tuple[int, ...]  # per row: the kind it sends on (the column root: S2, to the edge)
    src: tuple[tuple[int, ...], ...]  # per row, per kind: the row that sends it what it receives (-1: none)

    def passes(self, row: int) -> int:
        """Passes of ``nt`` datapath cycles per token of the core at ``row``."""
        return max(1, len(self.ins[row]))

    def hops(self, row: int, kind: int) -> int:
        """Links the stream of ``kind`` crosses from its sender to ``row``."""
        return abs(row - self.src[row][kind])

    @property
    def edge_hops(self) -> int:
        """Links from the column root to the south edge (the last is the edge's)."""
        return self.rows - self.top

    def through(self, kind: int) -> tuple[int, ...]:
        """The rows whose router passes ``kind`` on without giving it to its core."""
        if kind in (S1, N1):
            return ()
        rows = set()
        for r in range(self.rows):
            s = self.src[r][kind]
            if s >= 0:
                rows.update(range(min(s, r) + 1, max(s, r)))
        if kind == S2:
            rows.update(range(self.top + 1, self.rows))
        return tuple(sorted(rows))

    @cached_property
    def order(self) -> tuple[int, ...]:
        """The rows, each after the rows it receives from (phase-1 leaves first, the column root last)."""
        done, out, todo = set(), [], list(range(self.rows))
        while todo:
            left = []
            for r in todo:
                if all(self.src[r][k] in done for k in self.ins[r]):
                    done.add(r)
                    out.append(r)
                else:
                    left.append(r)
            todo = left
        return tuple(out)

    @cached_property
    def link_load(self) -> int:
        """The most streams that share one link direction."""
        load = {}
        for r in range(self.rows):
            for k in self.ins[r]:
                s = self.src[r][k]
                for at in range(min(s, r), max(s, r)):
                    load[at, SOUTHWARD[k]] = load.get((at, SOUTHWARD[k]), 0) + 1
        for at in range(self.top, self.rows):  # the column root's stream to the edge
            load[at, True] = load.get((at, True), 0) + 1
        return max(load.values())

    @cached_property
    def max_hops(self) -> int:
        """The longest stream, in links (the column root's to the edge included)."""
        return max([self.edge_hops] + [self.hops(r, k) for r in range(self.rows) for k in self.ins[r]])

    def colors(self) -> dict[tuple[int, int], int]:
        """(row, kind) -> color of the stream that row sends (see the module docstring)."""
        col = {}
        group = {r: g for g, r in enumerate(self.roots)}
        for r, k in enumerate(self.out):
            if k in (S1, N1) or self.reduce == CHAIN:
                col[r, k] = (r + (k == N1)) % 2
            else:
                col[r, k] = 2 + 2 * (k == N2) + group[r] % 2
        return col

    def color_conflicts(self) -> list[str]:
        """Routers that would take one color from two ports (ramp, north, south) or from two streams."""
        taken: dict[tuple[int, int], list[str]] = {}
        col = self.colors()
        through = {k: set(self.through(k)) for k in (S2, N2)}
        for r, k in enumerate(self.out):
            c = col[r, k]
            taken.setdefault((r, c), []).append("ramp")
            step = 1 if SOUTHWARD[k] else -1
            at = r + step
            while 0 <= at < self.rows:  # the routers it enters, until it is delivered
                port = "north" if SOUTHWARD[k] else "south"
                taken.setdefault((at, c), []).append(port)
                if self.src[at][k] == r or at not in through.get(k, ()):
                    break
                at += step
        bad = []
        for (r, c), ports in sorted(taken.items()):
            if len(ports) > 1:
                bad.append(f"row {r} takes color {c} from {' and '.join(sorted(ports))}")
        return bad

    def describe(self) -> str:
        lines = [f"{self.reduce} over {self.rows} rows: groups {list(self.groups)}, roots {list(self.roots)}, "
                 f"column root {self.top}"]
        for r in range(self.rows):
            ins = ", ".join(f"{KIND_NAMES[k]}<-{self.src[r][k]}" for k in self.ins[r]) or "-"
            lines.append(f"  row {r}: adds {ins}; sends {KIND_NAMES[self.out[r]]}")
        return "\n".join(lines)


@lru_cache(maxsize=1024)
def plan(rows: int, reduce: str = CHAIN) -> ColumnPlan:
    """The plan of ``reduce`` over a column of ``rows`` cores."""
    if reduce not in REDUCES:
        raise ValueError(f"unknown reduce {reduce!r}: use one of {', '.join(REDUCES)}")
    if rows < 1:
        raise ValueError("a column needs at least one row")
    groups = split(rows, max(1, round(sqrt(rows)))) if reduce == TREE else [rows]
    starts = offsets(groups)
    roots = [s + g // 2 for s, g in zip(starts, groups)] if reduce == TREE else [rows - 1]
    centre = len(groups) // 2 if reduce == TREE else 0
    src = [[-1] * 4 for _ in range(rows)]
    out = [S1] * rows
    for g, (s, size, r) in enumerate(zip(starts, groups, roots)):
        for i in range(s, s + size):  # phase 1: chains towards the group's root
            if i < r:
                out[i] = S1
                if i > s:
                    src[i][S1] = i - 1
            elif i > r:
                out[i] = N1
                if i < s + size - 1:
                    src[i][N1] = i + 1
        if r > s:
            src[r][S1] = r - 1
        if r < s + size - 1:
            src[r][N1] = r + 1
        # phase 2: roots towards the centre group's root
        if g < centre:
            out[r] = S2
        elif g > centre:
            out[r] = N2
        else:
            out[r] = S2  # the column root: to the south edge
        if 0 < g <= centre:
            src[r][S2] = roots[g - 1]
        if centre <= g < len(groups) - 1:
            src[r][N2] = roots[g + 1]
    ins = tuple(tuple(k for k in ORDER if src[i][k] >= 0) for i in range(rows))
    return ColumnPlan(reduce=reduce, rows=rows, groups=tuple(groups), roots=tuple(roots), top=roots[centre],
                      ins=ins, out=tuple(out), src=tuple(tuple(s) for s in src))
