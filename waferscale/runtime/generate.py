"""Greedy generation through a prefill graph and a decode-step graph whose KV caches are state
(``ir/ops/cache.py``): the prefill runs the prompt from empty caches, then each decode step runs one
token, every updated cache handed to the next run. Any executor of graphs will do (the NumPy
interpreter by default)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from ..ir.graph import Graph
from ..ir.ops.cache import POSITIONS, cache_inputs
from .interpreter import run


def _carried(g: Graph) -> dict[str, str]:
    """Graph output name -> the cache input it updates."""
    updates = {op.result.name: op.operands[0].name for op in g.ops if op.kind == "cache_update"}
    return {v.name: updates[v.name] for v in g.outputs if v.name in updates}


def step(g: Graph, ids: np.ndarray, position: int, caches: dict[str, np.ndarray],
         weights: Mapping[str, np.ndarray], execute: Callable = run) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One run of a step graph: the logits, and the caches it hands on."""
    batch, tokens = ids.shape
    feed = {g.inputs[0].name: ids, POSITIONS: np.broadcast_to(np.arange(position, position + tokens), ids.shape),
            **caches}
    outs = execute(g, {v.name: feed[v.name] for v in g.inputs}, weights)
    carried = _carried(g)
    return outs[0], {carried[v.name]: x for v, x in zip(g.outputs, outs) if v.name in carried}


def greedy(prefill: Graph, decode: Graph, weights: Mapping[str, np.ndarray], prompt: np.ndarray, new_tokens: int,
           execute: Callable = run) -> tuple[np.ndarray, list[np.ndarray]]:
    """The ``new_tokens`` tokens greedy decoding picks after each prompt (``[batch, prompt_len]``),
    and the logits each pick was made from (the prefill's last position, then each decode step's)."""
    caches = {v.name: np.zeros(v.type.shape, v.type.np_dtype) for v in cache_inputs(prefill)}
    logits, caches = step(prefill, prompt, 0, caches, weights, execute)
    picked, seen = [], [logits[:, -1]]
    position = prompt.shape[1]
    for i in range(new_tokens):
        picked.append(seen[-1].argmax(-1))
        if i == new_tokens - 1:
            break
        logits, caches = step(decode, picked[-1][:, None], position, caches, weights, execute)
        seen.append(logits[:, -1])
        position += 1
    return np.stack(picked, axis=1), seen
