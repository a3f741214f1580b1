"""Language models by name or config: a zoo name (``cerebras-gpt-13b``, ``llama-3.1-8b``) or a
Hugging Face causal LM config (a directory holding ``config.json``, the file itself, or a
``PretrainedConfig``) of any family transformers builds with ``AutoModelForCausalLM``, built (on
the meta device when big, so their weights never exist) and traced through either frontend.
"""

from __future__ import annotations

import copy
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from .. import limits as L
from ..errors import UsageError
from ..limits import check_int
from .dtypes import IR_TO_TORCH
from .gpt_oss import gpt_oss_as_leaves
from .moe import experts_as_leaves, moe_config, moe_param_count
from .torch_export import trace_module
from .traced import Traced
from .zoo import ZOO, ZooModel, gpt2_param_count, llama_param_count, lookup

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
        mask = torch.ones(tuple(input_ids.shape), dtype=torch.long, device=position_ids.device)
        return self.model(input_ids=input_ids, position_ids=position_ids, attention_mask=mask, use_cache=False,
                          return_dict=False)[0]


def resolve(spec: str) -> tuple[str, Any]:
    """A model spec: ('zoo', ZooModel) or ('hf', a Hugging Face causal LM config read from disk)."""
    path = Path(spec)
    try:
        exists = spec.lower() not in ZOO and path.exists()  # a zoo name wins over a folder of that name
    except OSError:  # a name too long for a path, or a path under a file
        exists = False
    if exists:
        cfg_file = path / "config.json" if path.is_dir() else path
        if not cfg_file.is_file():
            raise UsageError(f"{spec} holds no config.json: pass a zoo name or a Hugging Face config")
        from transformers import CONFIG_MAPPING

        from ..safe_read import read_json

        # read here, bounded (safe_read.py), and built as AutoConfig.from_pretrained builds a local file's
        data = read_json(cfg_file, "Hugging Face config.json", L.MAX_HF_CONFIG_BYTES)
        model_type = data.get("model_type") if isinstance(data, dict) else None
        if not isinstance(model_type, str):
            raise UsageError(f"{cfg_file} is not a Hugging Face config: it names no model_type")
        if model_type not in CONFIG_MAPPING:
            raise UsageError(f"not supported: Hugging Face model type {model_type[:80]!r} in {cfg_file}: "
                             "transformers does not know it")
        try:
            with quiet_transformers():
                cfg = CONFIG_MAPPING[model_type].from_dict(data)
        except Exception as e:
            first = (str(e).splitlines() or [type(e).__name__])[0]
            raise UsageError(f"cannot read Hugging Face config {cfg_file}: {first}") from e
        return "hf", prepare_config(cfg, str(cfg_file))
    return "zoo", lookup(spec)


