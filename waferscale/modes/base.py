"""What a mode is, and the spec of one run.

A mode is one way of running a model (a forward pass, a training step, generation). Every mode
has the same face, which is all the driver knows of it:

- ``graphs``: the names of the graphs it traces (``Context.trace`` / ``Context.begin``);
- the pipeline that runs on each: every pass goes through ``Context.pipeline``, which runs it with
  the pass manager and records it, so that the report's ``run.executed`` is what actually ran;
- ``run``: how the simulated times of those graphs combine (its ``Outcome``);
- ``section``: the report section it writes (None: none beyond the common ones);
- ``options``: its options and their defaults; ``splits``: how it spreads over several systems;
- ``baseline``: a second run the report sets this one beside (recorded with its own spec);
- ``own_report``: a mode whose run is not one compiled program (``serve``) makes its report itself
  (with the same ``run`` section); the driver's ``compile_run`` runs it as every mode, checked the
  same way, and hands back what it made as ``Compiled.outcome``.

``RunSpec`` is the complete spec of a run; ``record`` is the report's ``run`` section, from which
``wafer replay`` compiles the same run again.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from ..backends.machine import Machine
from ..errors import UsageError
from ..frontend.traced import Traced
from ..ir import Graph
from ..passes import CompileState, Pass, PassRecord, parse_pipeline, run_pipeline
from ..sources import Source, describe_source, read_ir, replay_source, trace

SPLITS = ("data", "pipeline")  # data parallel, or a pipeline of layers over the systems


@dataclass
class RunSpec:
    """Everything a compile depends on (``example_inputs`` aside: a module is not replayable)."""

    model: Any  # a zoo name, a path, a PretrainedConfig or an nn.Module
    mode: str = "inference"
    options: dict = field(default_factory=dict)  # the mode's own options (Mode.options)
    target: str | None = None  # the machine, with its options (mesh:RxC,sram_kib=..)
    execution: str | None = None  # placement on the wafer: auto, pipelined, streaming (None: the mode's default)
    systems: int | None = None
    split: str | None = None  # data, pipeline (None: the mode's default)
    batch: int = 1
    seq: int | None = None
    dtype: str | None = None
    weights: str = "auto"
    seed: int = 0
    frontend: str = "torch-export"
    pipeline: str | None = None  # a pipeline replacing the default (inference)
    compile_to: str | None = None
    print_ir_after: tuple[str, ...] = ()
    print_ir_after_all: bool = False
    example_inputs: Any = None

    def record(self) -> dict:
        return {"model": describe_source(self.model), "mode": self.mode, "options": dict(self.options),
                "target": self.target, "execution": self.execution, "systems": self.systems, "split": self.split,
                "batch": self.batch, "seq": self.seq, "dtype": self.dtype, "weights": self.weights, "seed": self.seed,
                "frontend": self.frontend, "pipeline": self.pipeline, "compile_to": self.compile_to,
                "print_ir_after": list(self.print_ir_after), "print_ir_after_all": self.print_ir_after_all}

    @classmethod
    def from_record(cls, r: dict) -> RunSpec:
        """The spec of a report's ``run`` section (the model's file checked against its hash)."""
        try:
            keys = {k: r[k] for k in ("mode", "options", "target", "execution", "systems", "split", "batch", "seq",
                                      "dtype", "weights", "seed", "frontend", "pipeline", "compile_to",
                                      "print_ir_after_all")}
            return cls(model=replay_source(r["model"]), print_ir_after=tuple(r["print_ir_after"]), **keys)
        except (KeyError, TypeError) as e:
            raise UsageError(f"the report's run section lacks {e}: it was written by an older waferscale (compile "
                             "again to replay it)") from None


@dataclass
class Outcome:
    """What a mode made: the state whose placement and simulation the report describes, the graph
    of ``model.ir``, and its report section."""

    state: CompileState
    graph: Graph  # model.ir's graph
    ir_text: str  # model.ir
    model: dict  # the report's model section
    compile: dict  # the report's compile section (frontend timings, pass records)
    pipeline: str  # the report's ``pipeline``
    section: dict | None = None  # the mode's report section
    traced: Traced | None = None
    files: dict = field(default_factory=dict)  # further files of the output directory
    program: Any = None  # the program the report's ``program`` describes (None: state.program)
    extra: dict = field(default_factory=dict)  # further report keys


class Context:
    """The driver's services to a mode: tracing the run's model, running pipelines (each recorded
    under its graph's name), the machine and the progress log."""

    def __init__(self, run: RunSpec, machine: Machine | None, log):
        self.run, self.machine, self.log = run, machine, log
        self.executed: dict[str, list[str]] = {}
        self.records: dict[str, list[PassRecord]] = {}

    def begin(self, name: str, done: list[Pass] = ()) -> None:
        """A graph (traced again: its record starts afresh), with the passes an input dump ran."""
        self.executed[name] = [p.spec() for p in done]
        self.records[name] = []

    def trace(self, name: str, *, batch: int | None = None, seq: int | None = None) -> Source:
        r = self.run
        if isinstance(r.model, str) and r.model.endswith(".ir"):
            if r.seq is not None or r.batch != 1:
                raise UsageError(f"{r.model} is a graph with shapes of its own: drop --batch and --seq")
            src = read_ir(r.model, self.log)
        else:
            src = trace(r.model, r.example_inputs, r.batch if batch is None else batch, r.seq if seq is None else seq,
                        r.dtype, r.weights, r.seed, r.frontend, self.log)
        self.begin(name, src.done)
        return src

    def pipeline(self, name: str, state: CompileState, passes: str | list[Pass], *, after=None,
                 record: bool = True) -> tuple[CompileState, list[PassRecord]]:
        """Run passes on the graph ``name`` with the pass manager; recorded unless ``record`` is
        False (a probe whose result is not kept)."""
        passes = parse_pipeline(passes) if isinstance(passes, str) else passes
        state, records = run_pipeline(state, passes, after=after, log=self.log)
        if record:
            self.executed.setdefault(name, []).extend(p.spec() for p in passes)
            self.records.setdefault(name, []).extend(records)
        return state, records

    def executed_pipelines(self) -> dict[str, str]:
        return {name: ",".join(specs) for name, specs in self.executed.items()}


class Mode:
    name: ClassVar[str]
    section: ClassVar[str | None] = None
    graphs: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[dict[str, Any]] = {}
    splits: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str] = ""
    own_report: ClassVar[bool] = False  # True: the mode writes its own report (not the driver's assemble)

    def resolve(self, run: RunSpec) -> RunSpec:
        """The run with every option of the mode (defaults filled in); an unknown one is refused."""
        for k in run.options:
            if k not in self.options:
                raise UsageError(f"mode {self.name} has no option {k!r} (it takes: "
                                 f"{', '.join(self.options) or 'none'})")
        if run.split is not None and run.split not in self.splits:
            raise UsageError(f"not supported: --split {run.split} in mode {self.name} (it takes: "
                             f"{', '.join(self.splits) or 'one system only'})")
        systems = run.systems or 1
        split = run.split or (self.splits[0] if systems > 1 and self.splits else None)  # modes/systems.py
        return replace(run, options={**self.options, **run.options}, split=split)

    def check(self, run: RunSpec) -> None:
        """Refuse a run the mode cannot do, before any work."""

    def run(self, ctx: Context) -> Outcome:
        raise NotImplementedError

    def baseline(self, run: RunSpec) -> RunSpec | None:
        """A second run the report sets this one beside (None: none)."""
        return None

    def compare(self, report: dict, baseline: dict) -> None:
        """Fill this run's section from the baseline's report."""


MODES: dict[str, type[Mode]] = {}


def register_mode(cls: type[Mode]) -> type[Mode]:
    if cls.name in MODES and MODES[cls.name] is not cls:
        raise ValueError(f"two modes named {cls.name!r}")
    MODES[cls.name] = cls
    return cls


def get_mode(name: str) -> Mode:
    if name not in MODES:
        raise UsageError(f"unknown mode {name!r} (known: {', '.join(sorted(MODES))})")
    return MODES[name]()
