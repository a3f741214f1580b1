"""Machine descriptions: WSE-2, WSE-3, a user's machine file, and any custom mesh, as data with their sources.

Each machine is one YAML file (``machines/wse2.yaml``, ``machines/wse3.yaml``; format in
``machine_file.py``, how to write one in docs/wafer.md "Machine files"): every figure with its source,
or marked ``assumed`` with why. A custom mesh (``mesh:RxC,...``) is WSE-2's file with the options
given. Rows are the mesh's y dimension (north to south), columns its x dimension (west to east); the
SDK writes fabric dims as ``width,height``, so WSE-2's ``757,996`` is 996 rows x 757 columns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from pathlib import Path

from ..errors import UnsupportedError, UsageError
from . import machine_file
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
    # The rest came from backends/assumptions.py's globals (issue 27): defaults are a WSE-2's file's.
    reserved_sram_bytes: int = 2048  # per core, for code, the task table and the stack
    elements_per_wavelet: int = 1  # tensor elements in one 32-bit wavelet
    queue_bytes_per_color: int = 64  # SRAM per core for each fabric color a kernel uses
    pe_queue_depth: int = 4  # wavelets of a router's (and a core's) input queue per color
    hop_cycles: int = 1  # router to router
    ramp_cycles: int = 1  # router to its core, or core to its router
    router_delay_cycles: int = 2  # fixed delay at each route's ramps
    inter_system_latency_s: float = 2e-6  # one crossing between systems
    inter_system_link_name: str = "system I/O"
    published_ai_flops: float = 0.0  # the vendor's "AI compute" figure (counts sparsity; 0: none)
    published_sram_bytes_per_s: float = 0.0  # the whole wafer's, as published (0: none)
    published_fabric_bits_per_s: float = 0.0
    sources: tuple = ()  # ((figure, "source" | "assumed", text), ...) as the machine file gives them
    costs: Costs = DEFAULT_COSTS  # cycles per instruction class, each with its source or fit (costs.py)

    def __hash__(self) -> int:  # kept: the GEMM model's lru_cache hashes the machine on every call
        h = self.__dict__.get("_hash")
        if h is None:
            h = hash(tuple(getattr(self, f.name) for f in fields(self)))
            object.__setattr__(self, "_hash", h)
        return h

    def __getstate__(self) -> dict:  # a string's hash differs between processes: the kept one stays here
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}

    @classmethod
    def from_file(cls, path: str | Path) -> Machine:
        """A machine file (``machine_file.py``); a bad one is one UsageError naming the key and the file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            why = getattr(e, "strerror", None) or e
            raise UsageError(f"cannot read machine file {str(path)[:200]}: {why}") from None
        name, source, values, sources = machine_file.parse(text, str(path))
        machine = cls(name=name, source=source, sources=sources, **values)
        machine.check(str(path))
        return machine

    def to_yaml(self) -> str:
        """The machine file's text: ``Machine.from_file`` of it gives this machine back."""
        return machine_file.dump(self.name, self.source, {k: getattr(self, k) for k in machine_file.FIGURES},
                                 self.sources, self.costs)

    def check(self, where: str) -> None:
        """What a machine file's single figures cannot say alone."""
        if self.usable_sram_bytes <= 0:
            raise UsageError(f"{where}: key 'sram_bytes' ({self.sram_bytes}) leaves no SRAM after the "
                             f"{self.reserved_sram_bytes} reserved_sram_bytes per core")
        for dim in ("rows", "cols"):
            if getattr(self, f"fabric_{dim}") and getattr(self, f"fabric_{dim}") < getattr(self, dim):
                raise UsageError(f"{where}: key 'fabric_{dim}' is smaller than '{dim}' (the fabric holds the mesh)")
        if self.rows * self.cols > 10**8:
            raise UsageError(f"{where}: keys 'rows' x 'cols' make over 1e8 cores")
        if self.link_bytes_per_cycle != SIMULATED_LINK_BYTES:
            raise UnsupportedError(f"{LINK_BYTES_UNSUPPORTED}: key 'link_bytes_per_cycle' in {where}")

    def provenance(self, figure: str) -> str:
        """Where a figure comes from, as its file says ('' where it says nothing)."""
        return next((f"{kind}: {text}" for k, kind, text in self.sources if k == figure), "")

    @property
    def cores(self) -> int:
        return self.rows * self.cols

    @property
    def usable_sram_bytes(self) -> int:
        return self.sram_bytes - self.reserved_sram_bytes

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

    def figures(self) -> dict:
        """Every figure of the machine file, by its key (the report's ``machine.figures``)."""
        return {k: getattr(self, k) for k in machine_file.FIGURES}


