"""route: an XY (dimension-order) route for every producer-to-consumer flow.

A flow between two rectangles is a bundle of parallel wavelet streams. Its route runs from the
producer's centre core along the row to the consumer's centre column, then along that column
(X first, then Y). The bundle is as wide as the shorter of the two rectangles' longer sides
(our assumption: a rectangle sends and receives on its long edge, and the lanes spread over
that many parallel rows or columns on the way), so a flow between neighbours in a band crosses
their shared edge on every row. Link loads are those of one lane of each bundle.

Each flow takes one color on every link of its route, except that flows carrying the same
value from the same producer share one color on the links their routes have in common: the
producer sends the value once on that color and each router forwards it to whichever of its
outputs the consumers need (multicast: a WSE router forwards a color to any subset of its five
ports, Cerebras SDK docs, "routing and colors"). A kernel's own algorithm takes ``kernel.colors``
more on the links inside its rectangle. More than the machine's colors on one link is an error.
Link loads still count every flow (our conservative choice: a shared stream's lanes may differ).
Flows from a graph input enter at the west edge of the mesh, on the row of their consumer's
centre, each on its own color.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, replace

from ..backends.program import IO, STEP, Link, Placement, Program, Route, Routing, flows_into
from ..errors import WaferError
from .autodiff import BACKWARD
from .base import PLACED, ROUTED, CompileState, Pass, register


class RoutingError(WaferError):
    """More colors on one link than the fabric has: ``needed`` against ``available``, and ``why`` (what
    crosses that link), for a caller that can say what to do instead."""

    def __init__(self, message: str, needed: int = 0, available: int = 0, why: str = ""):
        super().__init__(message)
        self.needed, self.available, self.why = needed, available, why


@register
@dataclass(frozen=True)
class RoutePass(Pass):
    name = "route"
    stage = PLACED
    gives = ROUTED
    summary = "an XY route per flow, link loads and the colors each link needs"

    def run(self, s: CompileState) -> CompileState:
        routing = route(s.program, s.placement)
        s.log(f"routed {len(routing.routes)} flows: mean {routing.mean_hops():.1f} hops, at most "
              f"{routing.max_colors} colors on a link")
        return replace(s, routing=routing)


def xy_links(src: tuple[int, int], dst: tuple[int, int]) -> list[Link]:
    (r, c), (r1, c1) = src, dst
    out = []
    while c != c1:
        d = "E" if c1 > c else "W"
        out.append((r, c, d))
        c += STEP[d][1]
    while r != r1:
        d = "S" if r1 > r else "N"
        out.append((r, c, d))
        r += STEP[d][0]
    return out


def route(prog: Program, placement: Placement) -> Routing:
    """Every flow's route. In weight-streaming mode each group is routed on its own (its links are
    free of the other groups', which run at other times); a flow into a group from an earlier one
    reads a value resident in SRAM and enters its consumer like a graph input."""
    if not placement.is_streaming:
        return _route(prog, placement, range(len(prog.flows)), None)
    routes, link_bytes, link_colors = [], defaultdict(float), {}
    for g in placement.groups:
        part = _route(prog, placement, flows_into(prog, g.kernels), g.kernels)
        routes += part.routes
        for link, b in part.link_bytes.items():
            link_bytes[link] += b
        for link, n in part.link_colors.items():
            link_colors[link] = max(n, link_colors.get(link, 0))
    return Routing(tuple(sorted(routes, key=lambda r: r.flow)), dict(link_bytes), link_colors)


def _waves(prog: Program) -> list[int]:
    """A latency placement's kernels by wave: the longest chain of kernels before each. Kernels of one
    wave may run at once; those of different waves never send on the fabric at the same time (our
    assumption: a router's colors are reassigned between waves, as WaferLLM's kernels reconfigure their
    routes between phases; the cost of switching is not modelled)."""
    depth = [0] * len(prog.kernels)
    for f in sorted(prog.flows, key=lambda f: f.dst):
        if f.src >= 0:
            depth[f.dst] = max(depth[f.dst], depth[f.src] + 1)
    return depth


def _busiest_wave(colors: Counter) -> Counter:
    """Colors per link: the most any one wave's flows take on it."""
    out: Counter = Counter()
    for (link, _), n in colors.items():
        out[link] = max(out[link], n)
    return out


def _route(prog: Program, placement: Placement, flow_ids, group: tuple[int, ...] | None) -> Routing:
    rects = placement.rects
    routes = []
    link_bytes: dict[Link, float] = defaultdict(float)
    sources: dict = defaultdict(set)  # the distinct (producer, value) streams on each link (latency: per wave)
    readers: dict = defaultdict(set)  # (link key, stream): its consumers, to say what crosses a full link
    wave = _waves(prog) if placement.mode == "latency" else None
    for i in flow_ids:
        f = prog.flows[i]
        dst = rects[f.dst]
        entering = f.src == IO or (group is not None and f.src not in group)
        if entering:
            start, lanes = (dst.center[0], 0), dst.rows
            links = [(start[0], -1, "E")] + xy_links(start, dst.center)
        else:
            src = rects[f.src]
            links = xy_links(src.center, dst.center)
            lanes = min(max(src.rows, src.cols), max(dst.rows, dst.cols))
        b = f.bytes_per_token * prog.tokens
        routes.append(Route(i, tuple(links), lanes, b))
        source = (f.src, f.value, f.dst) if entering else (f.src, f.value)  # what enters does so per consumer
        for link in links:
            link_bytes[link] += b / lanes
            key = link if wave is None else (link, wave[f.dst])
            sources[key].add(source)
            readers[key, source].add(f.dst)
    colors = Counter({key: len(s) for key, s in sources.items()})
    if wave is not None:
        colors = _busiest_wave(colors)
    owner = placement.owner(group)  # a kernel's own colors are on every link inside its rectangle
    for link in colors:
        row, col, _ = link
        if col >= 0 and owner[row, col] >= 0:
            k = owner[row, col]
            r = rects[k]
            colors[link] += prog.kernels[k].model.colors_at(r.rows, r.cols, placement.machine)
    worst = max(colors.items(), key=lambda kv: (kv[1], kv[0]), default=(None, 0))
    if worst[1] > placement.machine.colors:
        (row, col, d), n = worst
        why = _crossing(prog, sources, readers, worst[0], n) if wave is None else ""
        raise RoutingError(f"link ({row},{col})->{d} needs {n} colors and the fabric has {placement.machine.colors}"
                           f"{' (' + why + ')' if why else ''}: too many flows cross one place; try another --target "
                           "or a shorter model", n, placement.machine.colors, why)
    return Routing(tuple(routes), dict(link_bytes), dict(colors))


def _crossing(prog: Program, sources: dict, readers: dict, link: Link, colors: int) -> str:
    """What takes the colors of a full ``link``: its distinct values, how many of them forward values
    that a backward kernel reads (a training step's saved activations), and the kernel's own colors."""
    def backward(k: int) -> bool:
        return k >= 0 and prog.kernels[k].name.startswith(BACKWARD)

    streams = sources.get(link, set())
    saved = sum(1 for s in streams if s[0] >= 0 and not backward(s[0]) and any(map(backward, readers[link, s])))
    out = f"{len(streams)} distinct values cross it"
    if saved:
        out += f", {saved} of them forward values the backward reads"
    if colors > len(streams):
        out += f"; the kernel there takes {colors - len(streams)} more itself"
    return out
