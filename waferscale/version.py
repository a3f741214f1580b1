"""The version of waferscale, in one place (every report states it)."""

__version__ = "0.1.0"
