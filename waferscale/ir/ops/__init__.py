"""Op definitions, one family per module; importing this package registers them all."""

from . import cache, elementwise, fused, grad, linalg, moe, moe_grad, nn, quant, shape, sinks  # noqa: F401
