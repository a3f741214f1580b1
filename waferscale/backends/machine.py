"""Machine descriptions: WSE-2, WSE-3, and any custom mesh, as data with their sources.

Figures without a public source are assumptions and come from ``assumptions.py``. Rows are the
mesh's y dimension (north to south), columns its x dimension (west to east); the SDK writes
fabric dims as ``width,height``, so WSE-2's ``757,996`` is 996 rows x 757 columns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ..errors import UsageError
from . import assumptions as A

KiB = 1024


@dataclass(frozen=True)
class Machine:
    name: str
    rows: int
    cols: int
    sram_bytes: int  # per core
    fmacs_per_cycle: int  # f16 fused multiply-adds per cycle per core
    clock_hz: float
    sram_bytes_per_cycle: float  # per core, read + write
    link_bytes_per_cycle: int  # per link per direction
    colors: int  # virtual channels on one link
    io_bytes_per_s: float  # system I/O into and out of the wafer (from MemoryX/SwarmX)
    memoryx_bytes: float  # weight store off the wafer, smallest configuration
    source: str = ""

    @property
    def cores(self) -> int:
        return self.rows * self.cols

    @property
    def usable_sram_bytes(self) -> int:
        return self.sram_bytes - A.RESERVED_SRAM_BYTES

    @property
    def peak_flops(self) -> float:
        """Dense f16 FLOP/s of the whole mesh (2 FLOPs per FMAC)."""
        return 2 * self.fmacs_per_cycle * self.cores * self.clock_hz

    def lanes(self, dtype: str) -> float:
        return self.fmacs_per_cycle * (A.F32_RATE if dtype in ("f32", "f64") else 1.0)

    def as_dict(self) -> dict:
        return {
            "name": self.name, "rows": self.rows, "cols": self.cols, "cores": self.cores,
            "sram_bytes_per_core": self.sram_bytes, "usable_sram_bytes_per_core": self.usable_sram_bytes,
            "fmacs_per_cycle": self.fmacs_per_cycle, "clock_hz": self.clock_hz,
            "sram_bytes_per_cycle": self.sram_bytes_per_cycle, "link_bytes_per_cycle": self.link_bytes_per_cycle,
            "colors": self.colors, "io_bytes_per_s": self.io_bytes_per_s, "memoryx_bytes": self.memoryx_bytes,
            "peak_flops": self.peak_flops, "source": self.source,
        }


WSE2 = Machine(
    name="wse2",
    # Cerebras SDK examples: --fabric-dims=757,996 (width, height): the usable fabric of a CS-2.
    # Launch material counts 850,000 cores; the SDK fabric (753,972) is what programs can use.
    rows=996, cols=757,
    # Hot Chips 34 (Sean Lie): 48 KiB of SRAM per PE in 8 banks of 32 bits.
    sram_bytes=48 * KiB,
    # Andromeda articles: 4 FP16 FMACs per cycle per PE.
    fmacs_per_cycle=4,
    clock_hz=A.CLOCK_HZ,  # assumption (see assumptions.py)
    # Launch material: 20 PB/s of memory bandwidth over 850,000 cores at 1.1 GHz = 21.4 B/cycle.
    sram_bytes_per_cycle=20e15 / 850_000 / A.CLOCK_HZ,
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
    source="DESIGN.md section 3: Cerebras SDK, Hot Chips 34, launch material, Andromeda, Argonne SC24, "
           "Cerebras glossary",
)

WSE3 = replace(
    WSE2,
    name="wse3",
    # Cerebras SDK examples: --fabric-dims=762,1172 (width, height).
    rows=1172, cols=762,
    # NextPlatform 2024: 8 FP16 FMACs per cycle per PE.
    fmacs_per_cycle=8,
    # Launch material: 21 PB/s over 900,000 cores; the clock is not published (assumption).
    sram_bytes_per_cycle=21e15 / 900_000 / A.CLOCK_HZ,
    # Cerebras glossary: MemoryX holds 1.5 TB to 1.2 PB for a CS-3; the system I/O is the same 1.2 Tb/s.
    memoryx_bytes=1.5e12,
)

MACHINES = {m.name: m for m in (WSE2, WSE3)}

_MESH = re.compile(r"mesh:(\d+)x(\d+)((?:,[a-z_]+=[0-9.]+)*)$")
_OVERRIDES = {  # key -> (field, scale)
    "sram_kib": ("sram_bytes", KiB), "fmac": ("fmacs_per_cycle", 1), "clock_ghz": ("clock_hz", 1e9),
    "io_gbs": ("io_bytes_per_s", 1e9),
}


def get_machine(target: str) -> Machine:
    """``wse2``, ``wse3``, or ``mesh:RxC[,sram_kib=48][,fmac=4][,clock_ghz=1.1][,io_gbs=150]`` (a
    custom mesh of WSE-2 cores and I/O unless overridden)."""
    if target in MACHINES:
        return MACHINES[target]
    m = _MESH.match(target)
    if not m:
        raise UsageError(f"unknown target {target!r}: use wse2, wse3 or mesh:RxC "
                         "(optionally mesh:RxC,sram_kib=48,fmac=4,clock_ghz=1.1,io_gbs=150)")
    rows, cols = int(m[1]), int(m[2])
    if rows < 1 or cols < 1 or rows * cols > 10**8:
        raise UsageError(f"impossible mesh {rows}x{cols}: rows and columns must be >= 1 (and at most 1e8 cores)")
    fields = {}
    for item in filter(None, m[3].split(",")):
        key, val = item.split("=")
        if key not in _OVERRIDES:
            raise UsageError(f"unknown mesh option {key!r} in {target!r}: use {', '.join(_OVERRIDES)}")
        name, scale = _OVERRIDES[key]
        v = float(val) * scale
        if v <= 0:
            raise UsageError(f"mesh option {key} must be positive in {target!r}")
        fields[name] = v if name in ("clock_hz", "io_bytes_per_s") else int(v)
    machine = replace(WSE2, name=target, rows=rows, cols=cols, source=WSE2.source + "; custom mesh", **fields)
    if machine.usable_sram_bytes <= 0:
        raise UsageError(f"sram_kib in {target!r} leaves no SRAM after the {A.RESERVED_SRAM_BYTES} bytes "
                         "reserved per core for code")
    return machine
