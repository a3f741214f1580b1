"""``report.html``: the placement report as one self-contained interactive page.

Made from ``report.json`` and ``placement.json`` alone (as ``wafer report DIR --html`` reads them
back), so a compile and a later rewrite give the same bytes. The static sections (summary, layers
of weight streaming, busiest links, pass timings) are HTML written here; the interactive ones (the
mesh, its tooltips, routes and link-load layer, the sortable kernel table) are drawn in the browser
by ``page/report.js`` from a compact JSON island. The script and style sheet are inlined: the page
loads nothing, from disk or network.

The JSON holds per kernel only what the page shows (about 0.5 KB), per flow its route's ends and
width (the XY route is rebuilt from them, as ``passes/route.py`` makes it), never the links one by
one, so the 13B placement stays small (benchmarks/report_html.py measures it).
"""

from __future__ import annotations

import json
import math
from html import escape
from importlib.resources import files

from ..passes.pipeline import describe_change
from ..passes.place import MODES
from ..passes.streaming import group_by_block
from .energy import CLASSES

TOP_N = 25  # kernel table rows shown at first (the slowest); a menu shows all
BOUNDS = ("compute", "sram", "fabric", "stream")  # the bounds the style sheet colours (``.bound-X``)

# Every value read from report.json or placement.json reaches the page escaped: as text or a quoted
# attribute through ``_e``, in a style only as a clamped number (``_width``), as a class only from
# ``BOUNDS``, and in the JSON island through ``island_json``. A doctored file must not run a script.


def _e(x) -> str:
    return escape(str(x), quote=True)


def _width(part: float, whole: float) -> str:
    """A bar's CSS width, ``part`` of ``whole`` as a percentage clamped to 0..100."""
    x = 100 * part / whole
    return f"{min(max(x, 0.0), 100.0) if math.isfinite(x) else 0.0:.2f}%"


def _bound_class(bound) -> str:
    return f' class="bound-{bound}"' if bound in BOUNDS else ""


# In a <script> element only "</script" and "<!--" end or change it; "<", ">" and "&" are written as
# JSON escapes (valid only inside strings, the one place JSON holds them), and U+2028/2029 too, which
# older JavaScript parsers take for line ends. json.dumps' ensure_ascii already escapes non-ASCII.
_ISLAND = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def island_json(data) -> str:
    """``data`` as JSON that can sit inside ``<script type="application/json">`` and parse back to it."""
    return json.dumps(data, separators=(",", ":"), sort_keys=True, ensure_ascii=True).translate(_ISLAND)


def _num(x: float, digits: int = 5) -> float | int:
    """Rounded for display, so the page does not carry 17 digits of every float."""
    return x if isinstance(x, int) else float(f"{x:.{digits}g}")


def _bytes(n: float) -> str:
    for scale, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def _si(x: float, unit: str = "") -> str:
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}".rstrip()


def is_streaming(pj: dict) -> bool:
    """placement.json's mode, asked by name (older files: their groups)."""
    if pj.get("mode") in MODES.values():  # by name; else (older files, or a name we never wrote) by its groups
        return pj["mode"] == MODES["streaming"]
    return bool(pj.get("groups"))


def shown_group(pj: dict) -> int:
    """Weight streaming: the group the mesh shows first, the first transformer block (else the
    largest), as mesh.png does; -1 in layer-pipelined mode."""
    groups = pj.get("groups") or []
    if not is_streaming(pj):
        return -1
    blocks = [i for i, g in enumerate(groups) if ".h." in g["name"] or g["name"].startswith("h.")]
    return blocks[0] if blocks else max(range(len(groups)), key=lambda i: (len(groups[i]["kernels"]), -i))