def prepare_config(cfg, where: str):
    """A Hugging Face config checked (``check_config``) and made ready to trace: a causal LM that
    transformers can build (``AutoModelForCausalLM``), dropout off."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if cfg.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise UsageError(f"not supported: Hugging Face model type {cfg.model_type!r} in {where} is not a causal LM "
                         "that transformers knows (AutoModelForCausalLM has no class for it)")
    check_config(cfg, where)
    for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop", "attention_dropout", "hidden_dropout", "dropout",
              "resid_dropout", "embd_dropout", "activation_dropout", "classifier_dropout"):
        if isinstance(getattr(cfg, k, None), (int, float)):
            setattr(cfg, k, 0.0)
    return cfg


def check_config(cfg, where: str) -> None:
    """Every key the model is built from, checked before transformers sees it (``limits.py``)."""
    hint = f" in {where}"
    if cfg.model_type == "gpt2":
        _check_gpt2(cfg, hint)
        if config_param_count(cfg) > L.MAX_PARAMS:
            raise UsageError(f"{where} describes {config_param_count(cfg):.2e} parameters, more than the "
                             f"{L.MAX_PARAMS:.0e} this tool accepts")
        return
    a = arch(cfg)
    for key, name, top in [("layers", "num_hidden_layers", L.MAX_LAYERS), ("d_model", "hidden_size", L.MAX_D_MODEL),
                           ("heads", "num_attention_heads", L.MAX_HEADS), ("vocab", "vocab_size", L.MAX_VOCAB),
                           ("context", "max_position_embeddings", L.MAX_CONTEXT),
                           ("d_ffn", "intermediate_size", 4 * L.MAX_D_MODEL),
                           ("kv_heads", "num_key_value_heads", L.MAX_HEADS)]:
        if a[key] is not None or key != "context":  # a model with ALiBi positions may name no context
            check_int(name, a[key], 1, top, hint)
    if a["d_model"] % a["heads"] and getattr(cfg, "head_dim", None) is None:
        raise UsageError(f"num_attention_heads = {a['heads']} does not divide hidden_size = {a['d_model']}{hint}: each "
                         "head takes hidden_size / num_attention_heads features")
    for key, low, high in [("rotary_fraction", 0, 1), ("rope_theta", 0, float("inf"))]:
        v = a.get(key, 1.0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not low < v <= high:
            raise UsageError(f"{key} = {v!r}{hint} must be a number in ({low}, {high}] (the rotary embedding's "
                             f"{'share of each head' if key == 'rotary_fraction' else 'base'})")
    if not isinstance(a["activation"], str):
        raise UsageError(f"the activation {a['activation']!r}{hint} must be a name (e.g. silu, gelu)")
    if a["heads"] % a["kv_heads"]:
        raise UsageError(f"num_key_value_heads = {a['kv_heads']} does not divide num_attention_heads = "
                         f"{a['heads']}{hint}: each key/value head serves a whole group of query heads")
    if config_param_count(cfg) > L.MAX_PARAMS:
        raise UsageError(f"{where} describes {config_param_count(cfg):.2e} parameters, more than the "
                         f"{L.MAX_PARAMS:.0e} this tool accepts")


def _check_gpt2(cfg, hint: str) -> None:
    from transformers.activations import ACT2FN

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


def arch(cfg) -> dict[str, Any]:
    """The architecture facts of a Hugging Face causal LM config, for the report: the same keys for
    every family, read from the names each family gives them."""
    def first(*names, default=None):
        return next((v for n in names if (v := getattr(cfg, n, None)) is not None), default)

    gpt2 = cfg.model_type == "gpt2"
    d = first("hidden_size", "n_embd")
    heads = first("num_attention_heads", "n_head")
    rope = first("rope_parameters", "rope_scaling", default={})
    rope = rope if isinstance(rope, dict) else {}
    rotary = first("partial_rotary_factor", "rotary_pct", default=rope.get("partial_rotary_factor"))
    positions = "learned" if gpt2 or cfg.model_type in ("opt", "gpt_bigcode", "biogpt") else (
        "alibi" if cfg.model_type in ("bloom", "mpt", "falcon") and getattr(cfg, "alibi", True) else "rotary")
    rms = "rms_norm_eps" in cfg.to_dict()
    return {
        "layers": first("num_hidden_layers", "n_layer"), "d_model": d, "heads": heads,
        "kv_heads": first("num_key_value_heads", "num_kv_heads", default=heads),
        "d_ffn": first("intermediate_size", "ffn_dim", "n_inner", default=4 * d if isinstance(d, int) else None),
        "vocab": cfg.vocab_size, "context": first("max_position_embeddings", "n_positions", "max_seq_len"),
        "activation": first("hidden_act", "activation_function", default="gelu"),
        "norm": "rmsnorm" if rms else "layernorm", "positions": positions,
        **({"rotary_fraction": rotary if rotary is not None else 1.0,
            "rope_theta": first("rope_theta", default=rope.get("rope_theta", 10000.0))}
           if positions == "rotary" else {}),
    }


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


def trace_lm(spec, batch: int = 1, seq: int | None = None, dtype: str = "f32",
             weights: str = "auto", seed: int = 0, log=lambda msg: None, frontend: str = "torch-export",
             positions: bool = False) -> Traced:
    """Build a causal LM (zoo name, HF config path or ``PretrainedConfig``) and trace it to our IR.

    positions: trace a step of generation (``StepLM``: token ids and ``position_ids`` in).

    weights: "random" (seeded, real tensors), "meta" (no data), or "auto" (meta above
    META_THRESHOLD_PARAMS parameters). seq None means the model's whole context.
    """
    t_imports = time.perf_counter()
    import transformers  # noqa: F401  (about 2 s the first time: counted apart)

    t_imports = time.perf_counter() - t_imports
    if isinstance(spec, str):
        source, entry = resolve(spec)
        cfg = entry.config() if isinstance(entry, ZooModel) else entry
        name = entry.name if isinstance(entry, ZooModel) else Path(spec).resolve().name
        default_seq = entry.default_seq if isinstance(entry, ZooModel) else None
    else:  # a PretrainedConfig object (the Python API)
        source, cfg, default_seq = "hf", prepare_config(copy.deepcopy(spec), f"the {type(spec).__name__}"), None
        name = getattr(cfg, "name_or_path", "") or cfg.model_type
    info = arch(cfg)
    context = info["context"]
    seq = (default_seq or context) if seq is None else seq
    if seq is None:
        raise UsageError(f"{name} names no context length (max_position_embeddings): give --seq")
    if batch < 1 or seq < 1:
        raise UsageError(f"--batch and --seq must be at least 1 (got {batch} and {seq})")
    check_int("--batch", batch, 1, L.MAX_BATCH)
    check_int("--seed", seed, 0, L.MAX_SEED)
    if batch * seq > L.MAX_TOKENS:
        raise UsageError(f"--batch {batch:,} x --seq {seq:,} = {batch * seq:,} tokens, more than the "
                         f"{L.MAX_TOKENS:,} a compile accepts (waferscale/limits.py); use a smaller batch")
    if context is not None and seq > context:
        raise UsageError(f"--seq {seq} exceeds {name}'s context of {context} positions")
    if dtype not in ("f16", "f32", "bf16"):
        raise UsageError(f"--dtype {dtype} is not one of f16, bf16, f32")
    approx = config_param_count(cfg)
    if weights == "auto":
        weights = "meta" if approx > META_THRESHOLD_PARAMS else "random"
    if weights not in ("meta", "random"):
        raise UsageError(f"weights={weights!r} is not one of auto, meta, random")
    if frontend not in FRONTENDS:
        raise UsageError(f"--frontend {frontend} is not one of {', '.join(FRONTENDS)}")
    log(f"tracing {name} (batch {batch}, seq {seq}, {dtype}) on {'meta' if weights == 'meta' else 'cpu'} "
        f"with {frontend}")
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    try:
        with quiet_transformers(), params_on_meta(weights == "meta"):
            model = _build(cfg).to(IR_TO_TORCH[dtype])
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, ArithmeticError, RuntimeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UsageError(f"transformers cannot build {name} from its config: {type(e).__name__}: {first}") from e
    ids = torch.zeros((batch, seq), dtype=torch.long)
    t1 = time.perf_counter()
    if frontend == "torch-mlir":  # torch.export, then torch-mlir's torch dialect, then our IR
        from .torch_mlir_trace import trace_module_mlir as trace  # loads torch-mlir only when asked for
    else:
        trace = trace_module
    # the positions live where the activations do (a model on the meta device computes its rotary tables
    # from them, against meta activations)
    pos = ids.clone().to("meta" if weights == "meta" else "cpu")
    wrapped, example = (StepLM(model), (ids, pos)) if positions else (CausalLM(model), (ids,))
    # a MoE model's experts: one op each (frontend/moe.py)
    with experts_as_leaves(model, getattr(cfg, "hidden_act", None)), gpt_oss_as_leaves(model):
        traced = trace(wrapped, example, name, strip_prefix="model.")
    traced.seconds = {"imports": t_imports, "build": t1 - t0, **traced.seconds}
    traced.info = {"name": name, "source": source, **info, "family": cfg.model_type, "batch": batch, "seq": seq,
                   "dtype": dtype, "seed": seed} | ({"moe": moe} if (moe := moe_config(cfg)) else {})
    return traced


def _build(cfg) -> torch.nn.Module:
    if cfg.model_type == "gpt2":  # the class the zoo and GPT-2 configs have always been built with
        from transformers import GPT2LMHeadModel

        return GPT2LMHeadModel(cfg)
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_config(cfg)


@contextmanager
def params_on_meta(enabled: bool = True):
    """Build a module with its parameters on the meta device (no bytes) and its buffers real, on the CPU:
    a buffer is state the model computes from its config (the rotary frequencies), small, and its
    values fold at import time as they would with real weights, so a model imports to the same IR
    on either device. (What ``accelerate.init_empty_weights(include_buffers=False)`` does.)"""
    if not enabled:
        yield
        return
    register = torch.nn.Module.register_parameter

    def on_meta(module, name, param):
        register(module, name, param)
        if param is not None and not param.is_meta:
            kind = type(module._parameters[name])
            module._parameters[name] = kind(module._parameters[name].to("meta"), requires_grad=param.requires_grad)

    torch.nn.Module.register_parameter = on_meta
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register


def config_param_count(cfg) -> int:
    """Parameters of a causal LM config from the closed form of its family (no model is built): GPT-2's,
    or a rotary model's (query, key and value projections with grouped heads, a gated or plain MLP,
    norms with or without biases); biases are left out of the latter, so it is an estimate within
    a fraction of a percent for families that have them."""
    if cfg.model_type == "gpt2":
        return gpt2_param_count(cfg.vocab_size, cfg.n_positions, cfg.n_embd, cfg.n_inner or 4 * cfg.n_embd,
                                cfg.n_layer)
    a = arch(cfg)
    d, f, heads, kv = a["d_model"], a["d_ffn"], a["heads"], a["kv_heads"]
    d_head = getattr(cfg, "head_dim", None) or d // heads
    gated = a["activation"] in ("silu", "swiglu") or cfg.model_type in ("llama", "mistral", "qwen2", "gemma")
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    positions = a["context"] * d if a["positions"] == "learned" else 0
    return (llama_param_count(a["vocab"], d, f, a["layers"], heads * d_head, kv * d_head, gated, tied) + positions
            + moe_param_count(cfg, (3 if gated else 2) * d * f))