# The runtimes move one 32-bit wavelet per link per cycle (tile_sim.py, pe_fabric.py, the kernels'
# fabric bounds) and never read link_bytes_per_cycle, so a mesh option that changes it would be
# silently ignored: only a WSE-2's 4 bytes per cycle is accepted.
SIMULATED_LINK_BYTES = 4
LINK_BYTES_UNSUPPORTED = (f"link bandwidth other than {SIMULATED_LINK_BYTES} B/cycle (the simulator moves one "
                          "32-bit wavelet per link per cycle and does not model wider links)")

HERE = Path(__file__).parent / "machines"


def load_machine(name_or_path: str | Path) -> Machine:
    """A shipped machine by name (``wse2``, ``wse3``) or a machine file by path."""
    path = HERE / f"{name_or_path}.yaml" if str(name_or_path) in SHIPPED else Path(name_or_path)
    return Machine.from_file(path)


SHIPPED = ("wse2", "wse3")
WSE2 = load_machine("wse2")
WSE3 = load_machine("wse3")
MACHINES = {m.name: m for m in (WSE2, WSE3)}

_MESH = re.compile(r"mesh:(\d+)x(\d+)((?:,[a-z_]+=[a-z0-9.]+)*)$")
_OVERRIDES = {  # key -> (field, scale)
    "sram_kib": ("sram_bytes", KiB), "fmac": ("fmacs_per_cycle", 1), "clock_ghz": ("clock_hz", 1e9),
    "io_gbs": ("io_bytes_per_s", 1e9), "link_bytes": ("link_bytes_per_cycle", 1),
}


def get_machine(target: str) -> Machine:
    """``wse2``, ``wse3``, a machine file (``path/to/my.yaml``: docs/wafer.md "Machine files"), or
    ``mesh:RxC[,core=wse2][,sram_kib=48][,fmac=4][,clock_ghz=1.1][,io_gbs=150][,link_bytes=4]`` (a custom
    mesh of WSE-2 cores, fabric and I/O, or ``core=wse3``'s, unless overridden)."""
    if target in MACHINES:
        return MACHINES[target]
    if target.endswith((".yaml", ".yml")) or ("/" in target and not target.startswith("mesh:")):
        return Machine.from_file(target)
    m = _MESH.match(target)
    if not m:
        raise UsageError(f"unknown target {target[:80]!r}: use wse2, wse3, a machine file (.yaml) or mesh:RxC "
                         "(optionally mesh:RxC,core=wse3,sram_kib=48,fmac=4,clock_ghz=1.1,io_gbs=150)")
    if max(len(m[1]), len(m[2])) > 9:  # int() of thousands of digits is slow, then refused by Python
        raise UsageError(f"impossible mesh in {target[:80]!r}: rows and columns must be >= 1 (and at most 1e8 cores)")
    rows, cols = int(m[1]), int(m[2])
    if rows < 1 or cols < 1 or rows * cols > 10**8:
        raise UsageError(f"impossible mesh {rows}x{cols}: rows and columns must be >= 1 (and at most 1e8 cores)")
    fields = {}
    items = [item.split("=") for item in filter(None, m[3].split(","))]
    cores = [val for key, val in items if key == "core"]
    if len(cores) > 1 or cores and cores[0] not in MACHINES:
        raise UsageError(f"mesh option core={','.join(cores)[:40]} in {target[:80]!r}: give one of "
                         f"{', '.join(MACHINES)}, the machine whose cores, fabric and I/O the mesh has")
    base = MACHINES[cores[0]] if cores else WSE2
    for key, val in items:
        if key == "core":
            continue
        if key not in _OVERRIDES:
            raise UsageError(f"unknown mesh option {key!r} in {target[:80]!r}: use core, {', '.join(_OVERRIDES)}")
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
        if name == "fmacs_per_cycle":  # f32 keeps the core's ratio to f16
            fields["f32_fmacs_per_cycle"] = v * base.f32_fmacs_per_cycle / base.fmacs_per_cycle
    given = {"rows", "cols", *fields}
    sources = tuple(s for s in base.sources if s[0] not in given) + tuple(
        (k, "source", f"the target {target[:80]}") for k in sorted(given))
    machine = replace(base, name=target, rows=rows, cols=cols, fabric_rows=0, fabric_cols=0, die_cores=0,
                      published_peak_flops=0.0, published_ai_flops=0.0, published_sram_bytes_per_s=0.0,
                      published_fabric_bits_per_s=0.0, source=base.source + "; custom mesh", sources=sources, **fields)
    if machine.usable_sram_bytes <= 0:
        raise UsageError(f"sram_kib in {target[:80]!r} leaves no SRAM after the {machine.reserved_sram_bytes} bytes "
                         "reserved per core for code")
    return machine
