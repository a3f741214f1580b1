"""`wafer serve`'s latency against the load (several --rate values on one cost grid) and its
report.html: the curve drawn, and hostile strings and values in report.json kept as text (no
element or attribute the data made; in Chromium, no script of theirs runs)."""

import json
import re

import pytest

from waferscale.cli.serve import load_point, load_table, table
from waferscale.serve.costs import LinearCost
from waferscale.serve.html import report_html
from waferscale.serve.loop import serve
from waferscale.serve.policies import Colocated
from waferscale.serve.trace import synthetic

from .conftest import browser_or_skip
from .test_cli import run_cli
from .test_report_hostile import PAYLOADS, Markup

RATES = (2, 20, 200)


def _report(model="tiny", target="mesh:32x32", policy="colocated"):
    """A report.json's serve section, as cmd_serve writes it, from a synthetic step cost."""
    load, policy_obj = [], Colocated(LinearCost(), max_batch=8, chunk=64)
    for rate in RATES:
        store = serve(synthetic(rate, 300, seed=1), policy_obj.fresh(), slo_tpot=0.002)
        load.append(load_point(rate, store.summary()))
    s = store.summary()
    return {"model": model, "target": target, "serve": {"policy": policy, "summary": s, "timeline": store.timeline(),
                                                         "load": load}}, s, load


def test_the_load_curve_rises_with_the_rate_and_is_drawn():
    report, s, load = _report()
    ttft = [p["ttft_seconds"]["p99"] for p in load]
    assert ttft == sorted(ttft) and ttft[-1] > 10 * ttft[0]  # past capacity the queue's wait shows
    page = report_html(report, table(s) + "\n\n" + load_table(load))
    assert "Latency against load" in page and "<script" not in page
    m = Markup(page)
    assert m.tags.count("polyline") == 4 + 2  # four series, and the two charts over time
    assert m.tags.count("circle") == 4 * len(RATES)
    for r in RATES:
        assert f">{r:g}</text>" in page


def test_one_rate_draws_no_load_curve():
    report, s, load = _report()
    report["serve"]["load"] = load[:1]
    assert "Latency against load" not in report_html(report, table(s))


def test_hostile_strings_and_values_in_the_report_stay_text():
    clean, s, load = _report()
    want = Markup(report_html(clean, table(s)))
    bad, _, bad_load = _report(PAYLOADS[0], PAYLOADS[1], PAYLOADS[2])
    for i, p in enumerate(bad_load):  # values the chart reads, made strings, markup, odd numbers
        p["ttft_seconds"]["p50"] = PAYLOADS[3]
        p["tpot_seconds"] = {"p99": float("nan"), "p50": PAYLOADS[4]} if i else {"p50": -1.0}
    bad_load.append({"rate": PAYLOADS[5], "ttft_seconds": PAYLOADS[6]})
    page = report_html(bad, PAYLOADS[7] + table(s))
    got = Markup(page)
    names = {a for _, a, _ in want.attrs}
    assert set(got.tags) <= set(want.tags) and "script" not in got.tags
    for tag, a, v in got.attrs:
        assert a in names and not a.startswith("on") and "javascript:" not in v.lower() and "<" not in v, (tag, a)
    for p in PAYLOADS:
        if "<" in p:
            assert p not in page
    assert "Latency against load" in page  # the numbers that are numbers still drawn


def test_wafer_serve_with_several_rates_writes_the_load_curve(capsys, tmp_path):
    code, out, err = run_cli(capsys, "serve", "tiny", "--target", "mesh:32x32", "--rate", "1000,20000,200000",
                             "--requests", "40", "--prompt-dist", "uniform:2,12", "--output-dist", "uniform:2,12",
                             "--max-batch", "2", "--chunk", "8", "--max-context", "24", "-q", "-o", str(tmp_path))
    assert code == 0, err
    assert "latency against load" in out and re.search(r"^\s+200000\s", out, re.M)
    report = json.loads((tmp_path / "report.json").read_text())
    s, host = report["serve"], report["host"]
    assert host["cost_grid_seconds"] == s["timing"]["cost_grid_seconds"] > 0  # grouped, the old keys kept
    assert host["seconds"] >= host["cost_grid_seconds"] + host["serve_seconds"] and host["peak_rss_bytes"] > 0
    assert host["engines"]["all"]["grid_seconds"] == s["costs"]["all"]["grid_seconds"]
    assert [p["rate"] for p in s["load"]] == [1000, 20000, 200000]
    assert s["requests_from"]["rate"] == 200000 and s["requests_from"]["rates"] == [1000, 20000, 200000]
    assert s["load"][-1]["ttft_seconds"]["p99"] == s["summary"]["ttft_seconds"]["p99"]  # the last rate's run
    assert s["load"][0]["ttft_seconds"]["p99"] < s["load"][-1]["ttft_seconds"]["p99"]
    assert "Latency against load" in (tmp_path / "report.html").read_text()


@pytest.mark.parametrize("rate", ["0", "-3", "abc", "5,,6", "5,5", "inf"])
def test_a_bad_rate_list_is_one_line(capsys, tmp_path, rate):
    code, _, err = run_cli(capsys, "serve", "tiny", "--target", "mesh:32x32", "--rate", rate, "--requests", "4",
                           "-o", str(tmp_path / "o"))
    assert code == 2 and "--rate" in err and len(err.strip().splitlines()) == 1


def test_the_serve_page_in_a_browser(tmp_path):
    browser_or_skip()
    from playwright.sync_api import sync_playwright

    from waferscale.report.browser import ARGS, chromium

    bad, s, load = _report(PAYLOADS[0], PAYLOADS[2])
    load[0]["ttft_seconds"]["p50"] = PAYLOADS[1]
    f = tmp_path / "report.html"
    f.write_text(report_html(bad, PAYLOADS[1] + table(s)))
    dialogs, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=ARGS)
        try:
            page = browser.new_page()
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(f.as_uri())
            page.wait_for_load_state("load")
            for c in page.query_selector_all("circle")[:4]:
                c.hover()
            assert page.evaluate("window.__pwned") is None and not dialogs
            assert page.evaluate("document.scripts.length") == 0
            assert page.evaluate("document.querySelectorAll('svg').length") == 3
            assert PAYLOADS[0] in page.inner_text("h1")  # the model's name shown as text
        finally:
            browser.close()
    assert requests == [f.as_uri()]
