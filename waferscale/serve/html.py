"""report.html of `wafer serve`: the latency table, the latency against the load (TTFT and TPOT
p50 and p99 against the request rate, when the run served several rates), and queue length and
KV-cache occupancy over time, as inline SVG (no script, no network). Every value the page shows
is formatted here from a number or passed through ``html.escape``."""

from __future__ import annotations

import math
from html import escape

W, H, PAD = 640, 160, 36
LH, LPAD = 260, 48  # the load chart: taller, room for the axis labels
SERIES = (("TTFT p50", "ttft_seconds", "p50", "#1f77b4", ""), ("TTFT p99", "ttft_seconds", "p99", "#1f77b4", "5,4"),
          ("TPOT p50", "tpot_seconds", "p50", "#d62728", ""), ("TPOT p99", "tpot_seconds", "p99", "#d62728", "5,4"))


def _line(xs: list[float], ys: list[float], colour: str, top: float) -> str:
    if not xs:
        return ""
    x0, x1 = xs[0], xs[-1] if xs[-1] > xs[0] else xs[0] + 1
    top = top or 1
    pts = " ".join(f"{PAD + (W - 2 * PAD) * (x - x0) / (x1 - x0):.1f},{H - PAD - (H - 2 * PAD) * y / top:.1f}"
                   for x, y in zip(xs, ys))
    return f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{pts}"/>'


def _chart(title: str, xs: list[float], ys: list[float], top: float, label: str) -> str:
    end = xs[-1] if xs else 0
    return (f'<h2>{escape(title)}</h2><svg width="{W}" height="{H}" role="img" aria-label="{escape(title)}">'
            f'<rect x="{PAD}" y="{PAD}" width="{W - 2 * PAD}" height="{H - 2 * PAD}" fill="none" stroke="#999"/>'
            f'{_line(xs, ys, "#1f77b4", top)}'
            f'<text x="{PAD}" y="{H - 8}" font-size="11">0 s</text>'
            f'<text x="{W - PAD}" y="{H - 8}" font-size="11" text-anchor="end">{end:.3g} s</text>'
            f'<text x="4" y="{PAD - 6}" font-size="11">{escape(label)}</text></svg>')


def _num(v) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else None


def load_chart(load: list[dict]) -> str:
    """TTFT and TPOT p50 and p99 (ms, a log scale) against the request rate (a linear scale)."""
    def get(d, k):
        return d.get(k) if isinstance(d, dict) else None

    pts = {name: [(_num(get(p, "rate")), _num(get(get(p, key), q))) for p in load] for name, key, q, _, _ in SERIES}
    ys = [y for v in pts.values() for x, y in v if x is not None and y is not None and y > 0]
    xs = [x for v in pts.values() for x, y in v if x is not None]
    if len(set(xs)) < 2 or not ys:
        return ""
    x0, x1 = min(xs), max(xs)
    lo, hi = math.floor(math.log10(min(ys) * 1e3)), math.ceil(math.log10(max(ys) * 1e3))
    hi = max(hi, lo + 1)
    sx = lambda x: LPAD + (W - 2 * LPAD) * (x - x0) / (x1 - x0)  # noqa: E731
    sy = lambda s: LH - LPAD - (LH - 2 * LPAD) * (math.log10(s * 1e3) - lo) / (hi - lo)  # noqa: E731
    out = [f'<h2>Latency against load</h2><svg width="{W}" height="{LH}" role="img" '
           f'aria-label="TTFT and TPOT p50 and p99 against the request rate">'
           f'<rect x="{LPAD}" y="{LPAD}" width="{W - 2 * LPAD}" height="{LH - 2 * LPAD}" fill="none" stroke="#999"/>']
    for d in range(lo, hi + 1):  # a grid line and label every decade of milliseconds
        y = LH - LPAD - (LH - 2 * LPAD) * (d - lo) / (hi - lo)
        out.append(f'<line x1="{LPAD}" x2="{W - LPAD}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
                   f'<text x="{LPAD - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{10.0 ** d:g} ms</text>')
    for x in sorted(set(xs)):
        out.append(f'<text x="{sx(x):.1f}" y="{LH - LPAD + 14}" font-size="10" text-anchor="middle">{x:g}</text>')
    out.append(f'<text x="{W / 2:.0f}" y="{LH - 8}" font-size="11" text-anchor="middle">requests per second</text>')
    for i, (name, _, _, colour, dash) in enumerate(SERIES):
        good = sorted((x, y) for x, y in pts[name] if x is not None and y is not None and y > 0)
        line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in good)
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5"{dashes} points="{line}"/>')
        out += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}"><title>{escape(name)} at '
                f'{x:g}/s: {1e3 * y:.4g} ms</title></circle>' for x, y in good]
        lx = LPAD + 8 + i * 130
        out.append(f'<line x1="{lx}" x2="{lx + 20}" y1="{LPAD - 12}" y2="{LPAD - 12}" stroke="{colour}" '
                   f'stroke-width="1.5"{dashes}/><text x="{lx + 24}" y="{LPAD - 8}" font-size="11">'
                   f'{escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def report_html(report: dict, table: str) -> str:
    s = report["serve"]
    t = s["timeline"]
    cap = s["summary"].get("kv_capacity_bytes") or 1
    kv = [100 * k / cap for k in t["kv_bytes"]]
    head = (f"{report['model']} on {report['target']}, {s['policy']}, {s['summary']['requests']:,} requests")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>wafer serve: " + escape(head) + "</title>"
            "</head><body style='font-family:sans-serif'><h1>" + escape(head) + "</h1><pre>" + escape(table)
            + "</pre>" + load_chart(s["load"] if isinstance(s.get("load"), list) else [])
            + _chart("Requests waiting over time", t["seconds"], t["waiting"], max(t["waiting"], default=1),
                     f"up to {max(t['waiting'], default=0):,}")
            + _chart("KV-cache occupancy over time", t["seconds"], kv, 100.0, "100% of capacity")
            + "</body></html>\n")
