"""Machine descriptions: WSE-2, WSE-3, and any custom mesh, as data with their sources.

Figures without a public source are assumptions and come from ``assumptions.py``. Rows are the
mesh's y dimension (north to south), columns its x dimension (west to east); the SDK writes
fabric dims as ``width,height``, so WSE-2's ``757,996`` is 996 rows x 757 columns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ..errors import UnsupportedError, UsageError
from . import assumptions as A
from .costs import DEFAULT as DEFAULT_COSTS
from .costs import Costs
from .datapath import Datapath, accumulator_bytes

KiB = 1024


@dataclass(frozen=True)
class Machine:
    name: str
    rows: int  # the mesh a program gets (WSE-2: the SDK fabric less the host-memcpy columns and halo)
    cols: int
    sram_bytes: int  # per core
    fmacs_per_cycle: int  # f16 fused multiply-adds per cycle per core (the SIMD width)
    clock_hz: float
    link_bytes_per_cycle: int  # per link per direction
    colors: int  # virtual channels on one link
    io_bytes_per_s: float  # system I/O into and out of the wafer (from MemoryX/SwarmX)
    memoryx_bytes: float  # weight store off the wafer, smallest configuration
    source: str = ""
    f32_fmacs_per_cycle: float = 1.0  # f32 FMACs per cycle per core
    sram_port_bytes: int = 8  # one SRAM port's width per cycle
    sram_read_ports: int = 2
    sram_write_ports: int = 1
    fabric_rows: int = 0  # the whole fabric, as the SDK gives it (0: the mesh itself)
    fabric_cols: int = 0
    die_cores: int = 0  # the die's cores as published (0: the mesh's)
    published_peak_flops: float = 0.0  # dense f16 FLOP/s as the vendor publishes it (0: none)
    costs: Costs = DEFAULT_COSTS  # cycles per instruction class, each with its source or fit (costs.py)

    @property
    def cores(self) -> int:
        return self.rows * self.cols

    @property
    def usable_sram_bytes(self) -> int:
        return self.sram_bytes - A.RESERVED_SRAM_BYTES

    @property
    def sram_bytes_per_cycle(self) -> int:
        """Per core, all ports: reads and writes."""
        return self.sram_port_bytes * (self.sram_read_ports + self.sram_write_ports)

    @property
    def peak_flops(self) -> float:
        """Dense f16 FLOP/s of the mesh a program gets (2 FLOPs per FMAC, every usable core)."""
        return 2 * self.fmacs_per_cycle * self.cores * self.clock_hz

    @property
    def die_peak_flops(self) -> float:
        """Dense f16 FLOP/s of every core of the die, usable or not."""
        return 2 * self.fmacs_per_cycle * (self.die_cores or self.cores) * self.clock_hz

    @property
    def mfu_peak_flops(self) -> float:
        """The peak MFU is measured against: the published dense peak, else the die's."""
        return self.published_peak_flops or self.die_peak_flops

    @property
    def mfu_basis(self) -> str:
        if self.published_peak_flops:
            return f"published dense f16 peak, {self.published_peak_flops / 1e15:g} PFLOP/s"
        return (f"dense f16 peak of all {self.die_cores or self.cores:,} cores at {self.clock_hz / 1e9:g} GHz "
                f"(none published), {self.die_peak_flops / 1e15:.2f} PFLOP/s")

    def lanes(self, dtype: str) -> float:
        return self.f32_fmacs_per_cycle if dtype in ("f32", "f64") else self.fmacs_per_cycle

    def datapath(self, dtype: str) -> Datapath:
        """The vector rate of one core for ``dtype`` (``datapath.py``): lanes, operand and
        accumulator bytes, port width."""
        from ..ir.types import DTYPES  # here, not at the top: `wafer` checks a --target without loading the IR

        return Datapath(lanes=self.lanes(dtype), elem=DTYPES[dtype][1] if dtype in DTYPES else 4,
                        acc=accumulator_bytes(dtype), port=self.sram_port_bytes, costs=self.costs)

    def as_dict(self) -> dict:
        return {
            "name": self.name, "rows": self.rows, "cols": self.cols, "cores": self.cores,
            "fabric_rows": self.fabric_rows or self.rows, "fabric_cols": self.fabric_cols or self.cols,
            "die_cores": self.die_cores or self.cores,
            "sram_bytes_per_core": self.sram_bytes, "usable_sram_bytes_per_core": self.usable_sram_bytes,
            "fmacs_per_cycle": self.fmacs_per_cycle, "f32_fmacs_per_cycle": self.f32_fmacs_per_cycle,
            "clock_hz": self.clock_hz,
            "sram_bytes_per_cycle": self.sram_bytes_per_cycle, "sram_port_bytes": self.sram_port_bytes,
            "sram_read_ports": self.sram_read_ports, "sram_write_ports": self.sram_write_ports,
            "link_bytes_per_cycle": self.link_bytes_per_cycle,
            "colors": self.colors, "io_bytes_per_s": self.io_bytes_per_s, "memoryx_bytes": self.memoryx_bytes,
            "peak_flops": self.peak_flops, "die_peak_flops": self.die_peak_flops,
            "published_peak_flops": self.published_peak_flops or None,
            "mfu_peak_flops": self.mfu_peak_flops, "mfu_basis": self.mfu_basis, "source": self.source,
        }


