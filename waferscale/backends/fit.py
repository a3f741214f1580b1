"""How many systems a model needs for generation with everything resident: the weights and the KV
caches in SRAM (``generate.py``'s layer pipeline over ``--systems N`` wafers).

A lower bound from bytes alone: ``ceil((weights + KV caches) / (cores x usable SRAM per core))``.
The placement needs more room than that (each kernel's activations, partial sums and queues, and
rectangles that do not pack perfectly), so a model can need one system more than this says; it is
what quantised weights change first (``passes/quantize.py``: int8 halves an f16 model's weights).
"""

from __future__ import annotations

from math import ceil

from .machine import Machine


def systems_needed(weight_bytes: float, kv_cache_bytes: float, machine: Machine) -> dict:
    """report.json's ``generate.fit``: the bound on systems and what it is made of."""
    per_system = machine.cores * machine.usable_sram_bytes
    resident = weight_bytes + kv_cache_bytes
    return {
        "systems_needed": max(1, ceil(resident / per_system)),
        "resident_bytes": resident,
        "sram_bytes_per_system": per_system,
        "basis": f"lower bound: weights and KV caches ({resident / 1e9:.2f} GB) over the usable SRAM of one "
                 f"{machine.name} ({machine.cores:,} cores x {machine.usable_sram_bytes:,} B = "
                 f"{per_system / 1e9:.2f} GB); placement needs room for activations and queues too",
    }
