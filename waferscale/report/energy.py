"""report.json's ``energy`` section: the events a simulated run made, costed by the target's energy
model (``backends/energy.py``), and the static power over its simulated time.

The events are what the simulator already counts, never new estimates:

- **FMACs by dtype and SRAM bytes** read and written: each kernel's ``work`` (``backends/kernels``)
  over the chunks the tile simulation ran, for every sample: the same ``Work`` whose FLOPs are the
  report's executed FLOPs and whose bytes are the SRAM roofline's (FMACs are FLOPs / 2).
- **Fabric wavelet-hops**: every flow's wavelets (its elements per token over the run, one element a
  wavelet: the machine file's ``elements_per_wavelet``) times its route's hops, plus every wavelet a kernel's
  cores take in through their ramps (``Work.delivered``), each costed as one hop (the ramp; the hops
  inside a kernel's rectangle before it are not counted, a lower bound).
- **Off-wafer bytes**: the graph inputs that stream in over the system I/O, the weights streamed in
  from MemoryX and the gradients streamed out (weight streaming).

Energy = events x joules per event + static power x the simulated seconds. Nothing here reads the
clock on the wall, so the section is the same for the same compile.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..backends import assumptions as A
from ..backends.energy import BUSY_WATTS_BAND, LEAKAGE_BAND, energy_model
from ..backends.machine import Machine
from ..backends.program import IO, Placement, Program, Routing

CLASSES = ("fmac", "sram", "fabric", "off_wafer", "static")


@dataclass
class Events:
    """Counts of each event class over a run."""

    fmacs: dict[str, float] = field(default_factory=dict)  # by dtype
    sram_read_bytes: float = 0.0
    sram_write_bytes: float = 0.0
    wavelet_hops: float = 0.0
    off_wafer_bytes: float = 0.0

    def scaled(self, k: float) -> Events:
        return Events({d: n * k for d, n in self.fmacs.items()}, self.sram_read_bytes * k, self.sram_write_bytes * k,
                      self.wavelet_hops * k, self.off_wafer_bytes * k)

    def __add__(self, o: Events) -> Events:
        fm = dict(self.fmacs)
        for d, n in o.fmacs.items():
            fm[d] = fm.get(d, 0.0) + n
        return Events(fm, self.sram_read_bytes + o.sram_read_bytes, self.sram_write_bytes + o.sram_write_bytes,
                      self.wavelet_hops + o.wavelet_hops, self.off_wafer_bytes + o.off_wafer_bytes)

    def as_dict(self) -> dict:
        return {"fmacs": dict(sorted(self.fmacs.items())), "sram_read_bytes": self.sram_read_bytes,
                "sram_write_bytes": self.sram_write_bytes, "fabric_wavelet_hops": self.wavelet_hops,
                "off_wafer_bytes": self.off_wafer_bytes}


def run_events(prog: Program, placement: Placement, routing: Routing, chunk: int = A.CHUNK_TOKENS) -> Events:
    """The events of one simulated run of ``prog`` on its placement and routing (all its samples)."""
    from ..runtime.tile_sim import chunks  # the chunks the tile simulation costs a kernel by

    parts = chunks(prog.tokens, chunk)
    ev = Events()
    for k in prog.kernels:
        for p0, p1 in parts:
            w = k.model.work(p0, p1)
            ev.fmacs[k.model.dtype] = ev.fmacs.get(k.model.dtype, 0.0) + w.flops / 2 * prog.samples
            ev.sram_read_bytes += w.sram_read * prog.samples
            ev.sram_write_bytes += w.sram_write * prog.samples
            ev.wavelet_hops += w.delivered * prog.samples
    run_tokens = prog.tokens * prog.samples
    for r in routing.routes:
        f = prog.flows[r.flow]
        ev.wavelet_hops += f.elements_per_token * run_tokens / placement.machine.elements_per_wavelet * r.hops
        if f.src == IO:
            ev.off_wafer_bytes += f.bytes_per_token * run_tokens
    ev.off_wafer_bytes += sum(g.weight_bytes + g.grad_bytes for g in placement.groups)
    return ev


def state_events(s) -> Events:
    """The events of a simulated CompileState's run."""
    return run_events(s.program, s.placement, s.routing, s.sim.chunk if s.sim is not None else A.CHUNK_TOKENS)


