"""The energy model of a target, as data with its sources: the energy of one event of each class
(an FMAC by dtype, a byte read or written in SRAM, a wavelet crossing one fabric link, a byte over
the system I/O) and the static power of a core (assumed, with a range), calibrated so that a fully
busy system draws the system power published for a CS-2 or CS-3 (the press's 23 kW: no Cerebras data
sheet with it was found).

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
- **Static power** (assumed, with a range): the cooling's share of the busy system power (the CS-1's
  4 kW of 20 kW, Tom's Hardware 2019) plus the wafer's leakage, an assumed share of the rest (15%, range
  5% to 30%): 32% of 23 kW, 7.4 kW, spread evenly over the die's cores, drawn whether a core works or not.
- **Calibration** (fitted, one number per target): the core overhead. A fully busy system (every core
  of the mesh running a whole-wafer f16 GEMM as the simulator runs it: ``BUSY_EVENTS_PER_CORE_CYCLE``)
  draws the system power; the scaled FMAC and SRAM energies are multiplied by the one factor that makes
  it so (instruction issue, clocking and control, which Horowitz's table shows outweigh the arithmetic).
- **The band**: the same run costed at the measured busy power of a CS-2 (4.38 kW, Miyajima et al. 2026)
  with 5% leakage, and at 23 kW with 30% leakage (report/energy.py's ``band``; docs/energy.md).
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


# System power. We found no Cerebras data sheet with a CS-2 or CS-3 power figure in the sources we could
# search; the figures we found are the press's:
# - CS-1 (WSE-1): "the Cerebras CS-1 consumes 20kW, with 4kW of power dedicated to the cooling"; the chip
#   "sucks 15kW" (Tom's Hardware, "Inside the Cerebras CS-1 System", November 2019); "about 20 kW of power
#   peak" (AnandTech); twelve 4 kW supplies, six of them spares (tweakers.net, November 2019).
# - CS-2 (WSE-2): "Each WSE-2 consumes 15kW of power"; Andromeda, 16 CS-2s with their 124 server nodes,
#   "consumes 500 KW" (Tom's Hardware, November 2022), at most 31 kW per CS-2 with its share of servers.
# - CS-3 (WSE-3): "Powers the CS-3 system at ~23kW" (awesomeagents.ai, WSE-3 page); "twice the performance,
#   same power draw" as the CS-2 (Andrew Feldman, Cerebras' CEO, to ZDNet, 13 March 2024); "the same power
#   requirements" (ExtremeTech, March 2024, reporting ServeTheHome), "the same power envelope" (merge.news).
# So a busy CS-2 or CS-3 is taken at 23 kW; the one measurement we found (Miyajima et al. 2026, SGEMM on a
# CS-2: 349.0 TFLOP/s at 79.66 GFLOP/s per W) implies 4.38 kW, the low end of the band (BUSY_WATTS_BAND).
POWER = {
    "wse2": SystemPower(7.0, 0.75, 23_000.0, "CS-2: 23 kW taken from the CS-3's ~23 kW (awesomeagents.ai) and its "
                                             "'same power requirements' (ExtremeTech, March 2024); a WSE-2 draws "
                                             "15 kW (Tom's Hardware, November 2022); TSMC 7 nm (AnandTech 2021)"),
    "wse3": SystemPower(5.0, 0.70, 23_000.0, "CS-3: ~23 kW (awesomeagents.ai, WSE-3 page); TSMC 5 nm (ServeTheHome, "
                                             "March 2024)"),
}
MEASURED_BUSY_WATTS = 349.0e12 / 79.66e9  # Miyajima, Matsuzaki, Mukunoki, JIP 34 (2026): SGEMM on a CS-2, 4.38 kW

# Static power: what a system draws with every core idle. Nobody publishes it for a CS-2 or CS-3; it is built
# from two parts, each a share of the busy system power:
# - cooling and the system's own overhead (pumps, fans, power conversion), drawn busy or idle: the CS-1's
#   4 kW of 20 kW for cooling (Tom's Hardware, November 2019), 20%. That it is the same share on a CS-2 or
#   CS-3, and drawn whether the wafer works or not, is our assumption.
# - the wafer's leakage: a share of the rest (the wafer and its I/O). Not published: LEAKAGE_SHARE is our
#   assumption, 15%, with a range of 5% to 30% (LEAKAGE_BAND) for a 7 or 5 nm logic die under load.
COOLING_SHARE = 4.0 / 20.0
LEAKAGE_SHARE = 0.15  # assumption
LEAKAGE_BAND = (0.05, 0.30)  # assumption: the range docs/energy.md states
BUSY_WATTS_BAND = (MEASURED_BUSY_WATTS, 23_000.0)  # measured (Miyajima et al.) to published (the CS-3's ~23 kW)


def static_share(leakage: float = LEAKAGE_SHARE) -> float:
    """The static power's share of the busy system power: the cooling's, plus leakage's share of the rest."""
    return COOLING_SHARE + (1 - COOLING_SHARE) * leakage


