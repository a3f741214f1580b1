"""report.html without a browser: what `wafer compile --target` and `wafer report --html` write, its
embedded data, that it loads nothing from elsewhere, and one-line errors. The page driven in a real
browser: tests/test_report_browser.py."""

import json
import re

import pytest

from waferscale.cli import main
from waferscale.report.html import page_data, report_html

from .test_cli import run_cli

ARGS = ["--seq", "64", "--batch", "2", "--target", "mesh:32x32", "-q"]


def compiled(tmp_path_factory, name: str, *extra: str):
    d = tmp_path_factory.mktemp(name) / "out"
    assert main(["compile", "tiny", *ARGS, *extra, "-o", str(d)]) == 0
    return d


@pytest.fixture(scope="module")
def pipelined(tmp_path_factory):
    return compiled(tmp_path_factory, "pipelined")


@pytest.fixture(scope="module")
def streaming(tmp_path_factory):
    return compiled(tmp_path_factory, "streaming", "--mode", "streaming")


def island(html: str) -> dict:
    """The page's JSON island, as its script reads it."""
    m = re.search(r'<script id="data" type="application/json">(.*?)</script>', html, re.S)
    assert m, "no data island"
    return json.loads(m.group(1))


def loaded(d):
    return json.loads((d / "report.json").read_text()), json.loads((d / "placement.json").read_text())


def test_the_page_carries_every_kernel_and_flow_of_the_placement(pipelined):
    html = (pipelined / "report.html").read_text()
    report, pj = loaded(pipelined)
    data = island(html)
    assert len(data["kernels"]) == len(pj["kernels"]) == report["program"]["kernels"] == 13
    assert [k["name"] for k in data["kernels"]] == [k["name"] for k in pj["kernels"]]
    assert len(data["flows"]) == len(pj["flows"]) == report["program"]["flows"]
    k, p = data["kernels"][5], pj["kernels"][5]
    assert k["rect"] == [p["rect"]["row"], p["rect"]["col"], p["rect"]["rows"], p["rect"]["cols"]]
    assert k["sram_total"] == sum(k["sram"].values()) == p["sram_bytes_per_core"]["total"]
    assert k["cycles"] == p["cycles"] and k["bound"] == p["bound"]
    # each flow's ends are its route's, from which the page rebuilds the XY route
    for f, q in zip(data["flows"], pj["flows"]):
        assert f[:6] == [q["src"], q["dst"], *q["route"]["from"], *q["route"]["to"]]
        assert f[8] == q["hops"] == abs(f[4] - f[2]) + abs(f[5] - f[3])
    # layers, for colouring: embeddings, the two blocks, head
    assert data["layers"] == ["embeddings", "transformer.h.0", "transformer.h.1", "head"]
    assert data["groups"] == [] and data["shown_group"] == -1 and data["mode"] == "layer-pipelined"
    # the static sections: summary, busiest links, pass timings and the pipeline string
    assert "<h1>waferscale: tiny on mesh:32x32 (layer-pipelined)</h1>" in html
    assert html.count('<tr class="link"') == len(pj["links"]["busiest"])
    assert f'<code id="pipeline">{report["pipeline"]}</code>' in html
    assert html.count("<td><code>") == len(report["compile"]["passes"]) == 6
    assert "layers-section" not in html  # no weight streaming


