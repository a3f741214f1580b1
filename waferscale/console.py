"""What every `wafer` command shares with the modules that hold some of them (``cli_train``,
``cli_generate``): progress on stderr, and comma-separated option values."""

from __future__ import annotations

import sys
import time


def progress(quiet: bool):
    """A log function: each message on stderr with the seconds since now, or nothing when quiet."""
    start = time.perf_counter()

    def log(msg: str) -> None:
        if not quiet:
            print(f"[{time.perf_counter() - start:6.2f}s] {msg}", file=sys.stderr, flush=True)
    return log


def comma_names(values: list[str] | None) -> tuple[str, ...]:
    """The names of repeatable, comma-separated option values (``--print-ir-after a,b --print-ir-after c``)."""
    return tuple(n.strip() for v in values or [] for n in v.split(",") if n.strip())
