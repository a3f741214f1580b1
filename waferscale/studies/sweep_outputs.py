"""The outputs of a ``wafer sweep`` (``sweep.py``): its table (a flat row per point, in the spec's
order, the Pareto front of tokens/s against cores marked), sweep.csv, sweep.json, pareto.png,
sweep.parquet, and the summary it prints."""

from __future__ import annotations

import io
import json
from dataclasses import asdict
from pathlib import Path

from ..version import __version__
from .measure import KEYS
from .sweep_spec import Point, Spec

AXIS_COLUMNS = ("model", "dtype", "batch", "seq", "mode_asked", "density", "rows", "cols", "sram_kib", "fmac",
                "clock_ghz", "io_gbs", "link_bytes", "run", "systems", "split", "prompt_len", "new_tokens", "lora",
                "rate", "policy", "requests", "slo_ttft", "slo_tpot", "placement")
# the table: the point's id, its parameters, what measure() gives (less what repeats a parameter), then
# whether it is on the Pareto front of tokens/s against cores
COLUMNS = ("point", *AXIS_COLUMNS, *(k for k in KEYS if k not in ("model", "batch", "seq")), "pareto")

def table_rows(points: list[Point], rows: list[dict]) -> list[dict]:
    """One flat row per point in COLUMNS order, ``pass_seconds`` kept at the end (sweep.json only)."""
    out = []
    for p, r in zip(points, rows):
        axes = asdict(p) | {"mode_asked": p.mode}
        row = {c: axes[c] for c in AXIS_COLUMNS} | {k: r.get(k) for k in KEYS if k not in ("model", "batch", "seq")}
        row = {"point": p.id, **row, "pareto": False}
        row["pass_seconds"] = r.get("pass_seconds", {})
        out.append(row)
    for i in pareto([(r["cores"], r["tokens_per_s"]) if r["ok"] else None for r in out]):
        out[i]["pareto"] = True
    return out


def pareto(points: list[tuple[float, float] | None]) -> list[int]:
    """Indices of the points that no other beats: none has fewer-or-equal x and more y, or less x and
    equal y (x a cost, y a rate; None: a failed point). Ties keep the first."""
    order = sorted((i for i, p in enumerate(points) if p is not None), key=lambda i: (points[i][0], -points[i][1], i))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return sorted(front)


def to_csv(rows: list[dict]) -> str:
    import csv

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return buf.getvalue()


def _label(r: dict) -> str:
    return f"{r['rows']}x{r['cols']} {r['sram_kib']}K f{r['fmac']} b{r['batch']}"


def _reason(r: dict, width: int) -> str:
    """A failed point's error, its (long) target written as "the mesh", cut to ``width``."""
    text = r["error"].replace(r["target"], "the mesh")
    return text if len(text) <= width else text[:width - 3] + "..."