def test_the_page_is_self_contained(pipelined):
    html = (pipelined / "report.html").read_text()
    assert not re.search(r"""\b(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert not re.search(r"<link\b|<script[^>]*\bsrc=|@import|url\(\s*['\"]?(https?:)?//", html, re.I)
    assert html.count("<script") == 2  # the data island and the inlined script
    assert "function select(" in html and "svg#mesh rect.k" in html  # the script and the style sheet, inline
    # nothing in the data can end its script element early
    assert html.count("</script>") == 2


def test_wafer_report_html_rewrites_the_same_page(pipelined, capsys, tmp_path):
    first = (pipelined / "report.html").read_bytes()
    (pipelined / "report.html").unlink()
    code, out, err = run_cli(capsys, "report", str(pipelined), "--html")
    assert code == 0, err
    assert out.startswith(f"wrote {pipelined}/report.html (") and out.count("\n") == 1
    assert (pipelined / "report.html").read_bytes() == first
    assert not [p for p in pipelined.parent.iterdir() if p.name != "out"]  # no temporary file left beside it


def test_the_data_is_the_same_across_compiles(pipelined, tmp_path_factory):
    again = compiled(tmp_path_factory, "again")
    a, b = (island((d / "report.html").read_text()) for d in (pipelined, again))
    assert a == b  # only the compile timings (summary, passes) differ between two compiles


def test_weight_streaming_shows_a_layer_and_the_compute_against_stream_bars(streaming):
    html = (streaming / "report.html").read_text()
    report, pj = loaded(streaming)
    data = island(html)
    layers = report["time"]["layers"]
    assert [g["name"] for g in data["groups"]] == [x["name"] for x in layers] == data["layers"]
    assert data["groups"][data["shown_group"]]["name"] == "transformer.h.0"  # as mesh.png shows
    assert {k["group"] for k in data["kernels"]} == set(range(len(layers)))
    assert html.count('<tr class="layer"') == len(layers)
    assert html.count('class="bar compute"') == html.count('class="bar stream"') == len(layers)
    assert '<body class="streaming">' in html


def test_report_html_is_made_from_the_two_json_files_alone(pipelined):
    report, pj = loaded(pipelined)
    assert report_html(report, pj) == (pipelined / "report.html").read_text()
    assert page_data(report, pj)["top_n"] == 25


def test_report_html_errors_are_one_line_and_keep_the_old_page(capsys, tmp_path, pipelined):
    d = tmp_path / "plain"
    assert main(["compile", "tiny", "--seq", "16", "-q", "-o", str(d)]) == 0
    capsys.readouterr()
    code, _, err = run_cli(capsys, "report", str(d), "--html")
    assert code == 2 and err.count("\n") == 1 and "holds no placement.json" in err
    assert not (d / "report.html").exists()

    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("report.json", "report.html"):
        (broken / name).write_bytes((pipelined / name).read_bytes())
    pj = json.loads((pipelined / "placement.json").read_text())
    del pj["kernels"][0]["rect"]
    (broken / "placement.json").write_text(json.dumps(pj))
    code, _, err = run_cli(capsys, "report", str(broken), "--html")
    assert code == 2 and err.count("\n") == 1 and "lacks the key 'rect'" in err
    assert (broken / "report.html").read_bytes() == (pipelined / "report.html").read_bytes()


def test_names_cannot_break_out_of_the_page(pipelined):
    report, pj = loaded(pipelined)
    evil = '</script><!--<script>alert("x")</script>&'
    pj["kernels"][0]["name"] = evil
    report["model"]["name"] = evil
    html = report_html(report, pj)
    assert html.count("</script>") == 2 and "<!--" not in html
    assert island(html)["kernels"][0]["name"] == evil  # the script reads it back as it was
    assert "<h1>waferscale: &lt;/script&gt;&lt;!--&lt;script&gt;alert(&quot;x&quot;)" in html


def _mutate(doc, rng):
    """One random damage somewhere in a JSON document: a key dropped, a value nulled or retyped."""
    path, node = [], doc
    while isinstance(node, (dict, list)) and node and rng.random() < 0.8:
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        path.append(key)
        node = node[key]
    if not path:
        return rng.choice([[], None, "x", 1])
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    what = rng.randrange(3)
    if what == 0 and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = rng.choice([None, [], {}, "x", -1, 1e308])
    return doc


def test_damaged_reports_make_a_page_or_one_line(pipelined, streaming, capsys, tmp_path):
    import copy
    import random

    rng = random.Random(14)
    for n, src in enumerate((pipelined, streaming)):
        report, pj = loaded(src)
        for i in range(60):
            d = tmp_path / f"d{n}-{i}"
            d.mkdir()
            r, p = copy.deepcopy(report), copy.deepcopy(pj)
            r, p = (_mutate(r, rng), p) if i % 2 else (r, _mutate(p, rng))
            (d / "report.json").write_text(json.dumps(r))
            (d / "placement.json").write_text(json.dumps(p))
            code, out, err = run_cli(capsys, "report", str(d), "--html")
            assert (code, err) == (0, "") or (code == 2 and err.count("\n") == 1 and not out), (i, code, err)
            assert (d / "report.html").exists() == (code == 0)
