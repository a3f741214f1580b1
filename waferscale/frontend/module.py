"""A user's own ``nn.Module`` with example inputs as a compiler input: traced through either
frontend, with the report's model section said about it from its inputs (no layers or heads to
name: those keys are null).

What a token is, for the wafer passes and the per-token figures: a first input of integer ids
``[batch, seq]`` is ``batch`` samples of ``seq`` tokens, as for a language model; a float input
``[batch, ..., features]`` is ``batch`` samples of as many tokens as its middle axes hold (one for
``[batch, features]``).
"""

from __future__ import annotations

import math
import time

import torch

from ..errors import UsageError
from .dtypes import IR_TO_TORCH, ir_dtype
from .traced import Traced, graph_name


def example_tuple(example_inputs) -> tuple:
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, (tuple, list)) and example_inputs:
        return tuple(example_inputs)
    raise UsageError("a module needs example_inputs: a tensor or a tuple of tensors of the shapes it will run on")


def samples_and_tokens(x: torch.Tensor) -> tuple[int, int]:
    if x.dim() == 0:
        return 1, 1
    if x.dim() == 2 and not x.is_floating_point():
        return int(x.shape[0]), int(x.shape[1])
    return int(x.shape[0]), math.prod(int(d) for d in x.shape[1:-1])


def trace_user_module(module: torch.nn.Module, example_inputs, *, dtype: str | None = None,
                      frontend: str = "torch-export", log=lambda msg: None) -> Traced:
    """Trace ``module(*example_inputs)``; ``dtype`` casts its parameters and float inputs first."""
    if not isinstance(module, torch.nn.Module):
        raise UsageError(f"cannot compile a {type(module).__name__}: pass a zoo name, a Hugging Face config "
                         "(a folder, config.json or PretrainedConfig) or an nn.Module with example_inputs")
    inputs = example_tuple(example_inputs)
    if not all(isinstance(x, torch.Tensor) for x in inputs):
        raise UsageError("example_inputs must be tensors (a tensor or a tuple of tensors)")
    if dtype is not None:
        if dtype not in ("f16", "bf16", "f32"):
            raise UsageError(f"dtype {dtype} is not one of f16, bf16, f32")
        module = module.to(IR_TO_TORCH[dtype])
        inputs = tuple(x.to(IR_TO_TORCH[dtype]) if x.is_floating_point() else x for x in inputs)
    name = graph_name(type(module).__name__)
    log(f"tracing {name} ({', '.join(str(list(x.shape)) for x in inputs)}) with {frontend}")
    if frontend == "torch-mlir":
        from .torch_mlir_trace import trace_module_mlir as trace  # loads torch-mlir only when asked for
    elif frontend == "torch-export":
        from .torch_export import trace_module as trace
    else:
        raise UsageError(f"frontend {frontend} is not one of torch-export, torch-mlir")
    t0 = time.perf_counter()
    traced = trace(module, inputs, name)
    traced.seconds = {"imports": 0.0, "build": 0.0, **traced.seconds}
    batch, seq = samples_and_tokens(inputs[0])
    floats = [p.dtype for p in module.parameters() if p.is_floating_point()] + [
        x.dtype for x in inputs if x.is_floating_point()]
    traced.info = {"name": name, "source": "module", "layers": None, "d_model": None, "heads": None,
                   "d_ffn": None, "vocab": None, "context": None, "activation": None, "batch": batch, "seq": seq,
                   "dtype": ir_dtype(floats[0]) if floats else "f32"}
    log(f"traced in {time.perf_counter() - t0:.2f} s")
    return traced
