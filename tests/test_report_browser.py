"""report.html in a real headless Chromium (Debian's), driven by Playwright: it loads from file://
with no console error and nothing fetched, the mesh has one element per kernel, hovering one shows
its name, sorting puts the slowest kernel first, a row selects its rectangle (and the reverse),
and a screenshot is saved for a person to look at (in $WAFER_SCREENSHOTS, else the test's folder).

`make test-browser` installs Chromium and runs these with WAFER_REQUIRE_BROWSER=1, so that there a
missing browser fails instead of skipping; `make test` leaves them out (-m "not browser")."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from waferscale.cli import main
from waferscale.report.browser import open_report

from .conftest import browser_or_skip

pytestmark = pytest.mark.browser

ARGS = ["--seq", "64", "--batch", "2", "--target", "mesh:32x32", "-q"]


@pytest.fixture(scope="module", autouse=True)
def browser_present():
    browser_or_skip()


def compiled(tmp_path_factory, name, *extra):
    d = tmp_path_factory.mktemp(name) / "out"
    assert main(["compile", "tiny", *ARGS, *extra, "-o", str(d)]) == 0
    return d, json.loads((d / "placement.json").read_text())


def shots(tmp_path) -> Path:
    d = Path(os.environ.get("WAFER_SCREENSHOTS") or tmp_path)
    d.mkdir(parents=True, exist_ok=True)
    return d


def centre(page, selector):
    """The element's centre in viewport coordinates, scrolled into view first (a mouse event outside the
    viewport reaches nothing)."""
    page.locator(selector).scroll_into_view_if_needed()
    box = page.locator(selector).bounding_box()
    assert box and box["width"] > 0 and box["height"] > 0, selector
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def link_load(pj) -> np.ndarray:
    """Bytes per sample crossing each core, from the links placement.json lists, as mesh.png sums them
    (each link of a route stands for a bundle of `lanes` parallel links)."""
    rows, cols = pj["target"]["rows"], pj["target"]["cols"]
    load = np.zeros((rows, cols))
    for f in pj["flows"]:
        lanes, per_lane = f["lanes"], f["bytes_per_sample"] / f["lanes"]
        for link in f["route"]["links"]:  # listed up to 64 hops: all of them on a 32 x 32 mesh
            row, col, d = re.fullmatch(r"\((-?\d+),(-?\d+)\)->([NSEW])", link).groups()
            row, col = int(row), int(col)
            if d in "EW":
                lo = min(max(row - lanes // 2, 0), max(rows - lanes, 0))
                load[lo:lo + lanes, max(col, 0)] += per_lane
            else:
                lo = min(max(col - lanes // 2, 0), max(cols - lanes, 0))
                load[row, lo:lo + lanes] += per_lane
    return load


def first_row(page) -> int:
    return int(page.locator("#table tbody tr").first.get_attribute("data-k"))


def test_the_page_in_a_browser(tmp_path_factory, tmp_path):
    d, pj = compiled(tmp_path_factory, "pipelined")
    kernels = pj["kernels"]
    slowest = max(kernels, key=lambda k: (k["cycles"], -k["id"]))
    with open_report(d / "report.html") as r:
        page = r.page
        # one SVG rectangle per kernel, each where placement.json puts it
        assert page.locator("svg#mesh rect.k").count() == len(kernels) == 13
        rect = page.locator('svg#mesh rect.k[data-k="7"]')
        assert [int(rect.get_attribute(a)) for a in ("y", "x", "height", "width")] == \
            [kernels[7]["rect"][a] for a in ("row", "col", "rows", "cols")]

        # hovering a kernel shows its name, op, module path and SRAM by buffer
        for k in (kernels[2], kernels[9]):
            page.mouse.move(*centre(page, f'svg#mesh rect.k[data-k="{k["id"]}"]'))
            tip = page.locator("#tooltip")
            assert tip.is_visible()
            text = tip.inner_text()
            assert k["name"] in text and k["loc"] in text and k["computes"] in text and "weights" in text
        page.mouse.move(2, 2)
        assert not page.locator("#tooltip").is_visible()

        # the table starts with the slowest; sorted by id, then by cycles, the slowest is first again
        assert first_row(page) == slowest["id"]
        page.click('#table th[data-key="id"]')
        assert first_row(page) == 0
        page.click('#table th[data-key="cycles"]')
        assert first_row(page) == slowest["id"]
        assert "\u25bc" in page.locator('#table th[data-key="cycles"]').inner_text()

        # a row selects its rectangle on the mesh and draws its flows' routes
        page.click(f'#table tbody tr[data-k="{slowest["id"]}"]')
        selected = page.locator("svg#mesh rect.k.sel")
        assert selected.count() == 1 and selected.get_attribute("data-k") == str(slowest["id"])
        touching = [f for f in pj["flows"] if slowest["id"] in (f["src"], f["dst"]) and f["hops"]]
        assert page.locator("svg#mesh #routes polyline.route").count() == len(touching) > 0
        assert slowest["name"] in page.locator("#details").inner_text()

        # and the reverse: clicking a rectangle selects its row
        page.mouse.click(*centre(page, 'svg#mesh rect.k[data-k="3"]'))
        assert page.locator("#table tbody tr.sel").get_attribute("data-k") == "3"
        assert page.locator("svg#mesh rect.k.sel").get_attribute("data-k") == "3"

        # the filter keeps the matching rows
        page.fill("#filter", "attn.c_attn")
        names = page.locator("#table tbody tr td.name").all_inner_texts()
        assert names and all("attn.c_attn" in n for n in names)
        page.fill("#filter", "")

        # colours by bound, and the link-load layer drawn from the routes
        page.select_option("#colour", "bound")
        assert "compute" in page.locator("#legend").inner_text()
        page.click("#busiest tbody tr.link >> nth=0")
        assert page.locator("#heat").is_checked()
        assert page.locator("#heat-img").get_attribute("href").startswith("data:image/png;base64,")
        assert page.locator("svg#mesh #marks circle").count() == 1
        load = link_load(pj)  # the page rebuilds the routes from their ends: the same loads
        assert page.evaluate("window.waferReport.heat()") == pytest.approx(
            [load[load > 0].min(), load.max(), load.sum()], rel=1e-4)
        page.locator("#heat").uncheck()

        page.mouse.move(*centre(page, f'svg#mesh rect.k[data-k="{slowest["id"]}"]'))
        out = shots(tmp_path) / "report-tiny.png"
        page.screenshot(path=str(out), full_page=True)
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000

        assert r.errors == []
        assert r.requests and all(u.startswith(("file:", "data:")) for u in r.requests), r.requests


def test_weight_streaming_in_a_browser(tmp_path_factory, tmp_path):
    d, pj = compiled(tmp_path_factory, "streaming", "--mode", "streaming")
    groups = pj["groups"]
    with open_report(d / "report.html") as r:
        page = r.page
        visible = page.locator('svg#mesh rect.k[visibility="visible"]')
        # the first block's kernels, which have the whole wafer while that layer runs
        block = next(g for g in groups if g["name"] == "transformer.h.0")
        assert sorted(int(x.get_attribute("data-k")) for x in visible.all()) == block["kernels"]
        assert page.locator("#layers tr.layer").count() == len(groups)
        page.click('#layers tr.layer[data-group="3"]')  # head
        assert sorted(int(x.get_attribute("data-k")) for x in visible.all()) == groups[3]["kernels"]
        # selecting a kernel of another layer shows that layer
        page.click(f'#table tbody tr[data-k="{groups[0]["kernels"][0]}"]')
        assert page.locator("#group").input_value() == "0"
        page.locator("#heat").check()
        page.screenshot(path=str(shots(tmp_path) / "report-tiny-streaming.png"), full_page=True)
        assert r.errors == []


def test_a_sparse_kernel_shows_its_density_and_speedup(tmp_path_factory):
    d, pj = compiled(tmp_path_factory, "sparse", "--sparsity", "0.25")
    k = next(k for k in pj["kernels"] if k["sparse"])
    with open_report(d / "report.html") as r:
        page = r.page
        page.mouse.move(*centre(page, f'svg#mesh rect.k[data-k="{k["id"]}"]'))
        text = page.locator("#tooltip").inner_text()
        assert f"density {k['sparse']['density']:.3f}" in text and f"{k['sparse']['speedup']:.2f}x" in text
        assert "sparse kernels at density" in page.locator("body").inner_text()
        assert not r.errors
