"""What a pass is: a small named unit with typed options, registered by name.

A pass is a frozen dataclass (as in xDSL): its class has a ``name`` and a ``stage``; its fields
are its options, each with a default and a ``doc``, and optionally ``choices``:

    @register
    @dataclass(frozen=True)
    class Place(Pass):
        name = "place"
        stage = PROGRAM
        mode: str = option("pipelined", "execution mode", choices=("pipelined", "streaming"))

        def run(self, s: CompileState) -> CompileState: ...

The stages a compilation goes through are ``graph`` (the IR; graph passes rewrite it), then,
after ``lower``, ``program`` (mesh kernels and flows), ``placed``, ``routed`` and ``simulated``.
A pass declares the stage it needs (``stage``) and the one it leaves (``gives``; the same for
passes that rewrite in place).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..backends.machine import Machine
from ..backends.program import Placement, Program, Routing
from ..errors import UsageError
from ..ir.graph import Graph
from ..runtime.tile_sim import SimResult

GRAPH, PROGRAM, PLACED, ROUTED, SIMULATED = "graph", "program", "placed", "routed", "simulated"
STAGES = (GRAPH, PROGRAM, PLACED, ROUTED, SIMULATED)


@dataclass
class CompileState:
    """What a pipeline works on: the graph, the shape of the run and the machine, and, once the
    graph is lowered, the mesh program and what placement, routing and simulation add to it."""

    graph: Graph
    samples: int = 1  # sequences per run (the batch)
    tokens: int = 1  # tokens per sample
    position: int = 0  # the sequence position of the first token (a decode step at position t reads t cached rows)
    stream_latency: int = 0  # cycles before a streamed weight arrives beyond the link's (SwarmX levels, training)
    machine: Machine | None = None
    program: Program | None = None
    placement: Placement | None = None
    routing: Routing | None = None
    sim: SimResult | None = None
    weights: dict | None = None  # the parameters' data (a WeightStore) when the model has any; sparsify prunes it
    log: Callable[[str], None] = field(default=lambda msg: None, repr=False, compare=False)  # progress

    @property
    def stage(self) -> str:
        if self.sim is not None:
            return SIMULATED
        if self.routing is not None:
            return ROUTED
        if self.placement is not None:
            return PLACED
        return PROGRAM if self.program is not None else GRAPH

    def counts(self) -> dict[str, int]:
        """What a pass's record shows before and after it: ops, or kernels and flows."""
        if self.program is None:
            return {"ops": len(self.graph.ops)}
        return {"kernels": len(self.program.kernels), "flows": len(self.program.flows)}


def option(default: Any, doc: str, choices: tuple | None = None) -> Any:
    return field(default=default, metadata={"doc": doc, "choices": choices})


_TYPES = {"bool": bool, "int": int, "float": float, "str": str}


def type_name(f: dataclasses.Field) -> str:
    return f.type if isinstance(f.type, str) else f.type.__name__


@dataclass(frozen=True)
class Pass:
    name: ClassVar[str]
    stage: ClassVar[str]  # the stage it runs on
    gives: ClassVar[str | None] = None  # the stage it leaves (None: the same)
    needs_machine: ClassVar[bool] = False  # needs --target
    summary: ClassVar[str] = ""

    def run(self, s: CompileState) -> CompileState:
        raise NotImplementedError

    @classmethod
    def options(cls) -> list[dataclasses.Field]:
        return list(dataclasses.fields(cls))

    @classmethod
    def option_help(cls) -> str:
        """``mode=pipelined|streaming (str, default pipelined): execution mode; ...``"""
        parts = []
        for f in cls.options():
            kind = f.metadata.get("choices") and "|".join(map(str, f.metadata["choices"])) or type_name(f)
            parts.append(f"{f.name}={kind} (default {format_value(f.default)}): {f.metadata.get('doc', '')}")
        return "; ".join(parts) or "no options"

    def spec(self) -> str:
        """The pass as a pipeline string writes it, every option with its value."""
        opts = ",".join(f"{f.name}={format_value(getattr(self, f.name))}" for f in self.options())
        return f"{self.name}{{{opts}}}" if opts else self.name

    @property
    def result_stage(self) -> str:
        return self.gives or self.stage

    @property
    def is_graph_pass(self) -> bool:
        """It takes a graph and gives a graph (not ``lower``, which gives a program)."""
        return self.stage == GRAPH and self.result_stage == GRAPH


def format_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def parse_value(cls: type[Pass], f: dataclasses.Field, text: str) -> Any:
    kind = _TYPES[type_name(f)]
    bad = UsageError(f"option {f.name}={text!r} of pass {cls.name!r} is not {'an' if kind is int else 'a'} "
                     f"{type_name(f)}; {cls.name} takes {cls.option_help()}")
    if kind is bool:
        if text not in ("true", "false"):
            raise bad
        value: Any = text == "true"
    elif kind is int:
        try:
            value = int(text)
        except ValueError:
            raise bad from None
    elif kind is float:
        try:
            value = float(text)
        except ValueError:
            raise bad from None
    else:
        value = text
    choices = f.metadata.get("choices")
    if choices is not None and value not in choices:
        raise UsageError(f"option {f.name}={text} of pass {cls.name!r} is not one of {', '.join(map(str, choices))}")
    return value


PASSES: dict[str, type[Pass]] = {}


def register(cls: type[Pass]) -> type[Pass]:
    if cls.name in PASSES:
        raise ValueError(f"two passes named {cls.name!r}")
    for f in dataclasses.fields(cls):
        if type_name(f) not in _TYPES:
            raise TypeError(f"pass {cls.name}: option {f.name} has type {f.type}; options are {', '.join(_TYPES)}")
    PASSES[cls.name] = cls
    return cls
