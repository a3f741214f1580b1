"""What a core pays to hand its router over from one kernel to the next (a latency placement's
regions shared in time: ``passes/latency.py``).

Kernels that take turns on cores use the router's colors in turn (``passes/route.py`` assigns colors
per wave). A WSE router changes a color's route at run time in two ways:

- **a fabric switch**: each color holds routes for up to four switch positions (0 to 3), and a
  *control wavelet* sent on the color after the last data wavelet advances every router it passes to
  the next position (Cerebras SDK, tutorial "Switches", csl-examples ``tutorials/16-switches``:
  "Fabric switches permit limited runtime control of routes ... The hardware updates the route
  according to the specified switch positions when it receives a so-called Control Wavelet"). The
  cost is that wavelet: one more wavelet on each color the kernel's flows and algorithm use, behind
  the data, one cycle each (``CONTROL_WAVELET_CYCLES``);
- **rewriting the route**: where more kernels take turns on a core than a switch has positions, the
  routes of the later ones cannot all be preloaded, so the core rewrites its router's configuration
  for each of the next kernel's colors. No source gives that cost: ``RECONFIGURE_CYCLES_PER_COLOR``
  is our assumption (a configuration write per color, at the cost of a task's start,
  ``Costs.task_start``).

The tile runtime (``tile_sim.py``) starts a kernel's turn on shared cores no earlier than these cycles
after the kernel before it on those cores finished; the time split (``time_split.py``) counts them in
**wait** (a kernel's turn on cores it shares).
"""

from __future__ import annotations

from ..backends.program import Placement, Program

SWITCH_POSITIONS = 4  # positions 0..3 per color (SDK tutorial "Switches": routes for positions 1, 2 and 3 beside 0)
CONTROL_WAVELET_CYCLES = 1  # one wavelet per color on a link: one cycle (the machine's hop per wavelet)
# A route rewrite per color: our assumption, a task's start per configuration write (machine.costs.task_start).


def handover_cycles(prog: Program, placement: Placement, share: list[list[int]]) -> list[int]:
    """Per kernel, cycles from the end of the turn before it on its shared cores to the start of its
    own: a control wavelet per color it uses, or a route rewrite per color where more kernels share
    its cores than a switch has positions. 0 for a kernel that shares no core."""
    m = placement.machine
    flows_in = [0] * len(prog.kernels)
    for f in prog.flows:
        flows_in[f.dst] += 1
    out = []
    for k, (node, r) in enumerate(zip(prog.kernels, placement.rects)):
        if not share[k]:
            out.append(0)
            continue
        colors = node.model.colors_at(r.rows, r.cols, m) + flows_in[k]
        per = CONTROL_WAVELET_CYCLES if len(share[k]) + 1 <= SWITCH_POSITIONS else m.costs.task_start
        out.append(colors * per)
    return out
