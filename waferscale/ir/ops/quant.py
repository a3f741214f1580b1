"""Quantised weights (``passes/quantize.py``): a weight stored as int8, int4 or fp8 codes with one
scale per output channel and group of ``group`` elements along the contraction axis, and the op
that makes the f16 weight back from them.

``dequantize(q, scale) {axis, group}``: ``w[..., i, ...] = q[..., i, ...] * scale[..., i // group, ...]``
along ``axis`` (the weight's contraction axis, K); ``group = 0`` is one group over the whole axis
(per-channel scales). The scale has the shape of ``q`` with that axis ``ceil(K / group)`` long.
One multiply per element (its FLOPs). On the mesh it is no kernel of its own: the GEMM that reads
the weight holds the codes and scales and dequantises as it reads them
(``backends/kernels/matmul.py``, ``backends/datapath.py``).
"""

from __future__ import annotations

from math import ceil

import numpy as np

from ..registry import Attr, define
from ..types import FLOAT_DTYPES, QUANT_DTYPES, TensorType

E4M3_MANTISSA_BITS, E4M3_MIN_EXP = 3, -6  # e4m3fn: normals down to 2^-6, subnormals in steps of 2^-9


def round_e4m3(x: np.ndarray) -> np.ndarray:
    """x rounded to the nearest fp8 e4m3 value (ties to even), clipped to +-448."""
    x = np.asarray(x, dtype=np.float64)
    e = np.floor(np.log2(np.maximum(np.abs(x), 2.0**E4M3_MIN_EXP)))
    step = 2.0 ** (np.maximum(e, E4M3_MIN_EXP) - E4M3_MANTISSA_BITS)
    return np.clip(np.rint(x / step) * step, -448.0, 448.0)


def groups(k: int, group: int) -> int:
    """Scales along an axis of k elements in groups of ``group`` (0: one group)."""
    return 1 if group <= 0 else ceil(k / group)


def expand_scale(scale: np.ndarray, axis: int, k: int, group: int) -> np.ndarray:
    """The scale repeated to one per element along ``axis``."""
    return scale if group <= 0 else np.repeat(scale, group, axis=axis).take(range(k), axis=axis)


def _infer(ins, a):
    q, s = ins
    if q.dtype not in QUANT_DTYPES:
        raise ValueError(f"dequantize reads quantised codes ({', '.join(sorted(QUANT_DTYPES))}), got {q}")
    if s.dtype not in FLOAT_DTYPES:
        raise ValueError(f"dequantize scales must be floats, got {s}")
    if a["dtype"] not in FLOAT_DTYPES:
        raise ValueError(f"dequantize dtype={a['dtype']} must be a float type")
    if not 0 <= a["axis"] < q.rank:
        raise ValueError(f"dequantize axis={a['axis']} is not an axis of {q}")
    if a["group"] < 0:
        raise ValueError(f"dequantize group={a['group']} must be >= 0 (0: one scale per channel)")
    want = list(q.shape)
    want[a["axis"]] = groups(q.shape[a["axis"]], a["group"])
    if list(s.shape) != want:
        raise ValueError(f"dequantize scale {s} must have shape {want} for codes {q} (axis {a['axis']}, "
                         f"group {a['group']})")
    return TensorType(q.shape, a["dtype"])


def _ref(args, a):
    q, s = args
    k = q.shape[a["axis"]]
    return q.astype(np.float32) * expand_scale(s.astype(np.float32), a["axis"], k, a["group"])


define("dequantize", "elementwise", _infer, _ref, flops=lambda ins, out, a: out.numel, arity=(2, 2),
       attrs={"axis": Attr("int", 0), "group": Attr("int", 0), "dtype": Attr("str", "f16")},
       doc="w = q * scale, the scale repeated over groups of `group` elements along `axis` (0: per channel)")
