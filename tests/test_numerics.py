"""The interpreter's logits agree with PyTorch eager (float32, max |diff| / max |logit| <= 1e-4)."""

import numpy as np
import pytest
import torch

from waferscale.runtime.interpreter import run

from .conftest import traced

TOL = 1e-4


def rel_err(name, seq):
    t = traced(name, seq=seq, weights="random")
    ids = np.random.default_rng(1).integers(0, t.info["vocab"], (1, seq))
    (ours,) = run(t.graph, {"input_ids": ids}, t.weights)
    with torch.no_grad():
        ref = t.module(torch.from_numpy(ids)).numpy()
    assert ours.shape == ref.shape
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("name", ["tiny", "tiny-tanh"])
def test_two_layer_configs_match_pytorch(name):
    assert rel_err(name, 16) <= TOL


def test_cerebras_gpt_111m_matches_pytorch_at_short_sequence():
    assert rel_err("cerebras-gpt-111m", 8) <= TOL


def test_interpreter_frees_nothing_it_still_needs(tiny):
    # the same graph run twice gives the same numbers (no state leaks between runs)
    ids = np.arange(16).reshape(1, 16)
    a = run(tiny.graph, {"input_ids": ids}, tiny.weights)[0]
    b = run(tiny.graph, {"input_ids": ids}, tiny.weights)[0]
    assert np.array_equal(a, b)
