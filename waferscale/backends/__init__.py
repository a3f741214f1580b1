"""Machine descriptions and lowering to mesh kernels: the next stage (issue 3), not built yet."""
