"""Bounds on a placed program's time that the simulation must respect (tests hold it to them):
the roofline lives with the kernels and the runtime; this module has the latency bound."""

from __future__ import annotations

import networkx as nx

from ..backends import assumptions as A
from ..backends.program import IO, Placement, Program, Routing
from .tile_sim import chunks


def critical_path(prog: Program, placement: Placement, routing: Routing, chunk: int = A.CHUNK_TOKENS
                  ) -> tuple[int, list[str]]:
    """The longest chain of kernels, weighted by each one's first chunk and fill plus its flows'
    hop latency: the least time a first chunk needs to cross the pipeline (a latency bound)."""
    m = placement.machine
    p0, p1 = chunks(prog.tokens, chunk)[0]
    dag = nx.DiGraph()
    cost = {}
    for k, r in zip(prog.kernels, placement.rects):
        cost[k.id] = k.model.cycles(r.rows, r.cols, p0, p1, m)[0] + k.model.fill(r.rows, r.cols, m)
        dag.add_node(k.id)
    for rt in routing.routes:
        f = prog.flows[rt.flow]
        if f.src != IO:
            w = cost[f.src] + rt.hops * A.HOP_CYCLES + A.ROUTER_DELAY_CYCLES
            if w > dag.get_edge_data(f.src, f.dst, {"w": -1})["w"]:
                dag.add_edge(f.src, f.dst, w=w)
    path = nx.dag_longest_path(dag, weight="w", default_weight=0)
    length = nx.dag_longest_path_length(dag, weight="w", default_weight=0) + cost[path[-1]]
    return int(length), [prog.kernels[i].name for i in path]
