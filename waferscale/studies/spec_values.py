"""The values of a sweep spec's keys (``sweep_spec.py``), checked one by one: each a number, a name
or a pipeline of what its axis accepts, normalized; and which axes go with which of the driver's
modes. Every problem is a message for the caller's ``bad(key, ...)``, one line."""

from __future__ import annotations

import re
from typing import Any

from ..errors import UsageError
from ..safe_read import short

# axis -> (what it accepts, for messages); the order is the grid's (model outermost: a trace is shared
# by the points of one model, dtype, batch and seq, which the grid keeps together)
AXES = {
    "model": "zoo names (`wafer models`) or Hugging Face GPT-2 config paths",
    "dtype": "f16, bf16 or f32",
    "batch": "positive integers",
    "seq": "positive integers (default: each model's context)",
    "mode": "pipelined, streaming or auto (the execution mode); or inference, train or generate (the driver's mode), "
            "or serve (`wafer serve`: synthetic requests at a rate)",
    "execution": "pipelined, streaming or auto (the execution mode of a driver mode)",
    "pipeline": "pipeline strings ending in ...,route,simulate (`wafer passes`)",
    "density": "numbers in (0, 1]: the fraction of each linear weight kept (sparsify{density=D}; 1 is dense)",
    "mesh": "RxC strings such as 128x128",
    "rows": "non-negative integers",
    "cols": "non-negative integers",
    "sram_kib": "positive numbers (KiB of SRAM per core)",
    "fmac": "positive integers (f16 FMAC lanes per core)",
    "clock_ghz": "positive numbers",
    "io_gbs": "positive numbers (GB/s of system I/O)",
    "link_bytes": "4 (bytes per link per cycle)",
    "systems": "positive integers (systems the run spreads over)",
    "split": "data or pipeline (how the run spreads over the systems); serve: the prefill share in (0, 1)",
    "prompt_len": "positive integers (generate's prompt)",
    "new_tokens": "positive integers (generate's new tokens)",
    "lora": "lora{...} pass strings (train: fine-tune adapters only)",
    "rate": "positive numbers (serve: requests per second)",
    "policy": "colocated or disaggregated (serve)",
    "requests": "positive integers (serve: synthetic requests a point; default 200)",
    "slo_ttft": "positive numbers (serve: goodput's time to first token at most, seconds)",
    "slo_tpot": "positive numbers (serve: goodput's time per output token at most, seconds)",
    "placement": "auto, latency or throughput (serve: each engine's placement, `wafer serve --placement`)",
}
RUN_MODES = ("inference", "train", "generate", "serve")
SERVE_KEYS = ("rate", "policy", "requests", "slo_ttft", "slo_tpot", "placement")
PLACEMENTS = ("auto", "latency", "throughput")  # modes/serve.py's (a test holds them equal)
POLICIES = ("colocated", "disaggregated")
MODES = ("pipelined", "streaming", "auto")


def check_modes(data: dict[str, Any], bad) -> None:
    """The driver's modes and the axes that belong to one of them."""
    modes = data.get("mode", "auto")
    modes = modes if isinstance(modes, list) else [modes]
    run = [m for m in modes if m in RUN_MODES]
    if not run:
        if "execution" in data:
            raise bad("execution", "goes with mode: inference, train or generate, or serve (else mode is the "
                                   "execution mode)")
        run = ["inference"]
    elif len(run) != len(modes):
        raise bad("mode", f"mixes the driver's modes ({', '.join(RUN_MODES)}) with execution modes: give those "
                          "under execution")
    elif "pipeline" in data:
        raise bad("pipeline", "goes with the forward pass (mode: auto, pipelined, streaming), not mode: "
                              f"{', '.join(run)}")
    for key, mode in (("prompt_len", "generate"), ("new_tokens", "generate"), ("lora", "train"),
                      *((k, "serve") for k in SERVE_KEYS)):
        if key in data and run != [mode] and not (mode == "generate" and run == ["serve"]):
            raise bad(key, f"is {mode}'s option: give it with mode: {mode} alone")
    if "serve" in run:
        _check_serve(data, bad)
        return
    if "generate" in run and not ("prompt_len" in data and "new_tokens" in data):
        raise bad("mode", "generate needs prompt_len and new_tokens")
    if "generate" in run and ("seq" in data or "density" in data):
        raise bad("seq" if "seq" in data else "density", "does not go with mode: generate (its lengths are "
                  "prompt_len and new_tokens)")
    splits = data.get("split", [])
    for s in splits if isinstance(splits, list) else [splits]:
        if s not in ("data", "pipeline"):
            raise bad("split", f"{short(s)} is not data or pipeline")


