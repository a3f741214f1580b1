"""Serving policies, one a file: how engines share the machine (``colocated``: one engine does
prefill and decode on all cores; ``disaggregated``: a prefill engine and a decode engine, the KV
cache moved between them)."""

from .colocated import Colocated
from .disaggregated import Disaggregated, Link

__all__ = ["Colocated", "Disaggregated", "Link"]
