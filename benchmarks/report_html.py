"""report.html at scale: its size and how fast it loads and answers in headless Chromium, for the
demo's cerebras-gpt-111m and for cerebras-gpt-13b on a WSE-2 (traced on the meta device, as every
model above 50M parameters is), layer-pipelined and weight-streamed.

    python benchmarks/report_html.py [--target wse2] [--batch 4] [--runs 5] [--screenshots docs]

Each model is compiled in a fresh process (`wafer compile MODEL --target T --batch B -o DIR`); the
page is then timed in Debian's Chromium through Playwright (waferscale/report/browser.py), in new
tabs of a running browser: from the request to the page's script having drawn everything
(`body[data-ready]`), the page's own navigation timing, the script's own start-up, and the first
hover, sort, selection and link-load layer (the slowest interaction, as it sums every route over
the mesh's cores). Medians of --runs fresh page loads. Writes
benchmarks/results/report_html.md and .json, and with --screenshots the 111M and 13B pictures the
README and docs/wafer.md show (docs/report-111m.png coloured by utilization, docs/report-13b.png by layer).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import results_io  # benchmarks/ is on sys.path when a script here runs
from results_io import command, write

from waferscale.report.browser import open_report
from waferscale.report.html import report_html

CASES = [  # (label, model, extra compile arguments)
    ("111m", "cerebras-gpt-111m", []),
    ("13b", "cerebras-gpt-13b", []),
    ("13b-streaming", "cerebras-gpt-13b", ["--mode", "streaming"]),
]

INTERACT = """() => {
  const t = (f) => { const a = performance.now(); f(); return performance.now() - a; };
  const W = window.waferReport, K = W.state;
  const slowest = document.querySelector('#table tbody tr').dataset.k;
  const out = {};
  out.sort_ms = t(() => document.querySelector('#table th[data-key="name"]').click());
  out.sort_back_ms = t(() => { document.querySelector('#table th[data-key="cycles"]').click();
                               document.querySelector('#table th[data-key="cycles"]').click(); });
  out.select_ms = t(() => W.select(+slowest, 'mesh'));
  out.heat_ms = t(() => document.getElementById('heat').click());
  out.heat_again_ms = t(() => { document.getElementById('heat').click(); document.getElementById('heat').click(); });
  out.limit_all_ms = t(() => { const s = document.getElementById('limit'); s.value = 'all';
                               s.dispatchEvent(new Event('change')); });
  out.rows = document.querySelectorAll('#table tbody tr').length;
  out.rects = document.querySelectorAll('svg#mesh rect.k').length;
  return out;
}"""


def compile_case(model: str, extra: list[str], target: str, batch: int, out: Path) -> float:
    cmd = [sys.executable, "-m", "waferscale.cli", "compile", model, "--target", target, "--batch", str(batch),
           *extra, "-o", str(out), "-q"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{model}: {r.stderr.strip()}")
    return time.perf_counter() - t0


def loads(path: Path, runs: int) -> list[dict]:
    """``runs`` fresh loads of the page, each in a new tab of one browser (its start is not counted)."""
    out = []
    with open_report(path) as first:
        for _ in range(runs):
            page = first.page.context.browser.new_page(viewport={"width": 1400, "height": 1000})
            errors, requests = [], []
            page.on("console", lambda m, errors=errors: m.type == "error" and errors.append(m.text))
            page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
            page.on("request", lambda q, requests=requests: requests.append(q.url))
            t0 = time.perf_counter()
            page.goto(path.resolve().as_uri())
            page.wait_for_selector("body[data-ready='1']", state="attached")
            wall = time.perf_counter() - t0
            nav = page.evaluate("""() => { const n = performance.getEntriesByType('navigation')[0];
                return {dom: n.domContentLoadedEventEnd, load: n.loadEventEnd}; }""")
            init = page.evaluate("window.waferReport.initMs")
            rect = page.locator("svg#mesh rect.k[visibility='visible']").first.bounding_box()
            h0 = time.perf_counter()
            page.mouse.move(rect["x"] + rect["width"] / 2, rect["y"] + rect["height"] / 2)
            page.wait_for_selector("#tooltip:not([hidden])")
            hover = time.perf_counter() - h0
            inter = page.evaluate(INTERACT)
            assert not errors and not first.errors, errors + first.errors
            assert all(u.startswith(("file:", "data:")) for u in requests), requests
            out.append({"open_to_ready_ms": 1e3 * wall, "dom_content_loaded_ms": nav["dom"],
                        "load_event_ms": nav["load"], "script_init_ms": init, "hover_to_tooltip_ms": 1e3 * hover,
                        **inter})
            page.close()
    return out


def screenshot(path: Path, out: Path, colour: str) -> None:
    """The top of the page, its slowest kernel selected (its routes drawn) and the kernel at a fifth
    of the mesh's width and four fifths of its height hovered, so that its tooltip covers neither."""
    with open_report(path, width=1400, height=1240) as r:
        page = r.page
        slowest = page.locator("#table tbody tr").first.get_attribute("data-k")
        page.select_option("#colour", colour)
        page.evaluate(f"window.waferReport.select({slowest}, 'table')")
        page.evaluate("window.scrollTo(0, 0)")
        mesh = page.locator("svg#mesh").bounding_box()
        page.mouse.move(mesh["x"] + 0.2 * mesh["width"], mesh["y"] + 0.8 * mesh["height"])
        page.screenshot(path=str(out))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="wse2")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--screenshots", help="save report-111m.png and report-13b.png here")
    args = p.parse_args()
    load = os.getloadavg()[0]  # the machine is shared: how busy it was when the run began
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, model, extra in CASES:
            out = Path(tmp) / label
            compile_s = compile_case(model, extra, args.target, args.batch, out)
            page = out / "report.html"
            raw = page.read_bytes()
            report, pj = (json.loads((out / n).read_text()) for n in ("report.json", "placement.json"))
            gen = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                report_html(report, pj)
                gen.append(time.perf_counter() - t0)
            data = re.search(rb'<script id="data" type="application/json">(.*?)</script>', raw, re.S).group(1)
            timed = loads(page, args.runs)
            med = {k: statistics.median(x[k] for x in timed) for k in timed[0]}
            rows.append({
                "case": label, "model": model, "args": " ".join(["--target", args.target, "--batch", str(args.batch),
                                                                 *extra]),
                "mode": report["mode"], "traced_on": report["model"]["traced_on"], "kernels": len(pj["kernels"]),
                "flows": len(pj["flows"]), "groups": len(pj["groups"]), "compile_s": compile_s,
                "html_bytes": len(raw), "html_gzip_bytes": len(gzip.compress(raw, 9)), "data_bytes": len(data),
                "placement_json_bytes": (out / "placement.json").stat().st_size,
                "generate_ms": 1e3 * min(gen), **med,
            })
            print(f"{label}: {len(raw) / 1024:.0f} KiB, ready in {med['open_to_ready_ms']:.0f} ms "
                  f"(script {med['script_init_ms']:.1f} ms), heat {med['heat_ms']:.0f} ms", file=sys.stderr)
            if args.screenshots and label in ("111m", "13b"):
                shots = Path(args.screenshots)
                shots.mkdir(parents=True, exist_ok=True)
                screenshot(page, shots / f"report-{label}.png", "util" if label == "111m" else "layer")
    record = {"command": command(), "machine": results_io.machine(), "load_average_1min": load, "runs": args.runs,
              "rows": rows}
    head = ("| case | kernels | flows | page KiB | gzip KiB | data KiB | placement.json KiB | generate ms | "
            "open to ready ms | DOMContentLoaded ms | script ms | hover ms | sort ms | select ms | link load ms |")
    lines = [
        f"# report.html at scale ({args.target}, batch {args.batch}, seq 2048, f16)", "",
        f"Command: `{command()}` on {results_io.machine()} (load average {load:.1f} when it began: the timings "
        f"vary by about 2x from run to run on this shared machine); headless Chromium (Debian's), medians of "
        f"{args.runs} fresh page loads.", "",
        "open to ready: from Playwright's request for the file:// page, in a new tab of a running browser, to its "
        "script having drawn the mesh and the table (`body[data-ready]`), round trips to the browser included; "
        "DOMContentLoaded: the page's own navigation timing; script: the script's own start-up "
        "(`window.waferReport.initMs`); hover: moving the mouse onto a kernel until its tooltip shows, round "
        "trip from Python included; sort, select, link load: in the page (`performance.now()`), the first link-load "
        "layer summing every route over the mesh's cores (cached after). generate: `report_html` from the two "
        "JSON files, in Python.", "",
        head, "|" + "|".join(["---"] + ["---:"] * 14) + "|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} ({r['mode']}, traced on {r['traced_on']}) | {r['kernels']} | {r['flows']} | "
            f"{r['html_bytes'] / 1024:.0f} | {r['html_gzip_bytes'] / 1024:.0f} | {r['data_bytes'] / 1024:.0f} | "
            f"{r['placement_json_bytes'] / 1024:.0f} | {r['generate_ms']:.1f} | {r['open_to_ready_ms']:.0f} | "
            f"{r['dom_content_loaded_ms']:.0f} | {r['script_init_ms']:.1f} | {r['hover_to_tooltip_ms']:.0f} | "
            f"{r['sort_ms']:.1f} | {r['select_ms']:.1f} | {r['heat_ms']:.0f} |")
    write("report_html", record, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
