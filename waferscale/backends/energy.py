"""The energy model of a target, as data with its sources: the energy of one event of each class
(an FMAC by dtype, a byte read or written in SRAM, a wavelet crossing one fabric link, a byte over
the system I/O) and the static power of a core, calibrated so that a fully busy system draws the
system power Cerebras publishes.

What is measured, what is scaled, what is fitted (docs/energy.md):

- **Per-operation energies at 45 nm** (sourced): Horowitz, "Computing's energy problem (and what we
  can do about it)", ISSCC 2014, the table of energies at 45 nm and 0.9 V: a 16-bit FP add 0.4 pJ
  and multiply 1.1 pJ, a 32-bit FP add 0.9 pJ and multiply 3.7 pJ; a 64-bit access of an 8 KB SRAM
  10 pJ (a WSE core's 48 KB is 8 banks of 6 KB: Cerebras SDK docs, machine.py); a 64-bit DRAM access
  1.3 to 2.6 nJ. A fabric link: Park et al., "40.4fJ/bit/mm Low-Swing On-Chip Signaling with
  Self-Resetting Logic Repeaters Embedded within a Mesh NoC in 45nm SOI CMOS", DATE 2013: 40.4 fJ per
  bit per mm of a mesh NoC's datapath.
- **Scaling to the target's node** (a stated rule, our assumption): a logic or SRAM event's dynamic
  energy C V^2 scales with its capacitance, taken proportional to the feature size, and the square
  of the supply: E(node) = E(45 nm) x (node / 45 nm) x (V / 0.9 V)^2. The nodes are published (WSE-2
  TSMC 7 nm, WSE-3 TSMC 5 nm: launch material, AnandTech 2021, ServeTheHome 2024); the supplies are
  not (0.75 V at 7 nm and 0.70 V at 5 nm are our assumptions). A hop's wire energy per bit per mm
  scales with V^2 only; its length is the core pitch, the square root of the die's area (46,225 mm^2,
  published) over its cores. The system I/O's energy per byte is not scaled (off-chip signalling and
  the far end's DRAM do not shrink with the wafer's logic): one 64-bit DRAM access at the table's
  lower 1.3 nJ per 8 bytes, an assumption standing for the SerDes, NICs and MemoryX behind the link.
- **Calibration** (fitted, one number per target): the static power. A fully busy system (every core
  of the mesh running a whole-wafer f16 GEMM as the simulator runs it: ``BUSY_EVENTS_PER_CORE_CYCLE``)
  draws the published system power; what the scaled dynamic energies do not explain of it is static: leakage,
  clocks, cooling, power conversion and I/O, spread evenly over the die's cores and drawn whether a
  core works or not. ``static_share`` says how much of the published power that is.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import sqrt

from .machine import MACHINES, Machine

PJ = 1e-12

# Horowitz, ISSCC 2014, 45 nm, 0.9 V (module docstring). An FMAC is one multiply and one add.
H45_FMAC_PJ = {"f16": 1.1 + 0.4, "bf16": 1.1 + 0.4, "f32": 3.7 + 0.9}  # bf16: costed as f16 (assumption)
H45_SRAM_PJ_PER_BYTE = 10.0 / 8  # a 64-bit access of an 8 KB SRAM; reads and writes alike (the table gives one)
H45_VOLTS = 0.9
H45_NM = 45.0
DRAM_PJ_PER_BYTE = 1300.0 / 8  # a 64-bit DRAM access, 1.3 nJ (the table's lower figure); not scaled
NOC_FJ_PER_BIT_MM = 40.4  # Park et al., DATE 2013, 45 nm
WAVELET_BITS = 32  # Cerebras SDK docs: a wavelet is 32 bits (machine.py)
DIE_MM2 = 46_225.0  # WSE-2 and WSE-3: AnandTech 2021 (WSE-2 table), Cerebras WSE-3 launch (2024)


@dataclass(frozen=True)
class SystemPower:
    """A target's process and published system power."""

    node_nm: float
    volts: float  # assumed supply (module docstring)
    system_watts: float
    source: str


# CS-3: ~23 kW per system (awesomeagents.ai WSE-3 page, "Powers the CS-3 system at ~23kW"); Cerebras' WSE-3
# launch (March 2024) gives twice the WSE-2's performance "while maintaining the same power envelope" (as
# reported by merge.news), so a CS-2 is taken at the same 23 kW. For scale: a CS-1 needs "about 20 kW of
# power peak" (AnandTech) with twelve 4 kW supplies, six of them spares (tweakers.net, 2019).
POWER = {
    "wse2": SystemPower(7.0, 0.75, 23_000.0, "CS-2: 23 kW, the CS-3's published ~23 kW and Cerebras' 'same power "
                                             "envelope' claim for the CS-3 over the CS-2; TSMC 7 nm (AnandTech 2021)"),
    "wse3": SystemPower(5.0, 0.70, 23_000.0, "CS-3: ~23 kW (awesomeagents.ai, WSE-3 page); TSMC 5 nm (ServeTheHome, "
                                             "March 2024)"),
}


