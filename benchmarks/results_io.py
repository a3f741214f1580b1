"""What every benchmark writes beside its figures: the command that produced them, the machine
it ran on, and the results as JSON and Markdown under benchmarks/results/."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def command() -> str:
    """The command line that ran this benchmark, as a reader would type it."""
    return ("python benchmarks/" + Path(sys.argv[0]).name + " " + " ".join(sys.argv[1:])).strip()


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write(name: str, record: dict, markdown: str, indent: int = 2) -> None:
    """benchmarks/results/NAME.json and NAME.md."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=indent) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown)