@dataclass(frozen=True)
class EnergyModel:
    """Joules per event and the static watts of one core, for one target."""

    target: str
    node_nm: float
    fmac_j: dict  # dtype -> joules per FMAC, the core overhead included
    sram_read_j_per_byte: float  # the core overhead included
    sram_write_j_per_byte: float
    hop_j_per_wavelet: float  # one wavelet over one link (or one ramp into a core)
    io_j_per_byte: float  # over the system I/O (weights in from MemoryX, gradients out, inputs)
    static_w_per_core: float  # assumed (static_share of the system power over the die's cores)
    static_cores: int  # the die's cores, all of which draw static power
    system_watts: float  # the busy power it is calibrated to
    busy_dynamic_watts: float  # the fully busy mesh's dynamic power, before the static
    core_overhead: float  # fitted: the factor on the scaled FMAC and SRAM energies
    leakage_share: float
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
            "cooling_share": COOLING_SHARE, "leakage_share": self.leakage_share, "leakage_band": list(LEAKAGE_BAND),
            "system_watts": self.system_watts, "busy_dynamic_watts": self.busy_dynamic_watts,
            "busy_watts_band": list(BUSY_WATTS_BAND), "core_overhead": self.core_overhead,
            "calibration": "static power assumed: the cooling's share of the busy system power (the CS-1's 4 of 20 "
                           "kW) plus an assumed leakage share of the rest; the core overhead fitted so that every "
                           "core of the mesh running the reference whole-wafer f16 GEMM as simulated "
                           f"({REFERENCE_GEMM['k']} x {REFERENCE_GEMM['n']} weight, {REFERENCE_GEMM['tokens']} tokens) "
                           "draws the system power",
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
    "wse3": (2.02403, 8.09611, 4.04805, 0.01167),
}


def busy_rates(key: str) -> tuple[float, float, float, float]:
    """Per core per cycle of a fully busy core: (f16 FMACs, SRAM bytes read, SRAM bytes written, wavelet-hops)."""
    return BUSY_EVENTS_PER_CORE_CYCLE[key]


def energy_model(machine: Machine, *, system_watts: float | None = None,
                 leakage: float = LEAKAGE_SHARE) -> EnergyModel:
    """The target's energy model, calibrated to ``system_watts`` (the published 23 kW unless given) with
    ``leakage`` as the wafer's leakage share. A custom mesh has a WSE-2's node and power per die core."""
    key = machine.name if machine.name in POWER else "wse2"
    p, ref = POWER[key], MACHINES[key]
    system = p.system_watts if system_watts is None else system_watts
    logic = (p.node_nm / H45_NM) * (p.volts / H45_VOLTS) ** 2
    fmac = {k: v * logic * PJ for k, v in H45_FMAC_PJ.items()}
    sram = H45_SRAM_PJ_PER_BYTE * logic * PJ
    pitch_mm = sqrt(DIE_MM2 / ref.die_cores)
    hop = WAVELET_BITS * pitch_mm * NOC_FJ_PER_BIT_MM * 1e-15 * (p.volts / H45_VOLTS) ** 2

    def busy_watts(m: Machine, overhead: float) -> float:
        fmacs, read, write, hops = busy_rates(key)
        return m.cores * m.clock_hz * (overhead * (fmacs * fmac["f16"] + (read + write) * sram) + hops * hop)

    static_per_core = static_share(leakage) * system / ref.die_cores  # assumed (static_share)
    # the fit: the scaled FMAC and SRAM energies explain 1.7 kW (WSE-2) and 1.2 kW (WSE-3) of a busy wafer;
    # the rest of the busy power less the static is the cores' overhead per event (instruction issue,
    # clocking, control, register files: Horowitz 2014 shows them dominating a programmable core's
    # arithmetic), charged in proportion to the FMAC and SRAM energies. Never below 1 (the events' own).
    hop_watts = busy_watts(ref, 0.0)
    overhead = max(1.0, (system - static_per_core * ref.die_cores - hop_watts) / (busy_watts(ref, 1.0) - hop_watts))
    fmac = {k: v * overhead for k, v in fmac.items()}
    sram *= overhead
    die_cores = machine.die_cores or machine.cores
    busy = busy_watts(machine, 1.0)
    source = (f"{p.source}; per-event energies: Horowitz ISSCC 2014 (45 nm) scaled to {p.node_nm:g} nm at an assumed "
              f"{p.volts} V, times a fitted core overhead of {overhead:.2f}; fabric: Park et al. DATE 2013; static: "
              f"cooling {100 * COOLING_SHARE:.0f}% (CS-1, Tom's Hardware 2019) and leakage {100 * leakage:.0f}% "
              "(assumed); backends/energy.py")
    return EnergyModel(machine.name, p.node_nm, fmac, sram, sram, hop, DRAM_PJ_PER_BYTE * PJ, static_per_core,
                       die_cores, system if machine.name in POWER else static_per_core * die_cores + busy, busy,
                       overhead, leakage, source)
