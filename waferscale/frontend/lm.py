"""Language models by name or config: a zoo name (``cerebras-gpt-13b``) or a Hugging Face
GPT-2-style config (a directory holding ``config.json``, or the file itself), built (on the meta
device when big, so their weights never exist) and traced through either frontend.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from .. import limits as L
from ..errors import UsageError
from ..limits import check_int
from .dtypes import IR_TO_TORCH
from .torch_export import trace_module
from .traced import Traced
from .zoo import ZOO, ZooModel, gpt2_param_count, lookup

# Models with more parameters than this are traced on the meta device when weights="auto".
# Compiling needs no weight data, so only test-size models are built with real (random)
# weights; `wafer run` and the numerics tests ask for weights="random" explicitly.
META_THRESHOLD_PARAMS = 50_000_000
FRONTENDS = ("torch-export", "torch-mlir")


class CausalLM(torch.nn.Module):
    """Wraps a Hugging Face causal LM so that the traced program maps token ids to logits."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, use_cache=False, return_dict=False)[0]


class StepLM(torch.nn.Module):
    """A causal LM traced for generation: token ids and their positions in, logits out. The
    positions are a graph input (``position_ids``), so one traced step serves any place in the
    sequence; the attention mask is all ones (made inside, so it folds into causal attention)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        mask = torch.ones(tuple(input_ids.shape), dtype=torch.long)
        return self.model(input_ids=input_ids, position_ids=position_ids, attention_mask=mask, use_cache=False,
                          return_dict=False)[0]


def resolve(spec: str) -> tuple[str, Any]:
    """A model spec: ('zoo', ZooModel) or ('hf', GPT2-style config read from disk)."""
    path = Path(spec)
    if spec.lower() not in ZOO and path.exists():  # a zoo name wins over a folder of that name
        cfg_file = path / "config.json" if path.is_dir() else path
        if not cfg_file.is_file():
            raise UsageError(f"{spec} holds no config.json: pass a zoo name or a Hugging Face config")
        from transformers import AutoConfig

        try:
            with quiet_transformers():
                cfg = AutoConfig.from_pretrained(str(cfg_file))
        except Exception as e:
            first = (str(e).splitlines() or [type(e).__name__])[0]
            raise UsageError(f"cannot read Hugging Face config {cfg_file}: {first}") from e
        if cfg.model_type != "gpt2":
            raise UsageError(f"not supported: Hugging Face model type {cfg.model_type!r} "
                             "(GPT-2-style causal LMs, model_type 'gpt2', are)")
        check_config(cfg, str(cfg_file))
        for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
            setattr(cfg, k, 0.0)
        return "hf", cfg
    return "zoo", lookup(spec)


def check_config(cfg, where: str) -> None:
    """Every key the model is built from, checked before transformers sees it (``limits.py``)."""
    from transformers.activations import ACT2FN

    hint = f" in {where}"
    check_int("n_layer", cfg.n_layer, 1, L.MAX_LAYERS, hint)
    check_int("n_embd", cfg.n_embd, 1, L.MAX_D_MODEL, hint)
    check_int("n_head", cfg.n_head, 1, L.MAX_HEADS, hint)
    check_int("vocab_size", cfg.vocab_size, 1, L.MAX_VOCAB, hint)
    check_int("n_positions", cfg.n_positions, 1, L.MAX_CONTEXT, hint)
    if cfg.n_inner is not None:
        check_int("n_inner", cfg.n_inner, 1, 4 * L.MAX_D_MODEL, hint)
    if cfg.n_embd % cfg.n_head:
        raise UsageError(f"n_head = {cfg.n_head} does not divide n_embd = {cfg.n_embd}{hint}: each head takes "
                         "n_embd / n_head features")
    if cfg.activation_function not in ACT2FN:
        raise UsageError(f"activation_function {cfg.activation_function!r}{hint} is not one transformers knows "
                         f"(e.g. {', '.join(sorted(ACT2FN)[:6])}, ...)")
    eps = cfg.layer_norm_epsilon
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
        raise UsageError(f"layer_norm_epsilon = {eps!r}{hint} must be a number between 0 and 1 (GPT-2: 1e-5)")
    if config_param_count(cfg) > L.MAX_PARAMS:
        raise UsageError(f"{where} describes {config_param_count(cfg):.2e} parameters, more than the "
                         f"{L.MAX_PARAMS:.0e} this tool accepts")


LIBRARY_WARNINGS = False  # `wafer -v`: let the libraries' warnings through


@contextmanager
def quiet_transformers():
    """transformers' and torch's warnings are not the user's errors: keep them off stderr (unless
    ``wafer -v`` asked for them)."""
    import warnings

    from transformers.utils import logging as hf_logging

    if LIBRARY_WARNINGS:
        yield
        return

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(level)


def _info(cfg) -> dict[str, Any]:
    return {"layers": cfg.n_layer, "d_model": cfg.n_embd, "heads": cfg.n_head,
            "d_ffn": cfg.n_inner or 4 * cfg.n_embd, "vocab": cfg.vocab_size,
            "context": cfg.n_positions, "activation": cfg.activation_function}


def trace_lm(spec: str, batch: int = 1, seq: int | None = None, dtype: str = "f32",
             weights: str = "auto", seed: int = 0, log=lambda msg: None, frontend: str = "torch-export",
             positions: bool = False) -> Traced:
    """Build a GPT-2-style LM (zoo name or HF config path) and trace it to our IR.

    positions: trace a step of generation (``StepLM``: token ids and ``position_ids`` in).

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
    check_int("--batch", batch, 1, L.MAX_BATCH)
    check_int("--seed", seed, 0, L.MAX_SEED)
    if batch * seq > L.MAX_TOKENS:
        raise UsageError(f"--batch {batch:,} x --seq {seq:,} = {batch * seq:,} tokens, more than the "
                         f"{L.MAX_TOKENS:,} a compile accepts (waferscale/limits.py); use a smaller batch")
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
    with device, quiet_transformers():
        model = GPT2LMHeadModel(cfg).to(IR_TO_TORCH[dtype])
        ids = torch.zeros((batch, seq), dtype=torch.long)
    t1 = time.perf_counter()
    if frontend == "torch-mlir":  # torch.export, then torch-mlir's torch dialect, then our IR
        from .torch_mlir_trace import trace_module_mlir as trace  # loads torch-mlir only when asked for
    else:
        trace = trace_module
    wrapped, example = (StepLM(model), (ids, ids.clone())) if positions else (CausalLM(model), (ids,))
    traced = trace(wrapped, example, name, strip_prefix="model.")
    traced.seconds = {"imports": t_imports, "build": t1 - t0, **traced.seconds}
    traced.info = {"name": name, "source": source, **_info(cfg), "batch": batch, "seq": seq,
                   "dtype": dtype, "seed": seed}
    return traced


def config_param_count(cfg) -> int:
    """Parameters of a GPT2Config, from the closed form (no model is built)."""
    return gpt2_param_count(cfg.vocab_size, cfg.n_positions, cfg.n_embd, cfg.n_inner or 4 * cfg.n_embd,
                            cfg.n_layer)
