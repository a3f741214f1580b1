"""Grouped-query attention's head arithmetic, shared by the forward ops (nn.py) and their
gradients (grad.py): how many query heads each key/value head serves, and k or v repeated for them."""

from __future__ import annotations

import numpy as np

from ..types import TensorType


def query_groups(q, k, v) -> int:
    """Query heads per key/value head: 1, or more for grouped-query attention (q [..., H, L, E] with
    k and v [..., H / groups, S, E], query head h reading key/value head h // groups)."""
    if min(q.rank, k.rank, v.rank) < 3 or k.shape[-3] != v.shape[-3] or k.shape[-3] in (1, q.shape[-3]):
        return 1
    return q.shape[-3] // k.shape[-3] if q.shape[-3] % k.shape[-3] == 0 else 1


def grouped(q: np.ndarray, k: np.ndarray) -> np.ndarray:
    """k (or v) with each key/value head repeated for the query heads of its group."""
    g = query_groups(*(TensorType(x.shape, "f32") for x in (q, k, k)))
    return np.repeat(k, g, axis=-3) if g > 1 else k
