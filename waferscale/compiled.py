"""What a compile made (``Compiled``: the report, the IR, the program and its placement) and the
writing of its output directory, all of it or nothing (``write_compiled``)."""

from __future__ import annotations

import json
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UsageError
from .frontend.traced import Traced
from .ir import Graph
from .passes import CompileState
from .passes.base import SIMULATED
from .report.assemble import stamp_host
from .report.html import report_html
from .report.mesh_plot import mesh_png
from .report.summary import replace_dir, to_json, to_text
from .report.trace import chrome_trace
from .report.wafer import placement_json, placement_text


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
    outcome: Any = None  # a mode that makes its own report (serve): what its run made (state is None then)

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


def write_compiled(c: Compiled, out_dir: Path) -> list[Path]:
    """Write the output directory: model.ir, report.json and report.txt, what the frontend kept
    (model.mlir), the dumps (ir/), and for a simulated program placement.json, trace.json,
    mesh.png and report.html. report.json is made last, so that its time and peak memory include
    the rest; report.html is made from the two JSON files as written, as `wafer report --html` does."""
    if c.state is None:  # a mode with its own report (serve): its files, report.json among them, as they are
        return replace_dir(out_dir, dict(c.files), command=c.report["run"]["mode"])
    files: dict[str, str | bytes] = {"model.ir": c.ir_text, **c.files}
    wafer_text = ""
    if c.state.stage == SIMULATED:
        pj = placement_json(c.state)
        files["placement.json"] = to_json(pj)
        files["trace.json"] = chrome_trace(c.state)
        files["mesh.png"] = mesh_png(c.state)
        wafer_text = placement_text(c.report, pj)

    def reports() -> dict[str, str]:
        stamp_host(c.report, time.perf_counter() - c.started, peak_rss_bytes())
        out = {"report.json": to_json(c.report), "report.txt": to_text(c.report) + wafer_text}
        if "placement.json" in files:
            out["report.html"] = report_html(json.loads(out["report.json"]), json.loads(files["placement.json"]))
        return out

    return replace_dir(out_dir, files, command="compile", last=reports)
