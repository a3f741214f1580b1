"""Bounds on a placed program's time that the simulation must respect (tests hold it to them):
the roofline lives with the kernels and the runtime; this module has the latency bound."""

from __future__ import annotations

import networkx as nx

from ..backends import assumptions as A
from ..backends.program import IO, Placement, Program, Routing
from .tile_sim import chunks


def critical_path(prog: Program, placement: Placement, routing: Routing, chunk: int = A.CHUNK_TOKENS
                  ) -> tuple[int, list[str]]:
    """The least time one sample needs to cross the pipeline (a latency bound): the longest chain
    of kernels, each passing its first token on after one token's cycles (its first chunk's
    cycles over its tokens), its fill and its flow's hop latency, ending in a kernel that is busy
    for all of the sample's chunks after its first token arrived."""
    m = placement.machine
    parts = chunks(prog.tokens, chunk)
    (p0, p1), dag, first, whole = parts[0], nx.DiGraph(), {}, {}
    for k, r in zip(prog.kernels, placement.rects):
        fill = k.model.fill(r.rows, r.cols, m)
        first[k.id] = k.model.cycles(r.rows, r.cols, p0, p1, m)[0] / (p1 - p0) + fill
        whole[k.id] = sum(k.model.cycles(r.rows, r.cols, a, b, m)[0] for a, b in parts) + fill
        dag.add_node(k.id)
    for rt in routing.routes:
        f = prog.flows[rt.flow]
        if f.src != IO:
            w = first[f.src] + rt.hops * m.hop_cycles + m.router_delay_cycles
            if w > dag.get_edge_data(f.src, f.dst, {"w": -1})["w"]:
                dag.add_edge(f.src, f.dst, w=w)
    # longest path to each kernel's start, then the kernel's whole sample on top
    reach = {}
    for v in nx.topological_sort(dag):
        reach[v] = max((reach[u] + d["w"] for u, _, d in dag.in_edges(v, data=True)), default=0.0)
    end = max(dag.nodes, key=lambda v: (reach[v] + whole[v], -v))
    path = [end]
    while dag.in_degree(path[-1]):
        v = path[-1]
        path.append(max(dag.predecessors(v), key=lambda u: (reach[u] + dag[u][v]["w"], -u)))
    return int(reach[end] + whole[end]), [prog.kernels[i].name for i in reversed(path)]
