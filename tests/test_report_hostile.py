"""report.html from a doctored report.json and placement.json (issue 24): every string of a tiny
compile's two files, and the keys the page shows, replaced by markup, script ends, attribute breaks
and javascript: URLs. Without a browser the page's markup must be the clean page's (no element or
attribute the data made, the JSON island inert and read back whole); in Chromium, driven through
every control, tooltip and selection the page has, no script of theirs may run and no dialog open."""

import copy
import json
import os
import re
import shutil
from html import escape
from html.parser import HTMLParser
from importlib.resources import files
from pathlib import Path

import pytest

from waferscale.cli import main
from waferscale.errors import WaferError
from waferscale.report.html import page_data, report_html

from .conftest import browser_or_skip

ARGS = ["tiny", "--seq", "64", "--batch", "2", "--target", "mesh:32x32", "-q"]

PAYLOADS = [
    "<img src=x onerror=window.__pwned=1>",
    "</script><script>window.__pwned=1</script>",
    '"><svg onload=window.__pwned=1>',
    "'><svg/onload=alert(1)>",
    "javascript:window.__pwned=1//",
    "<!--<script>window.__pwned=1</script>",
    "\u2028\u2029<style>*{background:url(javascript:alert(1))}</style>",
    "${window.__pwned=1}{x}&amp;&#60;script&#62;</td></tr></table><b onmouseover=alert(1)>",
]
MARKUP = [p for p in PAYLOADS if "<" in p]

# Dicts whose keys the page shows (as "compute 11", "activations in 268 B"): their keys are
# replaced too. Other keys are looked up by name, and a file without them is a one-line error.
SHOWN_KEYS = {("time", "kernels_by_bound"), ("time", "layers_by_bound"), ("time", "roofline"),
              ("kernels", "*", "sram_bytes_per_core")}
LOOKED_UP = {"total"}  # sram_bytes_per_core's total is read by name


def hostile(doc, memo: dict, path=()):
    """``doc`` with each string leaf (and each key in SHOWN_KEYS) replaced by a payload followed by the
    original text. The same text gets the same replacement, so what refers to a name still does."""
    def swap(s: str) -> str:
        if s not in memo:
            memo[s] = PAYLOADS[len(memo) % len(PAYLOADS)] + s
        return memo[s]

    if isinstance(doc, dict):
        shown = tuple("*" if isinstance(p, int) else p for p in path) in SHOWN_KEYS
        return {(swap(k) if shown and k not in LOOKED_UP else k): hostile(v, memo, (*path, k)) for k, v in doc.items()}
    if isinstance(doc, list):
        return [hostile(v, memo, (*path, i)) for i, v in enumerate(doc)]
    return swap(doc) if isinstance(doc, str) else doc


def compiled(tmp_path_factory, name, *extra):
    d = tmp_path_factory.mktemp(name) / "out"
    assert main(["compile", *ARGS, *extra, "-o", str(d)]) == 0
    return json.loads((d / "report.json").read_text()), json.loads((d / "placement.json").read_text()), d


@pytest.fixture(scope="module")
def pipelined(tmp_path_factory):
    return compiled(tmp_path_factory, "pipelined")


@pytest.fixture(scope="module")
def streaming(tmp_path_factory):  # weight streaming (layers, groups) and sparse kernels: every section
    return compiled(tmp_path_factory, "streaming", "--mode", "streaming", "--sparsity", "0.25")


@pytest.fixture(scope="module")
def training(tmp_path_factory):  # a training step: its efficiency-vs-systems plot (train.scaling)
    return compiled(tmp_path_factory, "training", "--train", "--mode", "streaming", "--micro-batch", "1")


def doctored(report, pj):
    memo = {}
    r, p = hostile(report, memo), hostile(pj, memo)
    for b in p["links"]["busiest"]:  # written raw into the page before issue 24: a number, made markup
        b["colors"] = PAYLOADS[0]
    for f in p["flows"]:  # a number the script shows (a selected kernel's flows), made markup
        f["hops"] = PAYLOADS[0]
    return r, p, memo


