import functools
import importlib.util
import os
from pathlib import Path

import pytest

from waferscale.frontend.lm import trace_lm


@functools.cache
def traced(name: str, seq: int = 16, weights: str = "auto", dtype: str = "f32"):
    """One trace per (model, shape) for the whole session: tracing is the slow part."""
    return trace_lm(name, seq=seq, weights=weights, dtype=dtype)


@pytest.fixture(scope="session")
def tiny():
    return traced("tiny", seq=16, weights="random")


def browser_or_skip() -> None:
    """Skip a browser test where Debian's chromium or Playwright is missing, or fail it where
    WAFER_REQUIRE_BROWSER=1 (make test, CI) says it must run."""
    from waferscale.report.browser import available

    why = available()
    if why and os.environ.get("WAFER_REQUIRE_BROWSER") == "1":
        pytest.fail(why)
    if why:
        pytest.skip(why)


@pytest.fixture(scope="module")
def calibrate():
    """benchmarks/calibrate.py as a module (the calibration and cost-table tests run its cases)."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "calibrate.py"
    spec = importlib.util.spec_from_file_location("calibrate", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