WSE2 = Machine(
    name="wse2",
    # Cerebras SDK examples: --fabric-dims=757,996 (width, height): the fabric of a CS-2. A program
    # gets 750 x 994 = 745,500 PEs of it: the host memcpy framework takes 3 columns on the west and
    # 2 on the east, plus a halo of one PE all round (Cerebras SDK documentation, "Host Runtime and
    # Tensor Streaming"; Miyajima et al. 2026 and Ltaief et al. SC23 report 745,500 PEs per CS-2).
    rows=994, cols=750, fabric_rows=996, fabric_cols=757,
    # Launch material and Hot Chips 34: 850,000 cores on the die.
    die_cores=850_000,
    # Hot Chips 34 (Sean Lie): 48 KiB of SRAM per PE in 8 banks of 32 bits.
    sram_bytes=48 * KiB,
    # Hot Chips 34 (Lie) and Andromeda articles: 4 FP16 FMACs per cycle per PE (SIMD-4); FP32 1 per
    # cycle (Lie; WaferLLM section 7 describes one 32-bit FMAC per cycle).
    fmacs_per_cycle=4, f32_fmacs_per_cycle=1.0,
    # Lie, Hot Chips 34 (2022) and IEEE Micro 43(3) 2023: 1.1 GHz; also WaferLLM section 7.
    clock_hz=1.1e9,
    # Lie, Hot Chips 34 / IEEE Micro 2023: two 64-bit reads and one 64-bit write per cycle per PE.
    sram_port_bytes=8, sram_read_ports=2, sram_write_ports=1,
    # Cerebras SDK docs: one 32-bit wavelet per neighbour per cycle per direction.
    link_bytes_per_cycle=4,
    # Cerebras SDK docs: 24 routing colors.
    colors=24,
    # Argonne SC24 tutorial: 12 x 100 GbE = 1.2 Tb/s = 150 GB/s from MemoryX/SwarmX. In weight-streaming
    # mode the weights arrive over this link; SwarmX is the fabric that broadcasts them to (and reduces
    # gradients from) several systems, which one system does not need.
    io_bytes_per_s=150e9,
    # Cerebras glossary: MemoryX holds 4 TB to 2.4 PB for a CS-2; the smallest is what we check against.
    memoryx_bytes=4e12,
    # Cerebras, Andromeda announcement (Nov 2022): 16 CS-2 give 120 PFLOP/s dense FP16: 7.5 per CS-2.
    published_peak_flops=7.5e15,
    source="DESIGN.md section 3 and shared/calibration/published_kernels.json: Cerebras SDK, Hot Chips 34, "
           "launch material, Andromeda, Argonne SC24, Cerebras glossary",
)

WSE3 = replace(
    WSE2,
    name="wse3",
    # Cerebras SDK examples: --fabric-dims=762,1172 (width, height). A program gets it less the same
    # memcpy columns and halo as a WSE-2 (assumption: the SDK describes one memcpy framework).
    rows=1170, cols=755, fabric_rows=1172, fabric_cols=762,
    # Launch material (2024): 900,000 cores.
    die_cores=900_000,
    # NextPlatform 2024: 8 FP16 FMACs per cycle per PE; FP32 is not published (assumption).
    fmacs_per_cycle=8, f32_fmacs_per_cycle=A.WSE3_F32_FMACS,
    # The clock is not published (assumption); nor are the SRAM ports: a WSE-2's (the published 21 PB/s
    # over 900,000 cores is 21 B/cycle at this clock, as a WSE-2's 24 B/cycle ports give).
    clock_hz=A.WSE3_CLOCK_HZ,
    # Cerebras glossary: MemoryX holds 1.5 TB to 1.2 PB for a CS-3; the system I/O is the same 1.2 Tb/s.
    memoryx_bytes=1.5e12,
    # Cerebras publishes 125 PFLOP/s of sparse "AI compute" for a CS-3, no dense figure: MFU is against
    # the die's dense peak at the assumed clock.
    published_peak_flops=0.0,
)

