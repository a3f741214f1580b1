"""What a frontend hands the compiler: the IR graph, its weights when they are real, and what the
trace cost and found out; plus the helpers both tracing paths share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..ir import Graph, WeightStore


@dataclass
class Traced:
    graph: Graph
    weights: WeightStore | None  # None for a model traced on the meta device
    torch_params: int  # sum(p.numel() for p in model.parameters()), as PyTorch counts them
    device: str  # "meta" or "cpu"
    seconds: dict[str, float] = field(default_factory=dict)  # imports, build, export, import
    info: dict[str, Any] = field(default_factory=dict)  # architecture facts for the report
    module: torch.nn.Module | None = None  # what was traced, for comparisons with eager PyTorch


def tied_names(module: torch.nn.Module) -> dict[str, str]:
    """Every parameter name -> the first name PyTorch gives the same tensor."""
    first: dict[int, str] = {}
    out = {}
    for n, p in module.named_parameters(remove_duplicate=False):
        out[n] = first.setdefault(id(p), n)
    return out


def to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach()
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()


def graph_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_.-" else "_" for c in name) or "model"