def page_data(report: dict, pj: dict) -> dict:
    """What the page's script draws: the mesh, each kernel, each flow's route, the groups."""
    layers = group_by_block([k["loc"] for k in pj["kernels"]], report["model"]["name"])
    layer_of = {kid: i for i, (_, ks) in enumerate(layers) for kid in ks}
    group_of = {kid: i for i, g in enumerate(pj.get("groups") or []) for kid in g["kernels"]}
    kernels = []
    for k in pj["kernels"]:
        r, sram = k["rect"], dict(k["sram_bytes_per_core"])
        total = sram.pop("total")
        kernels.append({
            "id": k["id"], "name": k["name"], "op": k["op"], "computes": k["computes"], "loc": k["loc"],
            "rect": [r["row"], r["col"], r["rows"], r["cols"]], "cores": k["cores"],
            "sram": sram, "sram_total": total, "sram_fraction": _num(k["sram_fraction"]),
            "cycles": k["cycles"], "stage": k["stage_cycles_per_sample"], "util": _num(k["utilization"]),
            "bound": k["bound"], "flops": k["flops"], "decomposition": k["decomposition"],
            "layer": layer_of[k["id"]], "group": group_of.get(k["id"], -1),
            "sparse": ({"density": _num(k["sparse"]["density"]), "bytes": k["sparse"]["bytes"],
                        "dense_bytes": k["sparse"]["dense_bytes"], "speedup": _num(k["sparse"]["speedup"])}
                       if k.get("sparse") else None),
        })
    flows = []
    for f in pj["flows"]:
        a, b = f["route"]["from"], f["route"]["to"]
        if a is None or b is None:  # no link to cross (a flow within one core)
            continue
        flows.append([f["src"], f["dst"], a[0], a[1], b[0], b[1], f["lanes"], _num(f["bytes_per_sample"]), f["hops"]])
    t = pj["target"]
    return {
        "model": report["model"]["name"], "target": t["name"], "mode": pj["mode"],
        "mesh": {"rows": t["rows"], "cols": t["cols"], "sram_bytes": t["sram_bytes_per_core"]},
        "clock_hz": t["clock_hz"], "kernels": kernels, "flows": flows,
        "layers": [name for name, _ in layers],
        "groups": [{"name": g["name"], "kernels": g["kernels"]} for g in pj.get("groups") or []],
        "shown_group": shown_group(pj), "top_n": TOP_N, "scaling": scaling_points(report),
    }


def scaling_points(report: dict) -> list[list[float]]:
    """A training compile's estimated efficiency on 1 to 16 systems (``train.scaling``, weight streaming):
    [systems, efficiency] pairs, numbers only (a non-number is an error), for the page's small plot."""
    sc = (report.get("train") or {}).get("scaling")
    if not sc:
        return []
    out = []
    for p in sc["points"]:
        n, e = p["systems"], p["efficiency"]
        if e is None:
            continue
        if isinstance(n, bool) or not isinstance(n, int) or isinstance(e, bool) or not isinstance(e, (int, float)) \
                or not math.isfinite(e):
            raise ValueError("train.scaling: systems and efficiency must be numbers")
        out.append([n, _num(float(e), 4)])
    return out


def _scaling(report: dict) -> str:
    """The section the script draws the efficiency-vs-systems plot into (a training compile only)."""
    if not scaling_points(report):
        return ""
    return ('<section id="scaling-section"><h2>Scaling: efficiency vs systems</h2><p class="hint">Estimated from '
            'this compile: its global batch split over N systems at its micro-batch (train.scaling in report.json; '
            'benchmarks/paper_scaling.py compiles each count).</p><div id="scaling"></div></section>')


def _card(label: str, value: str, note: str = "") -> str:
    return (f'<div class="card"><div class="label">{_e(label)}</div><div class="value">{_e(value)}</div>'
            f'<div class="note">{_e(note)}</div></div>')