MACHINES = {m.name: m for m in (WSE2, WSE3)}

_MESH = re.compile(r"mesh:(\d+)x(\d+)((?:,[a-z_]+=[0-9.]+)*)$")
_OVERRIDES = {  # key -> (field, scale)
    "sram_kib": ("sram_bytes", KiB), "fmac": ("fmacs_per_cycle", 1), "clock_ghz": ("clock_hz", 1e9),
    "io_gbs": ("io_bytes_per_s", 1e9), "link_bytes": ("link_bytes_per_cycle", 1),
}
# The runtimes move one 32-bit wavelet per link per cycle (tile_sim.py, pe_fabric.py, the kernels'
# fabric bounds) and never read link_bytes_per_cycle, so a mesh option that changes it would be
# silently ignored: only a WSE-2's 4 bytes per cycle is accepted.
SIMULATED_LINK_BYTES = 4
LINK_BYTES_UNSUPPORTED = (f"link bandwidth other than {SIMULATED_LINK_BYTES} B/cycle (the simulator moves one "
                          "32-bit wavelet per link per cycle and does not model wider links)")


def get_machine(target: str) -> Machine:
    """``wse2``, ``wse3``, or ``mesh:RxC[,sram_kib=48][,fmac=4][,clock_ghz=1.1][,io_gbs=150][,link_bytes=4]``
    (a custom mesh of WSE-2 cores and I/O unless overridden)."""
    if target in MACHINES:
        return MACHINES[target]
    m = _MESH.match(target)
    if not m:
        raise UsageError(f"unknown target {target[:80]!r}: use wse2, wse3 or mesh:RxC "
                         "(optionally mesh:RxC,sram_kib=48,fmac=4,clock_ghz=1.1,io_gbs=150)")
    if max(len(m[1]), len(m[2])) > 9:  # int() of thousands of digits is slow, then refused by Python
        raise UsageError(f"impossible mesh in {target[:80]!r}: rows and columns must be >= 1 (and at most 1e8 cores)")
    rows, cols = int(m[1]), int(m[2])
    if rows < 1 or cols < 1 or rows * cols > 10**8:
        raise UsageError(f"impossible mesh {rows}x{cols}: rows and columns must be >= 1 (and at most 1e8 cores)")
    fields = {}
    for item in filter(None, m[3].split(",")):
        key, val = item.split("=")
        if key not in _OVERRIDES:
            raise UsageError(f"unknown mesh option {key!r} in {target[:80]!r}: use {', '.join(_OVERRIDES)}")
        name, scale = _OVERRIDES[key]
        try:
            v = float(val) * scale
        except ValueError:  # the pattern lets through '1.2.3' and '.'
            raise UsageError(f"mesh option {key}={val[:40]} is not a number in {target[:80]!r}") from None
        if not v > 0 or v == float("inf"):
            raise UsageError(f"mesh option {key} must be a positive number in {target[:80]!r}")
        if name not in ("clock_hz", "io_bytes_per_s") and v != int(v):
            raise UsageError(f"mesh option {key} must be a whole number in {target[:80]!r} (got {val})")
        if key == "link_bytes" and v != SIMULATED_LINK_BYTES:
            raise UnsupportedError(f"{LINK_BYTES_UNSUPPORTED}: {target[:80]!r}")
        fields[name] = v if name in ("clock_hz", "io_bytes_per_s") else int(v)
        if name == "fmacs_per_cycle":  # f32 keeps a WSE-2's ratio to f16
            fields["f32_fmacs_per_cycle"] = v * WSE2.f32_fmacs_per_cycle / WSE2.fmacs_per_cycle
    machine = replace(WSE2, name=target, rows=rows, cols=cols, fabric_rows=0, fabric_cols=0, die_cores=0,
                      published_peak_flops=0.0, source=WSE2.source + "; custom mesh", **fields)
    if machine.usable_sram_bytes <= 0:
        raise UsageError(f"sram_kib in {target[:80]!r} leaves no SRAM after the {A.RESERVED_SRAM_BYTES} bytes "
                         "reserved per core for code")
    return machine