class Markup(HTMLParser):
    """The elements and attributes of a page, and the text of its scripts, as a browser parses them."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags, self.attrs, self.scripts, self._in_script = [], [], [], False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, a, v or "") for a, v in attrs]
        if tag == "script":
            self._in_script = True
            self.scripts.append("")

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False


def assert_inert(page: str, want: Markup, report: dict, pj: dict):
    """``page`` has the clean page's elements and attribute names (``want``), nothing the data made; its
    JSON island holds no character that could end or change its element and parses back to the data."""
    got = Markup(page)
    assert got.tags == want.tags  # no element added, none cut short
    names = {a for _, a, _ in want.attrs}
    for tag, a, v in got.attrs:
        assert a in names and not a.startswith("on"), (tag, a, v)
        if a == "style":  # only bar widths, numbers made here
            assert re.fullmatch(r"width:\d+\.\d\d%", v), v
        elif not a.startswith("data-"):  # data-* attributes are inert text
            assert "javascript:" not in v.lower() and "<" not in v, (tag, a, v)
    assert len(got.scripts) == 2
    island, script = got.scripts
    assert script.strip() == files("waferscale.report").joinpath("page", "report.js").read_text().strip()
    assert not re.search("[<>&\u2028\u2029]", island)
    assert json.loads(island) == json.loads(json.dumps(page_data(report, pj)))  # each string read back as it was
    outside = re.sub(r'<script id="data" type="application/json">.*?</script>', "", page, flags=re.S)
    for p in MARKUP:
        assert p not in outside
    assert outside.count("<script") == 1 and outside.count("</script>") == 1


@pytest.mark.parametrize("which", ["pipelined", "streaming", "training"])
def test_hostile_strings_everywhere_stay_text(which, request):
    report, pj, _ = request.getfixturevalue(which)
    r, p, memo = doctored(report, pj)
    page = report_html(r, p)
    assert_inert(page, Markup(report_html(report, pj)), r, p)
    # and they are on the page, as text: the title, a link, a kernel count by bound, the pipeline
    assert f"<title>waferscale: {escape(r['model']['name'])} on {escape(p['target']['name'])}" in page
    assert f"<td>{escape(p['links']['busiest'][0]['link'])}</td>" in page
    assert f'<td class="num">{escape(PAYLOADS[0])}</td>' in page  # the colors column
    bound = next(iter(r["time"]["kernels_by_bound"]))
    assert escape(bound) in page and bound != "compute" and bound.endswith("compute")
    assert f'<code id="pipeline">{escape(r["pipeline"])}</code>' in page
    # the energy section (issue 30): its strings (what a token is, the basis) are on the page as text
    assert "energy" in report and r["energy"]["per"] != report["energy"]["per"]
    assert escape(r["energy"]["per"]) in page and escape(r["energy"]["basis"]) in page
    assert '<table id="energy">' in page
    if which == "streaming":
        assert escape(r["time"]["layers"][0]["name"]) in page and "sparse kernels at density" in page
    if which == "training":  # the plot's section, and its points in the island as numbers
        assert 'id="scaling-section"' in page and 'id="scaling"' in page
        pts = [x for p in r["train"]["scaling"]["points"] for x in (p["systems"], p["efficiency"])]
        shown = [x for p in json.loads(Markup(page).scripts[0])["scaling"] for x in p]
        assert len(pts) >= 4 and shown == pytest.approx(pts, rel=1e-3)
    else:
        assert 'id="scaling-section"' not in page
    # every replaced string the island carries is there whole (only the script turns it into text)
    data = json.loads(Markup(page).scripts[0])
    assert data["model"] == r["model"]["name"] and data["kernels"][0]["name"] == p["kernels"][0]["name"]
    assert set(memo.values()) >= {k["bound"] for k in data["kernels"]}


@pytest.mark.parametrize("which", ["pipelined", "streaming", "training"])
def test_markup_in_any_number_makes_an_inert_page_or_an_error(which, request):
    """One at a time, each number, null and boolean of both files becomes markup: the page is either
    inert or not made (an error that `wafer report --html` turns into one line). Of a list of records
    (kernels, flows, layers, passes) the first and the last stand for all; the assumptions are not read."""
    report, pj, _ = request.getfixturevalue(which)
    clean = Markup(report_html(report, pj))
    made = 0
    for doc in ("report", "pj"):
        leaves = []

        def walk(x, path):
            if isinstance(x, dict):
                for k, v in x.items():
                    walk(v, (*path, k))
            elif isinstance(x, list):
                for i in sorted({0, len(x) - 1} if x and isinstance(x[0], dict) else range(len(x))):
                    walk(x[i], (*path, i))
            elif not isinstance(x, str):
                leaves.append(path)

        walk({k: v for k, v in (report if doc == "report" else pj).items() if k != "assumptions"}, ())
        for n, path in enumerate(leaves):
            r, p = copy.deepcopy(report), copy.deepcopy(pj)
            node = r if doc == "report" else p
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = PAYLOADS[n % len(PAYLOADS)]
            try:
                page = report_html(r, p)
            except (KeyError, TypeError, AttributeError, ValueError, IndexError, WaferError):
                continue  # cli._from_reports: one line, exit 2
            assert_inert(page, clean, r, p)
            made += 1
    assert made > 50  # most numbers the page only carries in its data, which stays inert


def test_wafer_report_html_on_doctored_files_writes_the_inert_page(pipelined, tmp_path, capsys):
    """The issue's reproduction: doctored files in a compiled directory, then `wafer report DIR --html`."""
    report, pj, src = pipelined
    d = tmp_path / "out"
    shutil.copytree(src, d)
    r, p, _ = doctored(report, pj)
    (d / "report.json").write_text(json.dumps(r))
    (d / "placement.json").write_text(json.dumps(p))
    assert main(["report", str(d), "--html"]) == 0
    capsys.readouterr()
    page = (d / "report.html").read_text()
    assert page == report_html(r, p)
    assert_inert(page, Markup(report_html(report, pj)), r, p)


