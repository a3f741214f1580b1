"""waferscale: lower GPT models onto a wafer-scale mesh of cores and simulate them."""

__version__ = "0.1.0"
