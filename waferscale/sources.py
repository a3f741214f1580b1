"""Where a compile's graphs come from: a model traced by a frontend (a zoo name, a Hugging Face
config, a torch-dialect ``.mlir`` file, a user's ``nn.Module``) or a text ``.ir`` file read back,
with the report's ``model`` section; and ``describe_source``, the record of the model in a
report's ``run`` section (a zoo name, or a file's path and the hash of its content) that
``wafer replay`` checks before it compiles again."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import UnsupportedError, UsageError
from .frontend.ir_file import read_ir_file
from .frontend.lm import trace_lm
from .frontend.traced import Traced
from .ir import Graph, verify
from .passes import Pass, parse_pipeline
from .report.stats import model_stats


@dataclass
class Source:
    graph: Graph
    model: dict  # the report's model section
    done: list[Pass]  # passes an input dump says already ran
    compile: dict  # the frontend's timings and report keys
    traced: Traced | None = None
    mlir_text: str | None = None


# Architecture keys beyond GPT-2's that a family's report carries when it has them (lm.arch).
FAMILY_KEYS = ("family", "kv_heads", "norm", "positions", "rotary_fraction", "rope_theta")


def model_section(traced: Traced, graph: Graph) -> dict:
    info = traced.info
    stats = model_stats(graph, tokens=info["batch"] * info["seq"])
    return {
        "name": info["name"], "source": info["source"], "layers": info["layers"], "d_model": info["d_model"],
        "heads": info["heads"], "d_ffn": info["d_ffn"], "vocab": info["vocab"], "context": info["context"],
        "activation": info["activation"], **{k: info[k] for k in FAMILY_KEYS if k in info},
        "batch": info["batch"], "seq": info["seq"], "dtype": info["dtype"],
        "traced_on": traced.device, "torch_params": traced.torch_params, **stats.as_dict(),
    }


def frontend_timings(traced: Traced) -> dict:
    """The compile section's frontend keys of a model traced by torch.export."""
    return {"frontend": "torch.export", "imports_seconds": traced.seconds["imports"],  # loading transformers
            "build_seconds": traced.seconds["build"], "export_seconds": traced.seconds["export"],
            "import_seconds": traced.seconds["import"]}  # FX graph (or torch dialect) -> our IR


def shape_of(g: Graph) -> tuple[int, int]:
    """(batch, seq) of a graph whose first input is token ids [batch, seq]; (1, 1) otherwise."""
    ids = g.inputs[0].type if g.inputs else None
    return ids.shape if ids is not None and ids.rank == 2 and ids.dtype.startswith("i") else (1, 1)


def read_ir(path: str, log) -> Source:
    log(f"reading {path}")
    t0 = time.perf_counter()
    f = read_ir_file(path)
    seconds = time.perf_counter() - t0
    model = f.model
    if model is None:  # a hand-written graph: what it says about itself
        batch, seq = shape_of(f.graph)
        floats = [v.type.dtype for v in [*f.graph.outputs, *f.graph.params] if v.type.dtype in ("f16", "bf16", "f32")]
        model = {"name": f.graph.name, "source": "ir", "layers": None, "d_model": None, "heads": None,
                 "d_ffn": None, "vocab": None, "context": None, "activation": None, "batch": batch, "seq": seq,
                 "dtype": floats[0] if floats else None, "traced_on": "file", "torch_params": None,
                 **model_stats(f.graph, tokens=batch * seq).as_dict()}
    done = parse_pipeline(f.done) if f.done else []
    timings = {"frontend": "ir", "imports_seconds": 0.0, "build_seconds": 0.0, "export_seconds": 0.0,
               "import_seconds": seconds}
    return Source(f.graph, model, done, timings)


def trace(spec_, example_inputs, batch: int, seq: int | None, dtype: str | None, weights: str, seed: int,
          frontend: str, log) -> Source:
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
    model = model_section(traced, graph)
    timings = frontend_timings(traced)
    timings["analyze_seconds"] = time.perf_counter() - t1  # verify, statistics
    src = Source(graph, model, [], timings, traced)
    if frontend == "torch-mlir":  # torch-mlir's own import, FX graph -> torch dialect, and what it held
        timings.update(frontend="torch-mlir", mlir_import_seconds=traced.seconds["mlir_import"],
                       mlir_ops=traced.mlir_ops, **traced.memory)
        src.mlir_text = traced.mlir_text() if not (isinstance(spec_, str) and spec_.endswith(".mlir")) else None
    return src


def check_source(spec_) -> None:
    import torch

    if isinstance(spec_, (str, torch.nn.Module)):
        return
    from transformers import PretrainedConfig

    if not isinstance(spec_, PretrainedConfig):
        raise UsageError(f"cannot compile a {type(spec_).__name__}: pass a zoo name, a Hugging Face config (a folder, "
                         "its config.json or a PretrainedConfig), a .mlir or .ir file, or an nn.Module with "
                         "example_inputs")


def _file_of(path: Path) -> Path:
    return path / "config.json" if path.is_dir() else path


def describe_source(spec_) -> dict:
    """The ``run`` section's model: a zoo name, or a file (a config, .mlir, .ir) by path and the
    SHA-256 of its content; a module or an in-memory config is recorded but cannot be replayed."""
    if isinstance(spec_, str):
        path = Path(spec_)
        if path.exists():
            f = _file_of(path)
            kind = {".ir": "ir", ".mlir": "mlir"}.get(path.suffix, "config")
            return {"kind": kind, "path": spec_, "sha256": hashlib.sha256(f.read_bytes()).hexdigest()}
        return {"kind": "zoo", "name": spec_}
    return {"kind": "module" if hasattr(spec_, "forward") else "object", "class": type(spec_).__name__}


def replay_source(model: dict) -> str:
    """The model argument of a recorded ``run`` section, its file's content checked against the hash."""
    kind = model.get("kind")
    if kind == "zoo":
        return model["name"]
    if kind in ("config", "ir", "mlir"):
        path = Path(model["path"])
        if not path.exists():
            raise UsageError(f"the recorded model {model['path']} is not there any more: replay from the directory "
                             "the original compile ran in")
        digest = hashlib.sha256(_file_of(path).read_bytes()).hexdigest()
        if digest != model["sha256"]:
            raise UsageError(f"{model['path']} has changed since the compile (SHA-256 {digest[:12]}, recorded "
                             f"{model['sha256'][:12]}): restore it to replay")
        return os.fspath(path)
    raise UnsupportedError(f"not supported: replaying a compile of a {model.get('class', kind)} object (only a zoo "
                           "name or a file can be compiled again from the report)")