def plot(spec: Spec, rows: list[dict]) -> bytes:
    """pareto.png: tokens/s against the mesh's cores (left) and its SRAM, all cores together (right), one
    colour per mode that ran, the Pareto front joined and labelled, failed points as red crosses on the floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r["ok"]]
    failed = [r for r in rows if not r["ok"]]
    n_notes = min(len(failed), 8)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5 + 0.18 * (n_notes + bool(failed))), dpi=100)
    floor = min((r["tokens_per_s"] for r in ok), default=1.0) / 3
    colours = {"layer-pipelined": "tab:blue", "weight-streaming": "tab:orange"}
    for r in rows:
        r["_sram_mib"] = r["rows"] * r["cols"] * r["sram_kib"] / 1024
    for ax, (x, xlabel) in zip(axes, [("cores", "cores in the mesh"),
                                      ("_sram_mib", "SRAM of the mesh, cores x SRAM per core (MiB)")]):
        for mode, c in colours.items():
            pts = [r for r in ok if r["mode"] == mode]
            if pts:
                ax.scatter([r[x] for r in pts], [r["tokens_per_s"] for r in pts], s=18, c=c, alpha=0.7, label=mode)
        if failed:
            xs = [max(r["rows"] * r["cols"] if x == "cores" else r[x], 1) for r in failed]  # a 0x4 mesh: at 1
            ax.scatter(xs, [floor] * len(failed), marker="x", c="tab:red", s=24, label=f"failed ({len(failed)})")
        front = [ok[i] for i in pareto([(r[x], r["tokens_per_s"]) for r in ok])]
        if front:
            ax.step([r[x] for r in front], [r["tokens_per_s"] for r in front], where="post", c="k", lw=1,
                    label="Pareto front")
            for r in front:
                ax.annotate(_label(r), (r[x], r["tokens_per_s"]), fontsize=6, xytext=(3, 3),
                            textcoords="offset points")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("tokens/s (simulated)")
        ax.grid(True, which="major", lw=0.3)
        ax.legend(fontsize=7, loc="lower right")
    models = ", ".join(dict.fromkeys(r["model"] for r in rows))
    fig.suptitle(f"wafer sweep{': ' + spec.name if spec.name else ''}: {models}; {len(rows)} points, "
                 f"{len(ok)} ok, {len(failed)} failed", fontsize=10)
    if failed:
        notes = [f"{_label(r)} ({r['mode_asked'] or 'pipeline'}): {_reason(r, 170)}" for r in failed[:n_notes]]
        more = f" (and {len(failed) - n_notes} more, in sweep.csv)" if len(failed) > n_notes else ""
        fig.text(0.01, 0.01, "\n".join([f"failed points{more}:", *notes]), fontsize=6, va="bottom", family="monospace")
    fig.tight_layout(rect=(0, 0.18 * (n_notes + 1) / (5 + 0.18 * (n_notes + 1)) if failed else 0, 1, 0.96))
    for r in rows:
        del r["_sram_mib"]
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})  # no timestamp: the same rows, the same bytes
    plt.close(fig)
    return buf.getvalue()


def serve_plot(spec: Spec, rows: list[dict]) -> bytes | None:
    """serve.png, for the points of mode: serve: the throughput-latency frontier, TTFT and TPOT p99
    against output tokens/s, one line per (model, policy, split, max batch, systems) through its
    rates; None when there are none."""
    ok = [r for r in rows if r["ok"] and r.get("run") == "serve" and r.get("tokens_per_s")]
    if not ok:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5), dpi=100)
    lines: dict[tuple, list[dict]] = {}
    for r in ok:
        lines.setdefault((r["model"], r["policy"], r["split"], r["batch"], r["systems"]), []).append(r)
    for ax, (key, name) in zip(axes, [("ttft_p99_s", "TTFT p99"), ("tpot_p99_s", "TPOT p99")]):
        for (model, policy, split, batch, systems), pts in lines.items():
            pts = sorted((r for r in pts if r.get(key)), key=lambda r: r["rate"])
            label = (f"{model} {policy}{' split ' + split if split and policy == 'disaggregated' else ''} "
                     f"batch {batch}{f' x{systems}' if systems > 1 else ''}")
            ax.plot([r["tokens_per_s"] for r in pts], [1e3 * r[key] for r in pts], marker="o", ms=3, lw=1,
                    label=label)
            for r in pts:
                ax.annotate(f"{r['rate']:g}/s", (r["tokens_per_s"], 1e3 * r[key]), fontsize=6, xytext=(3, 3),
                            textcoords="offset points")
        ax.set_yscale("log")
        ax.set_xlabel("output tokens/s (simulated)")
        ax.set_ylabel(f"{name} (ms)")
        ax.grid(True, which="major", lw=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"wafer sweep{': ' + spec.name if spec.name else ''}: latency against throughput, each point a "
                 "request rate", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def write_outputs(spec: Spec, rows: list[dict], out: Path) -> list[Path]:
    """sweep.csv, sweep.json, pareto.png, serve.png where the sweep has points of mode: serve (and
    sweep.parquet with pyarrow), each whole or not at all."""
    from ..report.summary import write_dir

    files: dict[str, str | bytes] = {
        "sweep.csv": to_csv(rows),
        "sweep.json": json.dumps({"version": __version__, "spec": spec.as_dict(), "columns": list(COLUMNS),
                                  "rows": rows}, indent=1) + "\n",
        "pareto.png": plot(spec, rows),
    }
    frontier = serve_plot(spec, rows)
    if frontier is not None:
        files["serve.png"] = frontier
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        pass
    else:
        buf = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pylist([{c: r[c] for c in COLUMNS} for r in rows]), buf)
        files["sweep.parquet"] = buf.getvalue().to_pybytes()
    return write_dir(out, files)


def summary(result, out: Path) -> str:  # result: sweep.SweepResult (not imported: sweep imports this module)
    """What the command prints: the counts, the Pareto front, the first failures."""
    rows = result.rows
    ran = f"{result.ran} run now on {result.workers} worker(s)" if result.ran else "none to run"
    lines = [f"sweep: {len(rows)} point(s), {ran} in {result.seconds:.1f} s, {result.resumed} resumed; "
             f"{len(rows) - result.failed} ok, {result.failed} failed -> {out}/ "
             f"({', '.join(p.name for p in result.files)})"]
    front = [r for r in rows if r["pareto"]]
    if front:
        lines.append("Pareto front (tokens/s against cores):")
        for r in front:
            mfu = "    -" if r["mfu"] is None else f"{100 * r['mfu']:5.1f}"  # a decode's report has none
            where = "" if r.get("systems", 1) == 1 else f" x{r['systems']} ({r['split'] or 'default'})"
            what = "" if r.get("run", "inference") == "inference" else f" {r['run']}"
            lines.append(f"  {r['rows']:>5}x{r['cols']:<5} sram {r['sram_kib']:>4} KiB fmac {r['fmac']:>2} "
                         f"batch {r['batch']:>3} {r['mode']:<17} {r['tokens_per_s'] / 1e6:9.3f} M tokens/s  "
                         f"MFU {mfu}%{what}{where}")
    by_energy = sorted((r for r in rows if r["ok"] and r.get("tokens_per_joule")),
                       key=lambda r: -r["tokens_per_joule"])[:3]
    if by_energy:
        lines.append("Most tokens per joule (energy model: backends/energy.py):")
        lines += [f"  {r['rows']:>5}x{r['cols']:<5} batch {r['batch']:>3} {r['mode']:<17} "
                  f"{r['tokens_per_joule']:,.0f} tokens/J at {r['average_watts'] / 1e3:.2f} kW" for r in by_energy]
    failed = [r for r in rows if not r["ok"]]
    for r in failed[:5]:
        lines.append(f"  failed {r['point']} {_label(r)} {r['mode_asked'] or 'pipeline'}: {_reason(r, 200)}")
    if len(failed) > 5:
        lines.append(f"  ... and {len(failed) - 5} more failed point(s), in sweep.csv")
    return "\n".join(lines) + "\n"
