"""Which machines the PE-level simulators model, checked on the machine each run is given.

Every PE-level simulator (``pe_sim``: the GEMM and GEMV, chain and tree; ``pe_chain``;
``pe_streamed``; ``pe_rowwise``) moves a wavelet one stage a cycle: router to router
(``hop_cycles``), router to core or core to router (``ramp_cycles``), and the add-and-forward of a
partial sum takes the datapath one cycle a wavelet (``Costs.psum_add``). The GEMM's and GEMV's cycle
loop (``pe_tree.run_tree``, which runs the chain too) also has links of several cycles
(``pe_links``: a WSE-3's hop is 2 cycles), so ``simulate_gemm`` and the chains of GEMVs on it
(``pe_chain``) take any ``hop_cycles`` (``hops=True`` here), as does the streamed-weight GEMM's loop
(``pe_streamed``), which has the same delay lines. A machine with other figures would need delay
lines the simulators do not have, so they refuse it with one ``not supported`` line instead of
giving the cycles of a different machine. (The tile level, ``--level tile``, models any figures.)
"""

from __future__ import annotations

from ..backends.datapath import Datapath, as_datapath
from ..backends.machine import Machine
from ..errors import UnsupportedError


def check_machine(machine: Machine, lanes: Datapath | float | None = None,
                  what: str = "the PE-level simulator", hops: bool = False) -> None:
    """Raise ``UnsupportedError`` unless ``machine`` (and the cost table of ``lanes``, the datapath a run
    prices by, else the machine's) has ``hop_cycles = ramp_cycles = psum_add = 1``; with ``hops``, the
    simulator has delay lines on its links and takes any ``hop_cycles``."""
    costs = machine.costs if lanes is None else as_datapath(lanes).costs
    got = {"hop_cycles": machine.hop_cycles, "ramp_cycles": machine.ramp_cycles, "costs.psum_add": costs.psum_add}
    if hops and machine.hop_cycles >= 1:
        del got["hop_cycles"]
    off = [f"{k} = {v:g}" for k, v in got.items() if v != 1]
    if off:
        ones = " = ".join(got) + " = 1"
        raise UnsupportedError(f"{what} on machine {machine.name!r} with {', '.join(off)}: it moves a wavelet one "
                               f"stage a cycle ({ones}); use the tile level (--level tile)")
