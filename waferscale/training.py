"""``compile_training``: a training step, compiled by the ``train`` mode (``modes/train.py``)."""

from __future__ import annotations

from .compiled import Compiled
from .driver import compile_run
from .modes import RunSpec
from .modes.train_report import matmul_params, pipelined_need, training_flops

__all__ = ["compile_training", "matmul_params", "pipelined_need", "training_flops"]


def compile_training(spec_: str, *, batch: int, seq: int | None = None, dtype: str = "f16", seed: int = 0,
                     target: str | None = None, mode: str | None = None, systems: int = 1,
                     lora: str | None = None, sparsity: float | None = None, split: str | None = None,
                     micro_batch: int | None = None, tokens: float | None = None, log=lambda msg: None) -> Compiled:
    """A training step of ``batch`` samples (``mode``: the execution mode, auto, pipelined or
    streaming); ``lora``: a lora pass (``lora{rank=..,alpha=..,targets=..}``) to fine-tune adapters
    only; ``sparsity``: sparse training at that density. Both set the step beside a baseline run.
    ``micro_batch``: gradient accumulation at this many samples per micro-batch (weight streaming;
    default: the most that fit); ``tokens``: the budget of ``train.time_to_train`` (default: the
    Cerebras-GPT paper's for its models, 20 per parameter otherwise)."""
    run = RunSpec(spec_, "train", {"lora": lora, "sparsity": sparsity, "micro_batch": micro_batch,
                                   "tokens": tokens}, target=target, execution=mode,
                  systems=systems, split=split, batch=batch, seq=seq, dtype=dtype, seed=seed)
    return compile_run(run, log)