# ---- in a browser -------------------------------------------------------------------------------




# Elements of a kind driven one by one (kernels of a group, table rows, layers, links): the first SAMPLE.
# Every element of a kind runs the same code, and consecutive names carry every payload (``hostile``
# cycles through PAYLOADS), so more only costs time (a training report has hundreds of kernels).
SAMPLE = 16


def _drive(page):
    """Every control the page offers, and hovers and selections of the first SAMPLE elements of each
    kind, in each layer it can show."""
    def centre(loc):
        loc.scroll_into_view_if_needed()
        box = loc.bounding_box()
        return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

    page.select_option("#limit", "all")
    groups = page.locator("#group option").count()
    for g in range(groups) if groups else [None]:
        if g is not None:
            page.select_option("#group", str(g))
        # every group's first kernels (a quarter of SAMPLE after the first group: a weight-streaming
        # training step has dozens of groups, each a layer's kernels again)
        for rect in page.locator('svg#mesh rect.k[visibility="visible"]').all()[:SAMPLE if not g else SAMPLE // 4]:
            rect.scroll_into_view_if_needed()
            page.mouse.move(*centre(rect))
            assert page.locator("#tooltip").is_visible()
            page.mouse.click(*centre(rect))
            for li in page.locator("#details li[data-k]").all()[:SAMPLE]:
                li.hover()
            page.mouse.move(2, 2)
    for th in page.locator("#table thead th").all():
        th.click()
        th.click()
    for tr in page.locator("#table tbody tr").all()[:SAMPLE]:
        tr.hover()
        tr.click()
        li = page.locator("#details li[data-k]")
        if li.count():
            li.first.click()
    for colour in ("util", "bound", "sram", "layer"):
        page.select_option("#colour", colour)
    for tr in page.locator("#busiest tbody tr.link").all()[:SAMPLE]:
        tr.click()
    page.locator("#heat").uncheck()
    page.locator("#heat").check()
    for tr in page.locator("#layers tr.layer").all()[:SAMPLE]:
        tr.click()
    page.fill("#filter", PAYLOADS[0])
    page.fill("#filter", "transformer")
    page.fill("#filter", "")
    page.select_option("#limit", "25")


@pytest.mark.browser
@pytest.mark.parametrize("which", ["pipelined", "streaming", "training"])
def test_no_script_of_theirs_runs_in_a_browser(which, request, tmp_path):
    browser_or_skip()
    from playwright.sync_api import sync_playwright

    from waferscale.report.browser import ARGS as CHROME_ARGS
    from waferscale.report.browser import chromium

    report, pj, _ = request.getfixturevalue(which)
    r, p, _ = doctored(report, pj)
    path = tmp_path / "report.html"
    path.write_text(report_html(r, p))
    dialogs, errors, requests = [], [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=CHROME_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))  # listening before it loads
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.on("request", lambda q: requests.append(q.url))
            page.goto(path.resolve().as_uri())
            page.wait_for_selector("body[data-ready='1']", state="attached", timeout=30_000)
            # the page works: its kernels, and their names shown as text
            assert page.locator("svg#mesh rect.k").count() == len(p["kernels"])
            shown = page.locator("#table").inner_text() + page.locator("body").inner_text()
            assert any(k["name"] in shown for k in p["kernels"])  # weight streaming: one layer's kernels at first
            if which == "training":  # the efficiency-vs-systems plot: a point per count
                assert page.locator("svg#scaling-plot circle").count() == len(r["train"]["scaling"]["points"])
            _drive(page)
            sel = page.evaluate("window.waferReport.state.sel")  # its name, whole, as text
            # (the browser trims ASCII whitespace only: a name may begin with U+2028, which str.strip() drops)
            assert page.locator("#details .kname").inner_text() == p["kernels"][sel]["name"].strip(" \t\n\r")
            out = Path(os.environ.get("WAFER_SCREENSHOTS") or tmp_path)
            out.mkdir(parents=True, exist_ok=True)
            page.locator("svg#mesh").scroll_into_view_if_needed()
            box = page.locator('svg#mesh rect.k[visibility="visible"]').first.bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # a tooltip in the picture
            page.screenshot(path=str(out / f"report-hostile-{which}.png"), full_page=True)
            assert page.evaluate("typeof window.__pwned") == "undefined"
            assert page.evaluate("document.querySelectorAll('img, iframe, object, embed, b, style').length") == 1
        finally:
            browser.close()
    assert dialogs == [] and errors == []
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
