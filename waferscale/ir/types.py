"""Tensor types: an element type and a static shape, printed as ``f16[1,2048,768]``."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# name -> (numpy dtype, bytes per element). The names are the IR's spelling.
DTYPES: dict[str, tuple[np.dtype, int]] = {
    "f16": (np.dtype(np.float16), 2),
    "bf16": (np.dtype(np.float32), 2),  # NumPy has no bfloat16: computed in f32, counted as 2 bytes
    "f32": (np.dtype(np.float32), 4),
    "f64": (np.dtype(np.float64), 8),
    "i64": (np.dtype(np.int64), 8),
    "i32": (np.dtype(np.int32), 4),
    "i8": (np.dtype(np.int8), 1),
    # Quantised weights (passes/quantize.py): int4 codes held one per int8 in NumPy, counted as half a
    # byte (two packed per byte); fp8 (e4m3) held in f32 on the e4m3 grid (NumPy has no fp8), counted as 1.
    "i4": (np.dtype(np.int8), 0.5),
    "f8": (np.dtype(np.float32), 1),
    "bool": (np.dtype(np.bool_), 1),
}
FLOAT_DTYPES = frozenset({"f16", "bf16", "f32", "f64"})
INT_DTYPES = frozenset({"i64", "i32", "i8"})
QUANT_DTYPES = frozenset({"i8", "i4", "f8"})  # what a weight can be stored as (passes/quantize.py)


@dataclass(frozen=True, slots=True)
class TensorType:
    shape: tuple[int, ...]
    dtype: str

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; known: {', '.join(DTYPES)}")
        if any(not isinstance(d, int) or d < 0 for d in self.shape):
            raise ValueError(f"shape {self.shape} must hold non-negative ints")

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return math.ceil(self.numel * DTYPES[self.dtype][1])  # int4: two per byte

    @property
    def np_dtype(self) -> np.dtype:
        return DTYPES[self.dtype][0]

    def with_shape(self, shape) -> TensorType:
        return TensorType(tuple(shape), self.dtype)

    def with_dtype(self, dtype: str) -> TensorType:
        return TensorType(self.shape, dtype)

    def __str__(self) -> str:
        return f"{self.dtype}[{','.join(map(str, self.shape))}]"


def broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """NumPy broadcasting; raises ValueError naming the shapes that do not broadcast."""
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise ValueError(f"shapes {' and '.join(map(str, shapes))} do not broadcast") from None


def promote(*dtypes: str) -> str:
    """Result dtype of an elementwise op: the widest float, else the widest int, else bool."""
    order = ["bool", "i4", "i8", "f8", "i32", "i64", "bf16", "f16", "f32", "f64"]
    return max(dtypes, key=order.index)