def _check_serve(data: dict[str, Any], bad) -> None:
    """mode: serve: a rate; the split a prefill share; prompt_len and new_tokens fixed lengths (else
    `wafer serve`'s default distributions)."""
    if "rate" not in data:
        raise bad("mode", "serve needs rate (requests per second)")
    for key in ("seq", "density", "lora"):
        if key in data:
            raise bad(key, "does not go with mode: serve (its lengths are prompt_len and new_tokens)")
    # execution: pipelined or streaming (`wafer serve --mode`); auto, the sweep's default, serves pipelined
    splits = data.get("split", [])
    for s in splits if isinstance(splits, list) else [splits]:
        n = number(s)
        if n is None or not 0 < n < 1:
            raise bad("split", f"{short(s)} is not a prefill share strictly between 0 and 1 (mode: serve)")
    policies = data.get("policy", [])
    for p in policies if isinstance(policies, list) else [policies]:
        if p not in POLICIES:
            raise bad("policy", f"{short(p)} is not one of {', '.join(POLICIES)}")
    kinds = data.get("placement", [])
    for p in kinds if isinstance(kinds, list) else [kinds]:
        if p not in PLACEMENTS:
            raise bad("placement", f"{short(p)} is not one of {', '.join(PLACEMENTS)}")


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def number(v: Any) -> float | int | None:
    """An int or float (a numeric string too, as flags give them); integral values become ints."""
    if isinstance(v, bool):
        return None
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            return None
    if not isinstance(v, int | float) or v != v or v in (float("inf"), float("-inf")):
        return None
    return int(v) if float(v).is_integer() else v


def check_value(key: str, v: Any, bad) -> Any:
    """One value of an axis, checked and normalized."""
    from ..backends.machine import LINK_BYTES_UNSUPPORTED, SIMULATED_LINK_BYTES

    if key == "split" and number(v) is not None:  # serve's prefill share (check_modes has checked it)
        return _text(number(v))
    if key in ("model", "mode", "pipeline", "mesh", "dtype", "execution", "split", "lora", "policy",
               "placement"):
        if not isinstance(v, str) or not v.strip():
            raise bad(f"{short(v)} is not a string; it takes {AXES[key]}")
        v = v.strip()
        if key == "mode" and v not in MODES + RUN_MODES:
            raise bad(f"{short(v)} is not one of {', '.join(MODES + RUN_MODES)}")
        if key == "execution" and v not in MODES:
            raise bad(f"{short(v)} is not one of {', '.join(MODES)}")
        if key == "lora":
            from ..passes.pipeline import parse_pipeline

            try:
                (p,) = parse_pipeline(v)
            except (UsageError, ValueError) as e:
                raise bad(f"{short(v)} is not one lora{{...}} pass ({e})") from None
            if p.name != "lora":
                raise bad(f"{short(v)} is not a lora{{...}} pass")
        if key == "dtype" and v not in ("f16", "bf16", "f32"):
            raise bad(f"{short(v)} is not one of f16, bf16, f32")
        if key == "mesh":
            m = re.fullmatch(r"(?:mesh:)?(\d+)x(\d+)", v)
            if not m:
                raise bad(f"{short(v)} is not RxC (rows x columns, such as 128x128)")
            v = f"{int(m[1])}x{int(m[2])}"
        if key == "pipeline":
            from ..passes.pipeline import parse_pipeline

            try:
                parse_pipeline(v)
            except UsageError as e:
                raise bad(str(e)) from None
            v = re.sub(r"\s+", "", v)
        return v
    n = number(v)
    if key in ("batch", "seq", "rows", "cols", "fmac", "link_bytes", "systems", "prompt_len", "new_tokens", "requests"):
        low = 0 if key in ("rows", "cols") else 1
        if not isinstance(n, int) or n < low:
            raise bad(f"{short(v)} is not {'a non-negative' if low == 0 else 'a positive'} integer")
        if key == "link_bytes" and n != SIMULATED_LINK_BYTES:
            raise bad(f"not supported: {LINK_BYTES_UNSUPPORTED}")
        return n
    if n is None or n <= 0:
        raise bad(f"{short(v)} is not a positive number; it takes {AXES[key]}")
    if key == "density":
        if n > 1:
            raise bad(f"{short(v)} is not in (0, 1]")
    return n


def _text(v: float) -> str:
    return str(v) if isinstance(v, int) else f"{v:.12f}".rstrip("0").rstrip(".")


def context(model: str, bad) -> int:
    from ..frontend.lm import arch, resolve

    try:
        kind, entry = resolve(model)
    except UsageError as e:
        raise bad(str(e)) from None
    return entry.context if kind == "zoo" else arch(entry)["context"]
