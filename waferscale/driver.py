"""The compiler driver: a model in, a report out.

``compile_model`` reads the model (a zoo name, a Hugging Face config or a user's ``nn.Module``
with example inputs, traced by a frontend; a torch-dialect ``.mlir`` file; or a text ``.ir`` file
such as a dump of an earlier compile), runs
one pipeline of passes on it (``passes/``: the graph passes, then, with a target, lower, place,
route and simulate), and assembles the report; ``write_compiled`` writes the output directory,
all of it or nothing.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .backends.machine import get_machine
from .backends.program import program_text
from .errors import UsageError
from .frontend.ir_file import header, read_ir_file
from .frontend.lm import trace_lm
from .frontend.traced import Traced
from .ir import Graph, print_graph, verify
from .passes import CompileState, Pass, parse_pipeline, run_pipeline, spec
from .passes.base import GRAPH, SIMULATED
from .plan import plan_passes
from .report.html import report_html
from .report.mesh_plot import mesh_png
from .report.stats import model_stats
from .report.summary import replace_dir, to_json, to_text
from .report.trace import chrome_trace
from .report.wafer import placement_json, placement_text, wafer_report
from .version import __version__


def peak_rss_bytes() -> int:
    # ru_maxrss is in KiB on Linux (bytes on macOS)
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


@dataclass
class Compiled:
    """What a compile made (``waferscale.compile`` returns it): the report, the IR, the program and
    its placement, and ``run`` for the numbers."""

    report: dict
    state: CompileState  # the graph after the pipeline, and what the wafer passes made of it
    ir_text: str  # model.ir: the graph after the graph passes, with the header that lets it resume
    traced: Traced | None = None  # the frontend's result (None for a .ir input)
    files: dict[str, str] = field(default_factory=dict)  # model.mlir, ir/NN-PASS.ir dumps
    started: float = 0.0  # perf_counter at the start, for the end-to-end time

    @property
    def ir(self) -> str:
        """The text IR after the graph passes (``model.ir``)."""
        return self.ir_text

    @property
    def graph(self) -> Graph:
        return self.state.graph

    @property
    def program(self):
        """The mesh kernels and flows (after ``lower``), or None."""
        return self.state.program

    @property
    def placement(self) -> dict | None:
        """``placement.json`` as a dict (per kernel its rectangle, cores, SRAM per core by buffer,
        cycles; per flow its route), once the program is simulated; else None."""
        if self.state.placement is None or self.state.routing is None:
            return None
        return placement_json(self.state) if self.state.stage == SIMULATED else None

    def summary(self) -> str:
        """``report.txt``: the report for people."""
        text = to_text(self.report)
        if self.state.stage == SIMULATED:
            text += placement_text(self.report, placement_json(self.state))
        return text

    def run(self, *inputs, placed: bool | None = None) -> list[np.ndarray]:
        """The outputs for these inputs (arrays or tensors in the order of the graph's inputs, or one
        dict by input name), computed with the model's own weights: by the placed numerics (every
        kernel tile by tile on its rectangle, ``runtime/placed_run.py``) once the program is placed,
        else (or with ``placed=False``) by the NumPy interpreter on the compiled graph."""
        g = self.state.graph
        if self.traced is None or self.traced.weights is None:
            raise UsageError("this compile has no weights to compute with (a model traced on the meta device, or a "
                             ".ir/.mlir file): compile it with weights='random', or a module with real parameters")
        if len(inputs) == 1 and isinstance(inputs[0], dict):
            feed = dict(inputs[0])
        else:
            if len(inputs) != len(g.inputs):
                raise UsageError(f"the graph takes {len(g.inputs)} input(s) "
                                 f"({', '.join(str(v) for v in g.inputs)}); got {len(inputs)}")
            feed = {v.name: x for v, x in zip(g.inputs, inputs)}
        feed = {k: (x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)) for k, x in feed.items()}
        weights = self.state.weights if self.state.weights is not None else self.traced.weights  # as passes left them
        if placed is None:
            placed = self.state.placement is not None
        if placed:
            if self.state.placement is None:
                raise UsageError("placed=True needs a placed program: compile with a target")
            from .runtime.placed_run import run_placed

            return run_placed(self.state.program, self.state.placement, feed, weights)
        from .runtime.interpreter import run

        return run(g, feed, weights)

    def write(self, out_dir) -> list[Path]:
        """Write the output directory, all of it or nothing (``write_compiled``)."""
        return write_compiled(self, Path(out_dir))


@dataclass
class _Source:
    graph: Graph
    model: dict  # the report's model section
    done: list[Pass]  # passes an input dump says already ran
    compile: dict  # the frontend's timings and report keys
    traced: Traced | None = None
    mlir_text: str | None = None


# Architecture keys beyond GPT-2's that a family's report carries when it has them (lm.arch).
FAMILY_KEYS = ("family", "kv_heads", "norm", "positions", "rotary_fraction", "rope_theta")


def _model_section(traced: Traced, graph: Graph) -> dict:
    info = traced.info
    stats = model_stats(graph, tokens=info["batch"] * info["seq"])
    return {
        "name": info["name"], "source": info["source"], "layers": info["layers"], "d_model": info["d_model"],
        "heads": info["heads"], "d_ffn": info["d_ffn"], "vocab": info["vocab"], "context": info["context"],
        "activation": info["activation"], **{k: info[k] for k in FAMILY_KEYS if k in info},
        "batch": info["batch"], "seq": info["seq"], "dtype": info["dtype"],
        "traced_on": traced.device, "torch_params": traced.torch_params, **stats.as_dict(),
    }


def _shape_of(g: Graph) -> tuple[int, int]:
    """(batch, seq) of a graph whose first input is token ids [batch, seq]; (1, 1) otherwise."""
    ids = g.inputs[0].type if g.inputs else None
    return ids.shape if ids is not None and ids.rank == 2 and ids.dtype.startswith("i") else (1, 1)


def _read_ir(path: str, log) -> _Source:
    log(f"reading {path}")
    t0 = time.perf_counter()
    f = read_ir_file(path)
    seconds = time.perf_counter() - t0
    model = f.model
    if model is None:  # a hand-written graph: what it says about itself
        batch, seq = _shape_of(f.graph)
        floats = [v.type.dtype for v in [*f.graph.outputs, *f.graph.params] if v.type.dtype in ("f16", "bf16", "f32")]
        model = {"name": f.graph.name, "source": "ir", "layers": None, "d_model": None, "heads": None,
                 "d_ffn": None, "vocab": None, "context": None, "activation": None, "batch": batch, "seq": seq,
                 "dtype": floats[0] if floats else None, "traced_on": "file", "torch_params": None,
                 **model_stats(f.graph, tokens=batch * seq).as_dict()}
    done = parse_pipeline(f.done) if f.done else []
    timings = {"frontend": "ir", "imports_seconds": 0.0, "build_seconds": 0.0, "export_seconds": 0.0,
               "import_seconds": seconds}
    return _Source(f.graph, model, done, timings)


def _trace(spec_, example_inputs, batch: int, seq: int | None, dtype: str | None, weights: str, seed: int,
           frontend: str, log) -> _Source:
    import torch

    if isinstance(spec_, torch.nn.Module):
        from .frontend.module import trace_user_module

        if seq is not None or batch != 1:
            raise UsageError("a module runs on its example_inputs' shapes: drop batch and seq")
        traced = trace_user_module(spec_, example_inputs, dtype=dtype, frontend=frontend, log=log)
    elif example_inputs is not None:
        raise UsageError("example_inputs are for an nn.Module; a model by name or config is traced on token ids of "
                         "batch x seq")
    elif isinstance(spec_, str) and spec_.endswith(".mlir"):
        from .frontend.torch_mlir_trace import trace_mlir_file  # loads torch-mlir only when asked for

        if seq is not None or batch != 1:
            raise UsageError(f"{spec_} is a torch-dialect module with shapes of its own: drop --batch and --seq")
        traced, frontend = trace_mlir_file(spec_, log=log), "torch-mlir"
    else:
        traced = trace_lm(spec_, batch=batch, seq=seq, dtype=dtype or "f16", weights=weights, seed=seed, log=log,
                          frontend=frontend)
    log(f"traced on {traced.device} in {traced.seconds['export']:.2f} s; imported "
        f"{len(traced.graph.ops)} ops in {traced.seconds['import']:.2f} s")
    t1 = time.perf_counter()
    graph = verify(traced.graph)
    model = _model_section(traced, graph)
    timings = {"frontend": "torch.export", "imports_seconds": traced.seconds["imports"],  # loading transformers
               "build_seconds": traced.seconds["build"], "export_seconds": traced.seconds["export"],
               "import_seconds": traced.seconds["import"],  # FX graph (or torch dialect) -> our IR
               "analyze_seconds": time.perf_counter() - t1}  # verify, statistics
    src = _Source(graph, model, [], timings, traced)
    if frontend == "torch-mlir":  # torch-mlir's own import, FX graph -> torch dialect, and what it held
        timings.update(frontend="torch-mlir", mlir_import_seconds=traced.seconds["mlir_import"],
                       mlir_ops=traced.mlir_ops, **traced.memory)
        src.mlir_text = traced.mlir_text() if not (isinstance(spec_, str) and spec_.endswith(".mlir")) else None
    return src


def _check_source(spec_) -> None:
    import torch

    if isinstance(spec_, (str, torch.nn.Module)):
        return
    from transformers import PretrainedConfig

    if not isinstance(spec_, PretrainedConfig):
        raise UsageError(f"cannot compile a {type(spec_).__name__}: pass a zoo name, a Hugging Face config (a folder, "
                         "its config.json or a PretrainedConfig), a .mlir or .ir file, or an nn.Module with "
                         "example_inputs")


def _dump(state: CompileState, done: list[Pass], model: dict, title: str) -> str:
    """The text of a dump: a graph with the header that lets it resume, or the lowered program."""
    if state.stage == GRAPH:
        return header(spec(done), model, title) + print_graph(state.graph)
    busy = [t.busy for t in state.sim.kernels] if state.sim is not None else None
    return f"# {title}\n" + program_text(state.program, state.placement, state.routing, busy)


def compile_model(spec_, example_inputs=None, *, batch: int = 1, seq: int | None = None, dtype: str | None = None,
                  weights: str = "auto", seed: int = 0, frontend: str = "torch-export", target: str | None = None,
                  pipeline: str | None = None, print_ir_after: tuple[str, ...] = (), print_ir_after_all: bool = False,
                  compile_to: str | None = None, mode: str | None = None, sparsity: float | None = None,
                  log=lambda msg: None, quantize: str | None = None) -> Compiled:
    """The one compile behind ``waferscale.compile`` and ``wafer compile``. spec_ is a zoo name, a
    Hugging Face config (a folder, its config.json, or a ``PretrainedConfig``), a torch-dialect
    ``.mlir`` file, a text ``.ir`` graph, or an ``nn.Module`` traced on ``example_inputs``. seq None
    compiles at the model's default (its whole context, or the zoo's default_seq); dtype None is f16
    for a model by name or config and a module's own. target (wse2, wse3, mesh:RxC) makes the
    default pipeline the whole wafer one, its placement in ``mode`` (auto, pipelined, streaming).
    Files and modules keep their own shapes (and files their dtypes)."""
    t0 = time.perf_counter()
    machine = get_machine(target) if target is not None else None  # a bad target or pipeline fails before any work
    given = parse_pipeline(pipeline) if pipeline is not None else None
    spec_ = str(spec_) if isinstance(spec_, os.PathLike) else spec_
    _check_source(spec_)

    def plan(done: list[Pass]) -> list[Pass]:
        return plan_passes(given, target, done, compile_to, mode, sparsity, print_ir_after, quantize)

    if isinstance(spec_, str) and spec_.endswith(".ir"):
        if seq is not None or batch != 1:
            raise UsageError(f"{spec_} is a graph with shapes of its own: drop --batch and --seq")
        src = _read_ir(spec_, log)
    else:
        plan([])  # the options checked before the trace: a typo is one line at once, not after the work
        src = _trace(spec_, example_inputs, batch, seq, dtype, weights, seed, frontend, log)
    passes = plan(src.done)

    model = src.model
    files: dict[str, str] = {}
    if src.mlir_text is not None:
        files["model.mlir"] = src.mlir_text
    total = len(src.done) + len(passes)
    if print_ir_after_all and not src.done:
        files["ir/00-input.ir"] = header("", model, f"waferscale {__version__}: {model['name']} as imported") \
            + print_graph(src.graph)

    def after(i: int, p: Pass, state: CompileState) -> None:
        if print_ir_after_all or p.name in print_ir_after:
            n = len(src.done) + i + 1
            title = f"waferscale {__version__}: {model['name']} after pass {n} of {total}, {p.spec()}"
            files[f"ir/{n:02d}-{p.name}.ir"] = _dump(state, src.done + passes[:i + 1], model, title)

    state = CompileState(src.graph, samples=model["batch"], tokens=model["seq"], machine=machine, log=log,
                         weights=src.traced.weights if src.traced is not None else None)
    state, records = run_pipeline(state, passes, after=after, log=log)

    graph_passes = [p for p in passes if p.is_graph_pass]
    ran = src.done + passes
    ir_text = header(spec(src.done + graph_passes), model, f"waferscale {__version__}: {model['name']}") \
        + print_graph(state.graph)
    c = dict(src.compile)
    graph_seconds = sum(r.seconds for r, p in zip(records, passes) if p.is_graph_pass)
    c["our_seconds"] = c["import_seconds"] + c.get("analyze_seconds", 0.0) + graph_seconds
    c["passes"] = [r.as_dict() for r in records]
    wafer = {r.name: r.seconds for r, p in zip(records, passes) if not p.is_graph_pass}
    if wafer:
        c["wafer_seconds"] = sum(wafer.values())
        c["wafer_stage_seconds"] = wafer
    g = state.graph
    report = {
        "version": __version__,
        "model": model,
        "ir": {"ops": g.op_counts(), "op_count": len(g.ops), "param_count": len(g.params)},
        "pipeline": spec(ran),
        "compile": c,
    }
    if state.program is not None:
        report["program"] = {"kernels": len(state.program.kernels), "flows": len(state.program.flows),
                             "weight_bytes": state.program.weight_bytes}
    if machine is not None:
        report["target"], report["machine"] = machine.name, machine.as_dict()
    if state.stage == SIMULATED:
        report.update(wafer_report(state))
    c["seconds"] = time.perf_counter() - t0
    c["peak_rss_bytes"] = peak_rss_bytes()
    return Compiled(report, state, ir_text, src.traced, files, t0)


def run_passes(graph: Graph, pipeline: str, *, batch: int = 1, seq: int = 1, target: str | None = None,
               weights=None, log=lambda msg: None) -> CompileState:
    """Run a pipeline on a graph of ``batch`` samples of ``seq`` tokens (on ``target`` for the wafer
    passes, with the model's ``weights`` if it has any) and return where it got: the graph, the
    weights (sparsify prunes them), and the program, placement, routing and simulation as far as the
    pipeline went."""
    machine = get_machine(target) if target is not None else None
    return run_pipeline(CompileState(graph, samples=batch, tokens=seq, machine=machine, weights=weights, log=log),
                        parse_pipeline(pipeline), log=log)[0]


def write_compiled(c: Compiled, out_dir: Path) -> list[Path]:
    """Write the output directory: model.ir, report.json and report.txt, what the frontend kept
    (model.mlir), the dumps (ir/), and for a simulated program placement.json, trace.json,
    mesh.png and report.html. report.json is made last, so that its time and peak memory include
    the rest; report.html is made from the two JSON files as written, as `wafer report --html` does."""
    files: dict[str, str | bytes] = {"model.ir": c.ir_text, **c.files}
    wafer_text = ""
    if c.state.stage == SIMULATED:
        pj = placement_json(c.state)
        files["placement.json"] = to_json(pj)
        files["trace.json"] = chrome_trace(c.state)
        files["mesh.png"] = mesh_png(c.state)
        wafer_text = placement_text(c.report, pj)

    def reports() -> dict[str, str]:
        c.report["compile"]["seconds"] = time.perf_counter() - c.started
        c.report["compile"]["peak_rss_bytes"] = peak_rss_bytes()
        out = {"report.json": to_json(c.report), "report.txt": to_text(c.report) + wafer_text}
        if "placement.json" in files:
            out["report.html"] = report_html(json.loads(out["report.json"]), json.loads(files["placement.json"]))
        return out

    return replace_dir(out_dir, files, command="compile", last=reports)
