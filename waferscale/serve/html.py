"""report.html of `wafer serve`: the latency table, and queue length and KV-cache occupancy over
time as inline SVG (no script, no network). The latency-against-load curve needs several rates
and is not drawn here (a sweep's)."""

from __future__ import annotations

from html import escape

W, H, PAD = 640, 160, 36


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


def report_html(report: dict, table: str) -> str:
    s = report["serve"]
    t = s["timeline"]
    cap = s["summary"].get("kv_capacity_bytes") or 1
    kv = [100 * k / cap for k in t["kv_bytes"]]
    head = (f"{report['model']} on {report['target']}, {s['policy']}, {s['summary']['requests']:,} requests")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>wafer serve: " + escape(head) + "</title>"
            "</head><body style='font-family:sans-serif'><h1>" + escape(head) + "</h1><pre>" + escape(table)
            + "</pre>" + _chart("Requests waiting over time", t["seconds"], t["waiting"], max(t["waiting"], default=1),
                                f"up to {max(t['waiting'], default=0):,}")
            + _chart("KV-cache occupancy over time", t["seconds"], kv, 100.0, "100% of capacity")
            + "</body></html>\n")
