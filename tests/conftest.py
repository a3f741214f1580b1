import functools

import pytest

from waferscale.frontend.lm import trace_lm


@functools.cache
def traced(name: str, seq: int = 16, weights: str = "auto", dtype: str = "f32"):
    """One trace per (model, shape) for the whole session: tracing is the slow part."""
    return trace_lm(name, seq=seq, weights=weights, dtype=dtype)


@pytest.fixture(scope="session")
def tiny():
    return traced("tiny", seq=16, weights="random")