def _summary(report: dict, pj: dict) -> str:
    m, t, pl, mach = report["model"], report["time"], report["placement"], pj["target"]
    ratio = t["cycles"] / max(t["roofline_cycles"], 1)
    cards = [
        _card("time", f"{1e3 * t['seconds']:.3f} ms", f"{t['cycles']:,} cycles, {t['samples']} sample(s)"),
        _card("tokens/s", f"{t['tokens_per_s'] / 1e6:.3f} M", f"steady state {t['steady_tokens_per_s'] / 1e6:.3f} M"),
        _card("MFU", f"{100 * t['mfu']:.1f}%", f"{100 * t['mfu_usable_pes']:.1f}% of the usable PEs' peak"),
        _card("roofline", f"x{ratio:.2f}", f"simulated / {t['roofline_cycles']:,.0f} cycles"),
        _card("kernels", f"{pl['kernels']}", f"{pl['flows']} flows"),
        _card("cores used", f"{100 * pl['occupancy']:.1f}%", f"{pl['cores_used']:,} of {mach['cores']:,}"),
    ]
    arch = (f"{m['layers']} layers, d_model {m['d_model']}, {m['heads']} heads, d_ffn {m['d_ffn']}"
            if m.get("layers") is not None else f"imported from {m['source']}")
    rows = [
        ("model", f"{m['name']}: {m['params']:,} parameters ({_si(m['params'])}), {arch}; batch {m['batch']} x "
                  f"seq {m['seq']}, {m['dtype']}; {_si(m['flops_per_token'], 'FLOP')} per token"),
        ("machine", f"{mach['name']}: {mach['rows']} x {mach['cols']} = {mach['cores']:,} cores, "
                    f"{_bytes(mach['sram_bytes_per_core'])} SRAM per core, {mach['fmacs_per_cycle']} FMAC/cycle, "
                    f"{mach['clock_hz'] / 1e9:.2f} GHz"),
        ("mode", report.get("mode_reason") or pj["mode"]),
        ("latency", f"{1e3 * t['latency_seconds']:.3f} ms, first token in to the first sample's last token out"),
        ("MFU basis", t["mfu_basis"]),
        ("roofline", ", ".join(f"{k} {v:,.0f}" for k, v in sorted(t["roofline"].items())) + " cycles"),
        ("slowest stage", f"{t['slowest_stage']['kernel']}, {t['slowest_stage']['cycles_per_sample']:,} "
                          f"cycles/sample ({pl['slowest_stage_over_mean']:.2f} x the mean)"),
        ("bounds", ", ".join(f"{n} {k}" for k, n in t["kernels_by_bound"].items()) + " kernels"),
        ("fabric", f"mean {pl['mean_hops']:.1f} hops (weighted by bytes), at most {pl['max_colors']} of "
                   f"{mach['colors']} colors on a link"),
        ("SRAM", f"peak {_bytes(pl['sram_peak_bytes_per_core'])} per core of {_bytes(mach['sram_bytes_per_core'])}"),
    ]
    if "layers" in t:
        rows.append(("streaming", f"{_bytes(t['stream_bytes'])} of weights in {1e3 * t['stream_seconds']:.3f} ms, "
                                  f"{100 * t['stream_overlap']:.1f}% of it behind compute; layers "
                                  + ", ".join(f"{n} {b}-bound" for b, n in t["layers_by_bound"].items())))
    if "sparsity" in report:
        sp = report["sparsity"]
        rows.append(("sparsity", f"{sp['kernels']} sparse kernels at density {sp['density']:.3f}: "
                                 f"{_bytes(sp['weight_bytes'])} of weights with their indices against "
                                 f"{_bytes(sp['dense_weight_bytes'])} dense; {sp['kernel_speedup']:.2f}x faster "
                                 "than dense on the same rectangles"))
    c = report["compile"]
    rows.append(("compile", f"{c['seconds']:.2f} s, peak RSS {_bytes(c['peak_rss_bytes'])}; waferscale "
                            f"{report['version']}"))
    dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows)
    return f'<div class="cards">{"".join(cards)}</div><dl class="facts">{dl}</dl>'


def _energy(report: dict) -> str:
    """report.json's energy section (report/energy.py), if the compile had a target: J per token, the
    average power, the split by event class (the classes named here, their values read by name) and
    the band of the model's uncertainty."""
    e = report.get("energy")
    if not e:
        return ""
    joules, total = e["joules_by_class"], float(e["joules_per_step"])
    if not total > 0:  # NaN or none: no share to show
        raise ValueError("energy: joules_per_step is not a positive number")
    rows = "".join(
        f'<tr><td>{_e(k)}</td><td class="num">{float(joules[k]):.4g}</td><td class="num">'
        f'{100 * float(joules[k]) / total:.1f}%</td><td class="bars"><div class="bar pass" '
        f'style="width:{_width(float(joules[k]), total)}"></div></td></tr>' for k in CLASSES)
    band = e.get("band") or {}
    lo, hi = (band.get(x, {}).get("joules_per_token") for x in ("low", "high"))
    note = (f"band {1e3 * float(lo):.4g} to {1e3 * float(hi):.4g} mJ per {e['per']} (measured 4.38 kW CS-2 with "
            "5% leakage to 23 kW with 30%: docs/energy.md)" if lo is not None and hi is not None else "")
    per_token = f"{1e3 * float(e['joules_per_token']):.4g} mJ per {e['per']}"
    watts = f"{float(e['average_watts']) / 1e3:.3g} kW average over {int(e['systems'])} system(s)"
    return ('<section id="energy-section"><h2>Energy</h2>'
            '<p class="hint">A model, not a measurement (backends/energy.py): the run\'s events '
            'costed per event class plus the static power over the simulated time.</p>'
            f'<dl class="facts"><dt>per token</dt><dd id="energy-per-token">{_e(per_token)}</dd><dt>power</dt>'
            f'<dd>{_e(watts)}</dd><dt>step</dt><dd>{float(total):.4g} J in {1e3 * float(e["seconds_per_step"]):.4g} '
            f'ms</dd><dt>uncertainty</dt><dd>{_e(note)}</dd><dt>basis</dt><dd>{_e(e["basis"])}</dd></dl>'
            '<table id="energy"><thead><tr><th>event class</th><th>J per step</th><th>share</th><th></th></tr>'
            f'</thead><tbody>{rows}</tbody></table></section>')


