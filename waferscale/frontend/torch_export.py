"""Trace a PyTorch model with ``torch.export`` and import it into our IR.

Three ways in: a zoo name (``cerebras-gpt-13b``), a Hugging Face GPT-2-style config (a
directory holding ``config.json``, or the file itself), or any ``nn.Module`` with example
inputs. Big models are built and traced on the meta device, so their weights never exist.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UsageError, WaferError
from ..ir import Graph, WeightStore
from .dtypes import IR_TO_TORCH
from .fx_import import import_program
from .zoo import ZooModel, gpt2_param_count, lookup

# Models with more parameters than this are traced on the meta device when weights="auto".
# Compiling needs no weight data, so only test-size models are built with real (random)
# weights; `wafer run` and the numerics tests ask for weights="random" explicitly.
META_THRESHOLD_PARAMS = 50_000_000
FRONTENDS = ("torch-export", "torch-mlir")


@dataclass
class Traced:
    graph: Graph
    weights: WeightStore | None  # None for a model traced on the meta device
    torch_params: int  # sum(p.numel() for p in model.parameters()), as PyTorch counts them
    device: str  # "meta" or "cpu"
    seconds: dict[str, float] = field(default_factory=dict)  # imports, build, export, import
    info: dict[str, Any] = field(default_factory=dict)  # architecture facts for the report
    module: torch.nn.Module | None = None  # what was traced, for comparisons with eager PyTorch


class CausalLM(torch.nn.Module):
    """Wraps a Hugging Face causal LM so that the traced program maps token ids to logits."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, use_cache=False, return_dict=False)[0]


def trace_module(module: torch.nn.Module, example_inputs: tuple, name: str,
                 strip_prefix: str = "") -> Traced:
    """Export any module with example inputs and import it; weights are kept if they are real."""
    module = module.eval()
    t0 = time.perf_counter()
    try:
        ep = torch.export.export(module, example_inputs, strict=False)
    except WaferError:
        raise
    except Exception as e:  # torch's own message is long: keep its first line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"torch.export could not trace {name}: {first}") from e
    t1 = time.perf_counter()
    graph, targets = import_program(ep, _graph_name(name), strip_prefix, _tied_names(module))
    t2 = time.perf_counter()
    on_meta = any(p.is_meta for p in module.parameters())
    state = dict(module.named_parameters(remove_duplicate=False)) | dict(module.named_buffers())
    weights = None if on_meta else WeightStore({k: _to_numpy(state[t]) for k, t in targets.items()})
    return Traced(graph, weights, sum(p.numel() for p in module.parameters()),
                  "meta" if on_meta else "cpu", {"export": t1 - t0, "import": t2 - t1}, module=module)


def _tied_names(module: torch.nn.Module) -> dict[str, str]:
    """Every parameter name -> the first name PyTorch gives the same tensor."""
    first: dict[int, str] = {}
    out = {}
    for n, p in module.named_parameters(remove_duplicate=False):
        out[n] = first.setdefault(id(p), n)
    return out


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach()
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()


def _graph_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_.-" else "_" for c in name) or "model"


def resolve(spec: str) -> tuple[str, Any]:
    """A model spec: ('zoo', ZooModel) or ('hf', GPT2-style config read from disk)."""
    from .zoo import ZOO

    path = Path(spec)
    if spec.lower() not in ZOO and path.exists():  # a zoo name wins over a folder of that name
        cfg_file = path / "config.json" if path.is_dir() else path
        if not cfg_file.is_file():
            raise UsageError(f"{spec} holds no config.json: pass a zoo name or a Hugging Face config")
        from transformers import AutoConfig

        try:
            cfg = AutoConfig.from_pretrained(str(cfg_file))
        except Exception as e:
            raise UsageError(f"cannot read Hugging Face config {cfg_file}: {str(e).splitlines()[0]}") from e
        if cfg.model_type != "gpt2":
            raise UsageError(f"not supported: Hugging Face model type {cfg.model_type!r} "
                             "(GPT-2-style causal LMs, model_type 'gpt2', are)")
        for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
            setattr(cfg, k, 0.0)
        return "hf", cfg
    return "zoo", lookup(spec)


def _info(cfg) -> dict[str, Any]:
    return {"layers": cfg.n_layer, "d_model": cfg.n_embd, "heads": cfg.n_head,
            "d_ffn": cfg.n_inner or 4 * cfg.n_embd, "vocab": cfg.vocab_size,
            "context": cfg.n_positions, "activation": cfg.activation_function}


def trace_lm(spec: str, batch: int = 1, seq: int | None = None, dtype: str = "f32",
             weights: str = "auto", seed: int = 0, log=lambda msg: None, frontend: str = "torch-export") -> Traced:
    """Build a GPT-2-style LM (zoo name or HF config path) and trace it to our IR.

    weights: "random" (seeded, real tensors), "meta" (no data), or "auto" (meta above
    META_THRESHOLD_PARAMS parameters). seq None means the model's whole context.
    """
    t_imports = time.perf_counter()
    from transformers import GPT2LMHeadModel  # about 2 s the first time: counted apart

    t_imports = time.perf_counter() - t_imports
    source, entry = resolve(spec)
    cfg = entry.config() if isinstance(entry, ZooModel) else entry
    name = entry.name if isinstance(entry, ZooModel) else Path(spec).resolve().name
    seq = cfg.n_positions if seq is None else seq
    if batch < 1 or seq < 1:
        raise UsageError(f"--batch and --seq must be at least 1 (got {batch} and {seq})")
    if seq > cfg.n_positions:
        raise UsageError(f"--seq {seq} exceeds {name}'s context of {cfg.n_positions} positions")
    if dtype not in ("f16", "f32", "bf16"):
        raise UsageError(f"--dtype {dtype} is not one of f16, bf16, f32")
    approx = config_param_count(cfg)
    if weights == "auto":
        weights = "meta" if approx > META_THRESHOLD_PARAMS else "random"
    if weights not in ("meta", "random"):
        raise UsageError(f"weights={weights!r} is not one of auto, meta, random")
    if frontend not in FRONTENDS:
        raise UsageError(f"--frontend {frontend} is not one of {', '.join(FRONTENDS)}")
    device = torch.device("meta" if weights == "meta" else "cpu")
    log(f"tracing {name} (batch {batch}, seq {seq}, {dtype}) on {device.type} with {frontend}")
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    with device:
        model = GPT2LMHeadModel(cfg).to(IR_TO_TORCH[dtype])
        ids = torch.zeros((batch, seq), dtype=torch.long)
    t1 = time.perf_counter()
    if frontend == "torch-mlir":  # torch.export, then torch-mlir's torch dialect, then our IR
        from .torch_mlir_trace import trace_module_mlir as trace
    else:
        trace = trace_module
    traced = trace(CausalLM(model), (ids,), name, strip_prefix="model.")
    traced.seconds = {"imports": t_imports, "build": t1 - t0, **traced.seconds}
    traced.info = {"name": name, "source": source, **_info(cfg), "batch": batch, "seq": seq,
                   "dtype": dtype, "seed": seed}
    return traced


def config_param_count(cfg) -> int:
    """Parameters of a GPT2Config, from the closed form (no model is built)."""
    return gpt2_param_count(cfg.vocab_size, cfg.n_positions, cfg.n_embd, cfg.n_inner or 4 * cfg.n_embd,
                            cfg.n_layer)
