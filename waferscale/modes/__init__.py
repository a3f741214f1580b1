"""Modes: the ways of running a model, one file each (``inference``, ``train``, ``generate``, ``serve``),
all with the face of ``base.Mode``; the registry maps their names to their classes, and a mode
registered from anywhere else (``register_mode``) compiles like these."""

from . import generate, inference, serve, train  # noqa: F401  (register the modes)
from .base import MODES, Context, Mode, Outcome, RunSpec, get_mode, register_mode

__all__ = ["MODES", "Context", "Mode", "Outcome", "RunSpec", "get_mode", "register_mode"]