@dataclass(frozen=True)
class EnergyModel:
    """Joules per event and the static watts of one core, for one target."""

    target: str
    node_nm: float
    fmac_j: dict  # dtype -> joules per FMAC
    sram_read_j_per_byte: float
    sram_write_j_per_byte: float
    hop_j_per_wavelet: float  # one wavelet over one link (or one ramp into a core)
    io_j_per_byte: float  # over the system I/O (weights in from MemoryX, gradients out, inputs)
    static_w_per_core: float  # fitted (calibrate)
    static_cores: int  # the die's cores, all of which draw static power
    system_watts: float  # the published power it is calibrated to
    busy_dynamic_watts: float  # the fully busy mesh's dynamic power, before the static
    source: str

    @property
    def static_watts(self) -> float:
        return self.static_w_per_core * self.static_cores

    @property
    def static_share(self) -> float:
        return self.static_watts / self.system_watts

    def fmac(self, dtype: str) -> float:
        return self.fmac_j.get(dtype, self.fmac_j["f32"])

    def as_dict(self) -> dict:
        return {
            "node_nm": self.node_nm, "fmac_pj": {k: v / PJ for k, v in sorted(self.fmac_j.items())},
            "sram_read_pj_per_byte": self.sram_read_j_per_byte / PJ,
            "sram_write_pj_per_byte": self.sram_write_j_per_byte / PJ,
            "hop_pj_per_wavelet": self.hop_j_per_wavelet / PJ, "io_pj_per_byte": self.io_j_per_byte / PJ,
            "static_watts_per_core": self.static_w_per_core, "static_cores": self.static_cores,
            "static_watts": self.static_watts, "static_share": self.static_share,
            "system_watts": self.system_watts, "busy_dynamic_watts": self.busy_dynamic_watts,
            "calibration": "static power fitted: the published system power less the dynamic power of every core "
                           "of the mesh running the reference whole-wafer f16 GEMM as simulated "
                           f"({REFERENCE_GEMM['k']} x {REFERENCE_GEMM['n']} weight, {REFERENCE_GEMM['tokens']} tokens)",
            "source": self.source,
        }


# The fully busy reference (fitted from the simulator, not published): the whole-wafer f16 GEMM of a
# 65536 x 65536 weight over 256 tokens (the largest tiles the SRAM holds: 11.6 KB of weights per core), as
# the tile simulation runs it: its events per core per simulated cycle (FMACs, SRAM bytes read and written,
# fabric wavelet-hops), its cores busy 99% of the run. Its FMACs are about half the lanes' 4 per cycle:
# every AXPY pays its vector issue (Costs.vector_issue, costs.py), which costs time but no event here.
# `python benchmarks/energy.py --reference` measures them again; tests/test_energy.py checks they still match.
REFERENCE_GEMM = {"k": 65536, "n": 65536, "tokens": 256, "dtype": "f16"}
BUSY_EVENTS_PER_CORE_CYCLE = {
    "wse2": (2.10469, 8.41875, 4.20938, 0.01201),
    "wse3": (2.03141, 8.12565, 4.06283, 0.01172),
}


def busy_rates(key: str) -> tuple[float, float, float, float]:
    """Per core per cycle of a fully busy core: (f16 FMACs, SRAM bytes read, SRAM bytes written, wavelet-hops)."""
    return BUSY_EVENTS_PER_CORE_CYCLE[key]


def energy_model(machine: Machine) -> EnergyModel:
    """The target's energy model. A custom mesh has a WSE-2's cores, node and static power per core."""
    key = machine.name if machine.name in POWER else "wse2"
    p, ref = POWER[key], MACHINES[key]
    logic = (p.node_nm / H45_NM) * (p.volts / H45_VOLTS) ** 2
    fmac = {k: v * logic * PJ for k, v in H45_FMAC_PJ.items()}
    sram = H45_SRAM_PJ_PER_BYTE * logic * PJ
    pitch_mm = sqrt(DIE_MM2 / ref.die_cores)
    hop = WAVELET_BITS * pitch_mm * NOC_FJ_PER_BIT_MM * 1e-15 * (p.volts / H45_VOLTS) ** 2

    def busy_watts(m: Machine) -> float:
        fmacs, read, write, hops = busy_rates(key)
        return m.cores * m.clock_hz * (fmacs * fmac["f16"] + (read + write) * sram + hops * hop)

    static_per_core = (p.system_watts - busy_watts(ref)) / ref.die_cores  # the fit
    die_cores = machine.die_cores or machine.cores
    busy = busy_watts(machine)
    source = (f"{p.source}; per-event energies: Horowitz ISSCC 2014 (45 nm) scaled to {p.node_nm:g} nm at an assumed "
              f"{p.volts} V; fabric: Park et al. DATE 2013; backends/energy.py")
    return EnergyModel(machine.name, p.node_nm, fmac, sram, sram, hop, DRAM_PJ_PER_BYTE * PJ, static_per_core,
                       die_cores, static_per_core * die_cores + busy, busy, source)
