"""SwarmX: the fabric between MemoryX and N systems, a broadcast tree for weights out and a reduce
tree for gradients in (cerebras.net/glossary/swarmx).

Figures and their sources:

- **the tree**: "broadcast-reduce nodes each containing a set of 100Gb/s network interfaces. Each
  ... provides enough bandwidth to perform either 1:4 broadcast-reduce operations or a pair of 1:2"
  and "SwarmX nodes are connected in a bidirectional tree topology" (glossary): fan-out 4, so N
  systems sit ``ceil(log4 N)`` levels below MemoryX.
- **per-level bandwidth**: "each CS-2 system has 1.2Tb/s of I/O bandwidth ... the number of nodes
  composing the SwarmX fabric scales linearly with N" and each node reduces "at line-rate" (glossary):
  every link of every level carries a system's full 150 GB/s, so a stream crosses the tree
  cut-through, at that rate, whatever N.
- **per-level latency**: not published ("the latency between the MemoryX service and the CS-2
  systems growing logarithmically with N", glossary). Our assumption: 2 us a level (a 100 GbE
  store-and-forward hop and a line-rate reduction), paid once per stream (a layer's weights in,
  its gradients out).

So a stream of B bytes to (or from) N systems takes ``B / rate + levels(N) x latency``: its cost
grows with log N, not N.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil, log

FANOUT = 4  # cerebras.net/glossary/swarmx: a node does a 1:4 broadcast-reduce
LEVEL_LATENCY_S = 2e-6  # our assumption (see above)


@dataclass(frozen=True)
class SwarmX:
    systems: int
    link_bytes_per_s: float  # every level's links: one system's I/O rate
    fanout: int = FANOUT
    level_latency_s: float = LEVEL_LATENCY_S

    @property
    def levels(self) -> int:
        """Levels of broadcast-reduce nodes between MemoryX and the systems (0 for one system)."""
        return 0 if self.systems <= 1 else ceil(log(self.systems, self.fanout) - 1e-9)

    def latency_s(self) -> float:
        return self.levels * self.level_latency_s

    def stream_s(self, nbytes: float) -> float:
        """Seconds to broadcast ``nbytes`` of weights to every system (or reduce as many bytes of
        gradients from them): cut-through at the links' rate, plus the tree's latency."""
        return nbytes / self.link_bytes_per_s + self.latency_s()

    def as_dict(self) -> dict:
        return {"systems": self.systems, "levels": self.levels, "fanout": self.fanout,
                "level_latency_seconds": self.level_latency_s, "link_bytes_per_s": self.link_bytes_per_s,
                "sources": "tree, fan-out, line-rate reduction, per-level bandwidth: cerebras.net/glossary/swarmx; "
                           "per-level latency: our assumption (backends/swarmx.py)"}


def swarmx_for(machine, systems: int) -> SwarmX:
    return SwarmX(systems, machine.io_bytes_per_s)
