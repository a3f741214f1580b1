"""``compile_generate``: a prefill and KV-cache decode steps, compiled by the ``generate`` mode
(``modes/generate.py``)."""

from __future__ import annotations

from .compiled import Compiled
from .driver import compile_run
from .modes import RunSpec
from .modes.generate import Steps, decode_roofline_tokens_per_second, step_graphs

__all__ = ["Steps", "compile_generate", "decode_roofline_tokens_per_second", "step_graphs"]


def compile_generate(spec_: str, *, prompt_len: int, new_tokens: int, batch: int = 1, dtype: str = "f16",
                     target: str | None = None, systems: int = 1, seed: int = 0, weights: str = "auto",
                     split: str | None = None, log=lambda msg: None, quantize: str | None = None,
                     placement: str = "auto", expert_routing: str | None = None) -> Compiled:
    run = RunSpec(spec_, "generate", {"prompt_len": prompt_len, "new_tokens": new_tokens, "quantize": quantize,
                                      "placement": placement, "expert_routing": expert_routing},
                  target=target,
                  systems=systems, split=split, batch=batch, dtype=dtype, seed=seed, weights=weights)
    return compile_run(run, log)