def _layers(report: dict, pj: dict) -> str:
    """Weight streaming: per layer, its compute against its weights' stream, on one scale."""
    t = report["time"]
    if "layers" not in t:
        return ""
    clock = pj["target"]["clock_hz"]
    top = max(max(x["compute_cycles"], x["stream_cycles"]) for x in t["layers"]) or 1
    names = [g["name"] for g in pj.get("groups") or []]
    rows = []
    for x in t["layers"]:
        gi = names.index(x["name"]) if x["name"] in names else -1
        rows.append(
            f'<tr class="layer" data-group="{gi}"><td class="name">{_e(x["name"])}</td>'
            f'<td class="num">{_e(_bytes(x["weight_bytes"]))}</td><td class="bars">'
            f'<div class="bar compute" style="width:{_width(x["compute_cycles"], top)}"></div>'
            f'<div class="bar stream" style="width:{_width(x["stream_cycles"], top)}"></div></td>'
            f'<td class="num">{1e6 * x["compute_cycles"] / clock:,.1f}</td>'
            f'<td class="num">{1e6 * x["stream_cycles"] / clock:,.1f}</td>'
            f'<td{_bound_class(x["bound"])}>{_e(x["bound"])}</td></tr>')
    return (
        '<section id="layers-section"><h2>Weight streaming: compute against stream, per layer</h2>'
        '<p class="hint">Each layer starts when its weights are in and the previous layer is done; the next '
        'layer\'s weights stream in meanwhile. <span class="key compute"></span> compute '
        '<span class="key stream"></span> stream (one scale). Click a layer to show it on the mesh.</p>'
        '<table id="layers"><thead><tr><th>layer</th><th>weights</th><th>compute vs stream</th>'
        '<th>compute us</th><th>stream us</th><th>bound</th></tr></thead><tbody>'
        + "".join(rows) + "</tbody></table></section>")


def _links(pj: dict) -> str:
    rows = "".join(
        f'<tr class="link" data-link="{_e(b["link"])}"><td>{_e(b["link"])}</td>'
        f'<td class="num">{_e(_bytes(b["bytes_per_sample"]))}</td><td class="num">{_e(b["colors"])}</td></tr>'
        for b in pj["links"]["busiest"])
    return ('<table id="busiest"><thead><tr><th>link (row,col)->dir</th><th>bytes/sample</th><th>colors</th>'
            f'</tr></thead><tbody>{rows}</tbody></table>')


def _passes(report: dict) -> str:
    passes = report["compile"].get("passes", [])
    top = max((p["seconds"] for p in passes), default=0) or 1
    rows = "".join(
        f'<tr><td>{_e(p["name"])}</td><td class="num">{1e3 * p["seconds"]:,.1f}</td>'
        f'<td class="bars"><div class="bar pass" style="width:{_width(p["seconds"], top)}"></div></td>'
        f'<td><code>{_e(p["pass"])}</code></td><td>{_e(describe_change(p["before"], p["after"]))}</td></tr>'
        for p in passes)
    c = report["compile"]
    front = (f'frontend {_e(c["frontend"])}: loading {c["imports_seconds"]:.2f} s, build {c["build_seconds"]:.2f} s, '
             f'export {c["export_seconds"]:.2f} s, import {c["import_seconds"]:.2f} s')
    return (f'<p>Pipeline: <code id="pipeline">{_e(report["pipeline"] or "(none)")}</code></p>'
            f'<p class="hint">{front}</p>'
            '<table id="passes"><thead><tr><th>pass</th><th>ms</th><th></th><th>as run</th><th>change</th></tr>'
            f'</thead><tbody>{rows}</tbody></table></section>')


def _asset(name: str) -> str:
    return files(__package__).joinpath("page", name).read_text()


def report_html(report: dict, pj: dict) -> str:
    """The page, from report.json and placement.json as loaded from disk."""
    data = island_json(page_data(report, pj))
    title = f"{report['model']['name']} on {pj['target']['name']} ({pj['mode']})"
    return _asset("report.html").format(
        title=_e(title), css=_asset("report.css"), js=_asset("report.js"), data=data,
        summary=_summary(report, pj), layers=_layers(report, pj), links=_links(pj), passes=_passes(report),
        scaling=_scaling(report), energy=_energy(report),
        streaming=' class="streaming"' if is_streaming(pj) else "",
    )
