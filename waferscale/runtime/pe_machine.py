"""Which machines the PE-level simulators model, checked on the machine each run is given.

Every PE-level simulator (``pe_sim``: the GEMM and GEMV, chain and tree; ``pe_chain``;
``pe_streamed``; ``pe_rowwise``) moves a wavelet one stage a cycle from router to core or core to
router (``ramp_cycles``), and the add-and-forward of a partial sum takes the datapath one cycle a
wavelet (``Costs.psum_add``). A hop, router to router, takes ``hop_cycles``: one is a plain
queue-to-queue move, more a delay line on the link (``pe_links``: a WSE-3's hop is 2 cycles). A
machine with another ramp or add would need delay lines the simulators do not have, so they refuse
it with one ``not supported`` line instead of giving the cycles of a different machine. (The tile
level, ``--level tile``, models any figures.)
"""

from __future__ import annotations

from ..backends.datapath import Datapath, as_datapath
from ..backends.machine import Machine
from ..errors import UnsupportedError


def check_machine(machine: Machine, lanes: Datapath | float | None = None,
                  what: str = "the PE-level simulator") -> None:
    """Raise ``UnsupportedError`` unless ``machine`` (and the cost table of ``lanes``, the datapath a run
    prices by, else the machine's) has ``ramp_cycles = psum_add = 1`` and ``hop_cycles >= 1``."""
    costs = machine.costs if lanes is None else as_datapath(lanes).costs
    off = [f"hop_cycles = {machine.hop_cycles:g}"] if machine.hop_cycles < 1 else []
    off += [f"{k} = {v:g}" for k, v in (("ramp_cycles", machine.ramp_cycles), ("costs.psum_add", costs.psum_add))
            if v != 1]
    if off:
        raise UnsupportedError(f"{what} on machine {machine.name!r} with {', '.join(off)}: it moves a wavelet on "
                               "or off a ramp in one cycle, adds a partial sum in one and hops in one or more "
                               "(ramp_cycles = costs.psum_add = 1, hop_cycles >= 1); use the tile level (--level tile)")
