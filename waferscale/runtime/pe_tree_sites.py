"""The stages and paths of moves of a column's reduce plan, for the tree's event solver
(``pe_tree_events``: see there).

Each core's passes of a token get consecutive stages, a stream's sender's last pass the stage of
the receiver's pass that adds it (from the column root down the plan). In one stage the moves then
form disjoint paths, each a list of sites: a chain head's pass (GO), its wavelet off the ramp (L0),
through routers (TH), delivered to the receiver's core (DL), the receiver's pass, and so on. Site
i's queue is drained by site i + 1, so the room it waits for is site i + 1's move of the wavelet
``depth`` before.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..backends.column_reduce import N1, N2, S1, S2, ColumnPlan

DL, GO, L0, TH = range(4)  # a site: delivery to the core, a pass's wavelet, off the ramp, through a router
SEG = np.int64(1) << 40  # segment offset of the scans (cycles stay far below it)


@dataclass
class Stage:
    kind: np.ndarray  # (n,) site type
    row: np.ndarray  # (n,) its row
    bp: np.ndarray  # (n, 1) bool: site i's queue is drained by site i + 1 (its wavelet s - D frees room)
    off: np.ndarray  # (n, 1) int64: segment offset less the site's index (the scan's ramp)
    first: np.ndarray  # GO sites of a first pass (the token's FMACs, the previous token's reduce)
    later: np.ndarray  # GO sites of a later pass
    later_prev: np.ndarray  # ... the previous pass's GO site (in the stage before)
    arb: np.ndarray  # TH sites on a link a phase-1 stream also uses
    arb_slot: np.ndarray  # ... their index among all arbitrated sites
    passes: list  # (pass index, GO sites, rows)
    last: np.ndarray  # GO sites of a row's last pass
    exit: int  # the site whose move is out of the south edge (-1: none here)


@dataclass
class Plan:
    stages: list
    arb_l0: list  # per arbitrated site: (stage, site) of the phase-1 stream that shares its link
    pmax: int
    top: tuple  # the column root's last pass: (stage, its GO site, its L0 site)
    hops: int  # links from the column root's router to the south edge
    edge_arb: list  # (hop, (stage, site) of the phase-1 stream sharing the link): solved after (pe_tree_edge)


@lru_cache(maxsize=64)
def sites(p: ColumnPlan) -> Plan | None:
    """The stages of a column's plan and the paths of moves in each (None: the plan has a phase-1
    stream that is not solved before the phase-2 streams crossing it)."""
    R = p.rows
    P = [p.passes(r) for r in range(R)]
    last = {p.top: 0}
    todo = [p.top]
    while todo:
        r = todo.pop()
        for i, k in enumerate(p.ins[r]):
            q = p.src[r][k]
            last[q] = last[r] - (P[r] - 1 - i)
            todo.append(q)
    lo = min(last[r] - P[r] + 1 for r in range(R))
    stage = {(r, i): last[r] - (P[r] - 1 - i) - lo for r in range(R) for i in range(P[r])}
    ns = max(stage.values()) + 1
    dst = {(p.src[d][k], k): d for d in range(R) for k in p.ins[d]}
    paths = [[] for _ in range(ns)]
    for (r, i), st in sorted(stage.items(), key=lambda x: x[1]):
        if i or p.ins[r]:
            continue  # a path starts at a pass with no input (a lone send)
        path, first = [], True
        while True:
            if not first:
                path.append((DL, r, i))
            first = False
            path.append((GO, r, i))
            if i != P[r] - 1:
                break
            k = p.out[r]
            path.append((L0, r, k))
            if r == p.top:
                path += [(TH, x, S2) for x in range(r + 1, R)]
                break
            d = dst[r, k]
            step = 1 if d > r else -1
            path += [(TH, x, k) for x in range(r + step, d, step)]
            r, i = d, p.ins[d].index(k)
        paths[st].append(path)
    where = {}
    stages, arb_l0, edge_arb = [], [], []
    for st in range(ns):
        flat = [s for path in paths[st] for s in path]
        seg = np.concatenate([np.full(len(path), j, np.int64) for j, path in enumerate(paths[st])])
        start = np.r_[True, seg[1:] != seg[:-1]]
        for j, (kind, r, _) in enumerate(flat):
            if kind == L0:
                where[r] = (st, j)
        kind = np.array([s[0] for s in flat])
        row = np.array([s[1] for s in flat])
        first = [j for j, s in enumerate(flat) if s[0] == GO and s[2] == 0]
        later = [j for j, s in enumerate(flat) if s[0] == GO and s[2] > 0]
        prev = [stages[st - 1].index[(GO, flat[j][1], flat[j][2] - 1)] for j in later] if later else []
        arb = []
        for j, (kd, x, k) in enumerate(flat):
            if kd == TH and ((k == S2 and p.out[x] == S1) or (k == N2 and p.out[x] == N1)):
                if x not in where or where[x][0] >= st:
                    return None
                if k == S2 and x > p.top:
                    edge_arb.append((x - p.top, where[x]))
                    continue
                arb.append(j)
                arb_l0.append(where[x])
        passes = {}
        for j, s in enumerate(flat):
            if s[0] == GO:
                passes.setdefault(s[2], []).append(j)
        off = (seg * SEG - np.arange(len(flat)))[:, None]
        g = Stage(kind=kind, row=row, bp=np.r_[~start[1:], False][:, None], off=off,
                  first=np.array(first, np.intp), later=np.array(later, np.intp), later_prev=np.array(prev, np.intp),
                  arb=np.array(arb, np.intp), arb_slot=np.arange(len(arb_l0) - len(arb), len(arb_l0)),
                  passes=[(i, np.array(js, np.intp), row[js]) for i, js in sorted(passes.items())],
                  last=np.array([j for j, s in enumerate(flat) if s[0] == GO and s[2] == P[s[1]] - 1], np.intp),
                  exit=next((j for j, s in enumerate(flat) if (s[0] == TH and s[1] == R - 1 and s[2] == S2)
                             or (s[0] == L0 and s[1] == R - 1 == p.top)), -1))
        g.index = {(s[0], s[1], s[2]): j for j, s in enumerate(flat) if s[0] == GO}
        stages.append(g)
    st = stage[p.top, P[p.top] - 1]
    top = (st, stages[st].index[GO, p.top, P[p.top] - 1], where[p.top][1])
    return Plan(stages=stages, arb_l0=arb_l0, pmax=max(P), top=top, hops=R - 1 - p.top, edge_arb=edge_arb)