def energy_section(machine: Machine, events: Events, seconds: float, tokens: float, *, systems: int = 1,
                   per: str = "token", basis: str = "") -> dict:
    """report.json's ``energy``: ``events`` (all systems together) over ``seconds`` on ``systems``
    systems of ``machine``, for ``tokens`` tokens (``per`` says which: a generated token, a training
    token, a token of the run)."""
    em = energy_model(machine)
    joules = _joules(em, events, seconds, systems)
    total = sum(joules.values())
    return {
        "joules_per_step": total, "seconds_per_step": seconds, "tokens_per_step": tokens,
        "joules_per_token": total / tokens if tokens else None, "per": per,
        "tokens_per_joule": tokens / total if total else None,
        "average_watts": total / seconds if seconds else None,
        "average_watts_per_system": total / seconds / systems if seconds else None,
        "systems": systems,
        "joules_by_class": joules,
        "share_by_class": {k: v / total if total else 0.0 for k, v in joules.items()},
        "events": events.as_dict(),
        "basis": basis,
        "band": _band(machine, events, seconds, tokens, systems),
        "model": em.as_dict(),
    }


def _joules(em, events: Events, seconds: float, systems: int) -> dict:
    return {
        "fmac": sum(n * em.fmac(d) for d, n in events.fmacs.items()),
        "sram": events.sram_read_bytes * em.sram_read_j_per_byte + events.sram_write_bytes * em.sram_write_j_per_byte,
        "fabric": events.wavelet_hops * em.hop_j_per_wavelet,
        "off_wafer": events.off_wafer_bytes * em.io_j_per_byte,
        "static": em.static_watts * systems * seconds,
    }


def _band(machine: Machine, events: Events, seconds: float, tokens: float, systems: int) -> dict:
    """The same events and time under the two ends of the model's uncertainty (backends/energy.py): the
    measured busy power of a CS-2 with the least leakage, the published 23 kW with the most."""
    ends = {"low": (BUSY_WATTS_BAND[0], LEAKAGE_BAND[0]), "high": (BUSY_WATTS_BAND[1], LEAKAGE_BAND[1])}
    out = {}
    for end, (watts, leak) in ends.items():
        j = sum(_joules(energy_model(machine, system_watts=watts, leakage=leak), events, seconds, systems).values())
        out[end] = {"joules_per_token": j / tokens if tokens else None,
                    "average_watts": j / seconds if seconds else None, "busy_system_watts": watts,
                    "leakage_share": leak}
    return out


def run_energy(s) -> dict:
    """The section of a compile's simulated run (every sample's tokens)."""
    prog = s.program
    seconds = s.sim.cycles / s.machine.clock_hz
    return energy_section(s.machine, state_events(s), seconds, prog.samples * prog.tokens, per="token of the run",
                          basis="the simulated run: its events and its simulated time")


def decode_energy(machine: Machine, steps: list, seconds_per_token: float, batch: int, systems: int) -> dict:
    """A decode step's section: ``steps`` the (program, placement, routing) of each system at the first and
    at the last decode position; their mean events over the mean step time, per generated token."""
    ev = Events()
    for prog, placement, routing in steps:
        ev = ev + run_events(prog, placement, routing, chunk=1)
    return energy_section(machine, ev.scaled(systems / len(steps)), seconds_per_token, batch, systems=systems,
                          per="generated token", basis="a decode step: the mean of the first and last steps' events "
                          "over the mean step time, all systems")


def train_energy(s, train: dict) -> dict:
    """A training step's section: the micro-batch's events times the micro-batches and the systems, over
    the step time (the optimizer's own work on MemoryX or the wafer is in the static power only)."""
    ev = state_events(s).scaled(train["micro_batches"] * train["systems"])
    return energy_section(s.machine, ev, train["step_seconds"], train["tokens_per_step"], systems=train["systems"],
                          per="training token", basis="a training step: every micro-batch's events on every system "
                          "over the step time; the optimizer's update is counted in static power only")


def energy_text(e: dict) -> str:
    """The one line of report.txt."""
    sh = e["share_by_class"]
    return (f"  energy          {e['joules_per_step']:.4g} J per step, {1e3 * e['joules_per_token']:.4g} mJ per "
            f"{e['per']} ({e['tokens_per_joule']:.4g} tokens/J), {e['average_watts'] / 1e3:.2f} kW average: "
            + ", ".join(f"{k} {100 * sh[k]:.1f}%" for k in CLASSES)
            + (f"; band {1e3 * b['low']['joules_per_token']:.3g} to {1e3 * b['high']['joules_per_token']:.3g} mJ"
               if (b := e.get("band")) and e["joules_per_token"] else ""))
