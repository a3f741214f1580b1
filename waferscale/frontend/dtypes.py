"""torch dtypes <-> IR dtype names."""

import torch

from ..errors import UnsupportedError

TORCH_TO_IR = {
    torch.float16: "f16", torch.bfloat16: "bf16", torch.float32: "f32", torch.float64: "f64",
    torch.int64: "i64", torch.int32: "i32", torch.int8: "i8", torch.bool: "bool",
}
IR_TO_TORCH = {v: k for k, v in TORCH_TO_IR.items()}


def ir_dtype(dtype: torch.dtype) -> str:
    try:
        return TORCH_TO_IR[dtype]
    except KeyError:
        raise UnsupportedError(f"tensor dtype {dtype} (supported: {', '.join(map(str, TORCH_TO_IR))})") from None
