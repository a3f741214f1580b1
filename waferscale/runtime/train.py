"""Training steps in the NumPy interpreter, and the token streams they read.

A training-step graph (``autodiff`` then ``adamw``) takes ``input_ids``, ``labels`` and ``step``
and returns the loss, then the next value of every parameter in parameter order (the model's
weights, then each one's optimizer state). ``train`` runs it step after step, feeding each
step's parameters back in.

Token streams: a seeded random stream of ``length`` tokens (a random walk with a learnable
next-token rule, ``random_stream``), or a text file read as bytes (token
= byte value) or through a byte-level BPE that Hugging Face ``tokenizers`` trains on the file at
the model's vocabulary size. Step s reads the batch's ``B`` windows of ``T + 1`` tokens one after
another from where step s - 1 stopped, wrapping at the end; inputs are a window's first T tokens,
labels its last T (the next token of each).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from ..backends.sparse import draw_mask
from ..errors import UsageError
from ..ir.graph import Graph
from ..ir.ops.grad import MASK
from .interpreter import run


def initial_state(g: Graph, weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every parameter of a training-step graph: the model's weights as given, optimizer moments at
    zero, a master copy (``master.P``) equal to its weight in f32; a sparse weight's mask
    (``mask.P``) as given or as ``sparse_masks`` makes it, and the weight (and its master copy)
    pruned by it."""
    masks = {**sparse_masks(g), **{k: v for k, v in weights.items() if k.startswith(MASK)}}
    out = {}
    for p in g.params:
        if p.name in masks:
            out[p.name] = np.asarray(masks[p.name], dtype=bool)
        elif p.name in weights:
            out[p.name] = np.array(weights[p.name], dtype=p.type.np_dtype)
        elif p.name.startswith("master."):
            out[p.name] = np.array(weights[p.name.removeprefix("master.")], dtype=np.float32)
        else:
            out[p.name] = np.zeros(p.type.shape, dtype=p.type.np_dtype)
    for name, mask in masks.items():
        for w in (name.removeprefix(MASK), "master." + name.removeprefix(MASK)):
            if w in out:
                out[w] = np.where(mask, out[w], 0).astype(out[w].dtype)
    return out


def sparse_masks(g: Graph) -> dict[str, np.ndarray]:
    """The mask of each sparse weight a training-step graph has a ``mask.P`` parameter for: the one
    ``sparsify`` pruned P with (kept in the graph's meta), or else (a weight that had no data, or a
    graph read back from text) the seeded random mask the mesh draws (``backends/sparse.py``)."""
    attrs = {op.operands[1].name: op.attr for op in g.ops if op.kind == "linear" and op.attr.get("density", 1) < 1}
    out = {}
    for p in (p for p in g.params if p.name.startswith(MASK)):
        w = p.name.removeprefix(MASK)
        mask = g.meta.get(w, {}).get("mask")
        if mask is None:
            if w not in attrs:
                raise UsageError(f"graph @{g.name} has the mask %{p.name} but no sparse linear op reads %{w}")
            mask = draw_mask(*p.type.shape, attrs[w]["density"], attrs[w].get("mask_seed", 0), w)
        out[p.name] = np.asarray(mask, dtype=bool)
    return out


def lora_weights(g: Graph, seed: int) -> dict[str, np.ndarray]:
    """Initial adapters as peft makes them: A uniform in +-1/sqrt(in) (kaiming-uniform with a = sqrt(5),
    torch.nn.Linear's), B zero, so the adapted model starts equal to the base one."""
    rng = np.random.default_rng(seed)
    out = {}
    for p in g.params:
        if p.name.startswith("lora.A."):
            bound = 1.0 / np.sqrt(p.type.shape[0])
            out[p.name] = rng.uniform(-bound, bound, p.type.shape).astype(p.type.np_dtype)
        elif p.name.startswith("lora.B."):
            out[p.name] = np.zeros(p.type.shape, dtype=p.type.np_dtype)
    return out


def train(g: Graph, weights: Mapping[str, np.ndarray], batches: Iterator[tuple[np.ndarray, np.ndarray]],
          steps: int, on_step=lambda step, loss: None) -> tuple[list[float], dict[str, np.ndarray]]:
    """The loss of each of ``steps`` steps and the parameters after the last."""
    if len(g.outputs) != 1 + len(g.params):
        raise UsageError(f"graph @{g.name} is not a training step (loss, then one new value per parameter): "
                         "build it with the passes autodiff,adamw")
    state = initial_state(g, weights)
    losses = []
    for step in range(1, steps + 1):
        ids, labels = next(batches)
        outs = run(g, {"input_ids": ids, "labels": labels, "step": np.float32(step)}, state)
        state = {p.name: x for p, x in zip(g.params, outs[1:])}
        losses.append(float(outs[0]))
        on_step(step, losses[-1])
    return losses, state


SUCCESSORS = 4  # the random stream's tokens each have this many possible next tokens


def random_stream(vocab: int, length: int, seed: int) -> np.ndarray:
    """A seeded random walk over the vocabulary in which each token is followed by one of
    ``SUCCESSORS`` tokens drawn for it: random, but with a next-token rule that a model can learn
    (uniform tokens could not be: their loss stays at log(vocab))."""
    rng = np.random.default_rng(seed)
    successors = rng.integers(0, vocab, (vocab, SUCCESSORS))
    picks = rng.integers(0, SUCCESSORS, length)
    out = np.empty(length, dtype=np.int64)
    out[0] = rng.integers(0, vocab)
    for i in range(1, length):
        out[i] = successors[out[i - 1], picks[i]]
    return out


def file_stream(path: str, vocab: int, tokenizer: str) -> np.ndarray:
    """The tokens of a text file: its bytes, or a byte-level BPE of ``vocab`` tokens trained on it."""
    from .. import limits as L
    from ..safe_read import read_bytes

    data = read_bytes(path, "--data text file", L.MAX_DATA_BYTES)
    if tokenizer == "bytes":
        if vocab < 256:
            raise UsageError(f"--tokenizer bytes needs a vocabulary of 256 or more; the model has {vocab}: "
                             "use --tokenizer bpe")
        tokens = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
    elif tokenizer == "bpe":
        from tokenizers import ByteLevelBPETokenizer

        text = data.decode("utf-8", errors="replace")
        tok = ByteLevelBPETokenizer()
        tok.train_from_iterator([text], vocab_size=vocab, min_frequency=2, show_progress=False)
        tokens = np.asarray(tok.encode(text).ids, dtype=np.int64)
        if tokens.size and tokens.max() >= vocab:
            raise AssertionError(f"BPE gave token {tokens.max()} for a vocabulary of {vocab}")
    else:
        raise UsageError(f"--tokenizer {tokenizer} is not one of bytes, bpe")
    return tokens


def batches(tokens: np.ndarray, batch: int, seq: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(input_ids, labels) of each step, read in order from the stream (module docstring)."""
    if tokens.size < seq + 1:
        raise UsageError(f"the token stream has {tokens.size} tokens, fewer than one window of --seq {seq} + 1")
    at = 0
    while True:
        rows = []
        for _ in range(batch):
            if at + seq + 1 > tokens.size:
                at = 0
            rows.append(tokens[at:at + seq + 1])
            at += seq + 1
        w = np.stack(rows)
        yield w[:, :-1], w[:, 1:]
