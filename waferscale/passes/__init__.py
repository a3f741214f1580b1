"""Graph-to-graph passes and the pass manager that runs a pipeline string of them."""

from .manager import PASSES, run_pipeline

__all__ = ["PASSES", "run_pipeline"]
