"""Open a report.html in a headless Chromium through Playwright (the ``browser`` extra), for the
browser test (tests/test_report_browser.py) and benchmarks/report_html.py.

The browser is the system's Chromium (Debian's ``chromium`` package, ``make test-browser`` installs
it), not one Playwright downloads: ``WAFER_CHROMIUM`` names another. The page is opened from
``file://``; every request it makes is recorded, so a test can tell that it loads nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    return os.environ.get("WAFER_CHROMIUM", CHROMIUM)


def available() -> str | None:
    """None when a page can be opened; else why not, in one line."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed: pip install -e '.[browser]'"
    if not os.access(chromium(), os.X_OK):
        return f"no Chromium at {chromium()}: `make test-browser` installs Debian's (apt-get install chromium)"
    return None


@dataclass
class Opened:
    page: object  # playwright.sync_api.Page
    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions
    requests: list[str] = field(default_factory=list)  # every URL the page asked for


@contextmanager
def open_report(path: Path, width: int = 1400, height: int = 1000) -> Iterator[Opened]:
    """The page at ``path``, loaded and its script run (``body[data-ready]``)."""
    why = available()
    if why:
        raise UsageError(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            opened = Opened(page)
            page.on("console", lambda m: m.type == "error" and opened.errors.append(f"console: {m.text}"))
            page.on("pageerror", lambda e: opened.errors.append(f"uncaught: {e}"))
            page.on("request", lambda r: opened.requests.append(r.url))
            page.goto(Path(path).resolve().as_uri())
            page.wait_for_selector("body[data-ready='1']", state="attached", timeout=30_000)
            yield opened
        finally:
            browser.close()
