"""Pipelines: a string of passes with options, checked against the stages before anything runs,
then run in order, each verified, timed and counted.

    canonicalize,fuse{epilogues=true},lower,place{mode=pipelined},route,simulate{chunk=64}

A pass is written as its name, with ``{option=value,...}`` where it has options to set; options
left out keep their defaults. ``spec`` writes a pipeline back with every option, which is what a
report records, so that any result can be reproduced from the report alone.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, fields

from ..errors import UsageError
from ..ir import verify
from .base import GRAPH, PASSES, PROGRAM, STAGES, CompileState, Pass, parse_value

DEFAULT_GRAPH = "canonicalize"  # `wafer compile` without --target
DEFAULT_WAFER = "canonicalize,fuse,lower,place,route,simulate"  # with --target


def _items(text: str) -> list[str]:
    """Split at the commas that are not inside braces."""
    items, depth, start = [], 0, 0
    for i, c in enumerate(text):
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth < 0:
                raise UsageError(f"unbalanced '}}' in pipeline {text!r}")
        elif c == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    if depth:
        raise UsageError(f"unbalanced '{{' in pipeline {text!r}")
    items.append(text[start:])
    return [x.strip() for x in items if x.strip()]


_ITEM = re.compile(r"([A-Za-z][A-Za-z0-9_-]*)\s*(?:\{(.*)\})?", re.S)


def parse_pipeline(text: str) -> list[Pass]:
    """The passes of a pipeline string; an unknown pass or option, or an ill-typed value, is a
    UsageError that lists what is accepted."""
    passes = []
    for item in _items(text):
        m = _ITEM.fullmatch(item)
        if not m:
            raise UsageError(f"malformed pass {item!r} in pipeline {text!r}: write NAME or NAME{{option=value,...}}")
        name, body = m.group(1), m.group(2)
        cls = PASSES.get(name)
        if cls is None:
            raise UsageError(f"unknown pass {name!r} in pipeline {text!r} (known: {', '.join(sorted(PASSES))})")
        known = {f.name: f for f in fields(cls)}
        values = {}
        for pair in filter(None, (p.strip() for p in (body or "").split(","))):
            key, eq, raw = (x.strip() for x in pair.partition("="))
            if not eq or not key:
                raise UsageError(f"malformed option {pair!r} of pass {name!r}: write option=value")
            if key not in known:
                raise UsageError(f"pass {name!r} has no option {key!r}; it takes {cls.option_help()}")
            if key in values:
                raise UsageError(f"option {key!r} of pass {name!r} is given twice")
            values[key] = parse_value(cls, known[key], raw)
        passes.append(cls(**values))
    return passes


def spec(passes: list[Pass]) -> str:
    return ",".join(p.spec() for p in passes)


def _giver(stage: str) -> str:
    """The pass that leads to a stage."""
    return next((c.name for c in PASSES.values() if c.gives == stage), "?")


def check_stages(passes: list[Pass], start: str = GRAPH) -> None:
    """Every pass finds the stage it needs; otherwise a UsageError that says what to put where."""
    stage = start
    for p in passes:
        if p.stage != stage:
            if p.stage == GRAPH:
                why = (f"pass {p.name!r} rewrites the graph, but '{_giver(PROGRAM)}' has turned it into a mesh "
                       f"program before it: put graph passes before '{_giver(PROGRAM)}'")
            elif STAGES.index(p.stage) > STAGES.index(stage):
                why = f"pass {p.name!r} needs the {p.stage} stage: put '{_giver(p.stage)}' before it"
            else:
                why = f"pass {p.name!r} runs on the {p.stage} stage, and the pipeline is past it there (at {stage})"
            raise UsageError(f"{why} (pipeline {spec(passes)})")
        stage = p.result_stage


@dataclass(frozen=True)
class PassRecord:
    name: str
    spec: str
    seconds: float
    before: dict[str, int]
    after: dict[str, int]

    def as_dict(self) -> dict:
        return {"name": self.name, "pass": self.spec, "seconds": self.seconds, "before": self.before,
                "after": self.after}


def run_pipeline(state: CompileState, passes: list[Pass], *, after: Callable[[int, Pass, CompileState], None]
                 | None = None, log: Callable[[str], None] = lambda msg: None
                 ) -> tuple[CompileState, list[PassRecord]]:
    """Run the passes in order. A graph pass's result is verified; ``after(i, pass, state)`` is
    called after each (the dumps of --print-ir-after)."""
    check_stages(passes, state.stage)
    records = []
    for i, p in enumerate(passes):
        before, t0 = state.counts(), time.perf_counter()
        state = p.run(state)
        if p.is_graph_pass:
            verify(state.graph)
        seconds = time.perf_counter() - t0
        records.append(PassRecord(p.name, p.spec(), seconds, before, state.counts()))
        log(f"pass {p.spec()}: {describe_change(before, state.counts())} in {seconds:.2f} s")
        if after is not None:
            after(i, p, state)
    return state, records


_ORDER = ("ops", "kernels", "flows")


def describe_change(before: dict, after: dict) -> str:
    """'296 -> 206 ops', or '206 ops -> 53 kernels, 97 flows' when what is counted changes."""
    def counts(d):
        return ", ".join(f"{d[k]} {k}" for k in sorted(d, key=_ORDER.index))
    if set(before) == set(after):
        return ", ".join(f"{before[k]} -> {after[k]} {k}" for k in sorted(before, key=_ORDER.index))
    return f"{counts(before)} -> {counts(after)}"
