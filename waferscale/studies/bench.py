"""``wafer bench``: what each optimization pass is worth, as an ablation.

Each model is traced once (meta weights) and its graph run through a set of pipelines on one
target (``measure.py``). By default the set is the default wafer pipeline and, for each
optimization, the pipeline without it or with its neutral option:

- ``default``: ``canonicalize,fuse,lower,place{mode=auto},route,simulate``;
- ``no-fuse``: the same without ``fuse`` (the default's speed-up over it is what fusion is worth);
- ``pipelined`` and ``streaming``: ``place{mode=pipelined}`` and ``place{mode=streaming}`` (the
  first's speed-up over the second is what keeping every weight on the wafer is worth, where both fit);
- ``sparse``: the default with ``sparsify{density=0.25}`` after canonicalize (its speed-up over the
  default is what unstructured sparsity at a quarter of the weights is worth).

With ``-p`` the pipelines are the user's, each compared with the first. Rows go to ``bench.json``,
``bench.csv``, the table to ``bench.txt`` and a bar chart to ``bench.png``; the table is printed.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..passes.pipeline import DEFAULT_WAFER, parse_pipeline
from .measure import measure, measure_run

DEFAULT_MODELS = ("cerebras-gpt-111m", "cerebras-gpt-1.3b")
DEFAULT_TARGET = "wse2"
DEFAULT_BATCH = 4
SPARSE_DENSITY = 0.25
PASS_COLUMNS = ("canonicalize", "fuse", "lower", "place", "route", "simulate", "sparsify")


@dataclass(frozen=True)
class Variant:
    name: str
    pipeline: str
    vs: str | None = None  # the variant this one's speed-up is against (the pipeline without its pass)
    worth: str = ""  # what that speed-up measures, for people
    mode: str = "inference"  # the driver's mode; a forward pass on one system is measured the quick way
    execution: str | None = None
    systems: int = 1
    split: str | None = None
    options: tuple = ()  # the mode's options, as (name, value) pairs

    def run_spec(self, model: str, target: str, batch: int, seq: int | None):
        from ..modes import RunSpec

        return RunSpec(model, self.mode, dict(self.options), target=target, execution=self.execution,
                       systems=self.systems, split=self.split, batch=batch,
                       seq=None if self.mode == "generate" else seq, dtype="f16", weights="meta")


def variants(mode: str, *, prompt_len: int = 128, new_tokens: int = 128) -> list[Variant]:
    """The ablation of a mode: each variant a run of the driver (a forward pass's are pipelines)."""
    if mode == "inference":  # the default bench, as before (a sweep spreads a forward pass over systems)
        return ablation()
    if mode == "train":
        return [Variant("auto", "", mode="train"),
                Variant("pipelined", "", vs="streaming", worth="layer-pipelined over weight streaming", mode="train",
                        execution="pipelined"),
                Variant("streaming", "", mode="train", execution="streaming"),
                Variant("2-systems-data", "", vs="auto", worth="2 systems, data parallel", mode="train", systems=2,
                        split="data"),
                Variant("2-systems-pipeline", "", vs="auto", worth="2 systems, a pipeline of layers", mode="train",
                        systems=2, split="pipeline")]
    if mode == "generate":
        o = (("prompt_len", prompt_len), ("new_tokens", new_tokens))
        return [Variant("1-system", "", mode="generate", options=o),
                Variant("2-systems-pipeline", "", vs="1-system", worth="2 systems, a pipeline of layers",
                        mode="generate", systems=2, options=o)]
    raise UsageError(f"wafer bench --mode {mode}: not a mode (inference, train or generate)")


def ablation() -> list[Variant]:
    base = DEFAULT_WAFER.replace("place", "place{mode=auto}")
    return [
        Variant("default", base, vs="no-fuse", worth="fuse"),
        Variant("no-fuse", base.replace("fuse,", "")),
        Variant("pipelined", base.replace("{mode=auto}", "{mode=pipelined}"), vs="streaming",
                worth="layer-pipelined over weight streaming"),
        Variant("streaming", base.replace("{mode=auto}", "{mode=streaming}")),
        Variant("sparse", base.replace("canonicalize,", f"canonicalize,sparsify{{density={SPARSE_DENSITY}}},", 1),
                vs="default", worth=f"sparsity at density {SPARSE_DENSITY}"),
    ]


def given(pipelines: list[str]) -> list[Variant]:
    for p in pipelines:
        parse_pipeline(p)  # every error before any work
    names = [f"p{i + 1}" for i in range(len(pipelines))]
    return [Variant(n, p, vs=None if i == 0 else names[0], worth=f"{n} over p1" if i else "")
            for i, (n, p) in enumerate(zip(names, pipelines))]


def run(models: list[str], variants: list[Variant], *, target: str = DEFAULT_TARGET, batch: int = DEFAULT_BATCH,
        seq: int | None = None, progress=None) -> list[dict]:
    """One row per (model, variant), models traced once each; speed-ups filled in."""
    from ..backends.machine import get_machine
    from ..frontend.lm import trace_lm

    get_machine(target)  # a bad target is one error before any tracing
    rows = []
    for model in models:
        t = trace_lm(model, batch=batch, seq=seq, dtype="f16", weights="meta")
        s = t.graph.inputs[0].type.shape[-1]
        for v in variants:
            if v.mode == "inference" and v.systems == 1:
                row = measure(t.graph, v.pipeline, model=model, batch=batch, seq=s, target=target)
            else:  # through the driver, its figures its report's
                row = measure_run(v.run_spec(model, target, batch, seq), model=model, batch=batch, seq=s,
                                  target=target)
            rows.append({"variant": v.name, **row})
            if progress:
                progress(f"{model} {v.name}")
        by = {r["variant"]: r for r in rows if r["model"] == model}
        for v in variants:
            r = by[v.name]
            base = by.get(v.vs) if v.vs else None
            ok = base is not None and r["ok"] and base["ok"]
            r["vs"], r["worth"] = v.vs or "", v.worth
            r["speedup"] = base["seconds"] / r["seconds"] if ok else None
            r["steady_speedup"] = r["steady_tokens_per_s"] / base["steady_tokens_per_s"] if ok else None
    return rows


COLUMNS = ("model", "variant", "ok", "kernels", "flows", "sram_peak_bytes_per_core", "flow_bytes", "stream_bytes",
           "latency_s", "seconds", "tokens_per_s", "steady_tokens_per_s", "mfu", "vs", "speedup", "steady_speedup",
           *(f"{p}_s" for p in PASS_COLUMNS), "compile_s", "target", "batch", "seq", "mode", "bound", "pipeline",
           "error")


def flat(row: dict) -> dict:
    passes = row.get("pass_seconds", {})
    return {c: (passes.get(c[:-2], "") if c[:-2] in PASS_COLUMNS and c.endswith("_s") else row.get(c, ""))
            for c in COLUMNS}


def to_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in flat(r).items()})
    return out.getvalue()


def _n(v, scale: float, width: int, fmt: str) -> str:
    """A figure of the table; a run's report may lack one (a pipeline of systems has no one placement)."""
    return f"{'-':>{width}}" if v is None else f"{v * scale:>{width}{fmt}}"


def table(rows: list[dict]) -> str:
    """The printed table: one line per (model, variant), then what each pass is worth."""
    head = (f"{'model':<20} {'variant':<10} {'kernels':>7} {'flows':>6} {'SRAM/core':>9} {'fabric MB':>9} "
            f"{'stream MB':>9} {'latency ms':>10} {'ms':>9} {'M tok/s':>8} {'steady':>8} {'MFU':>6} "
            f"{'compile s':>9}  speed-up")
    lines = [head, "-" * len(head)]
    for r in rows:
        if not r["ok"]:
            lines.append(f"{r['model']:<20} {r['variant']:<10} {r['error']}")
            continue
        sp = f"x{r['speedup']:.3f} vs {r['vs']}" if r.get("speedup") else ""
        lines.append(
            f"{r['model']:<20} {r['variant']:<10} {r['kernels']:>7} {r['flows']:>6} "
            f"{_n(r['sram_peak_bytes_per_core'], 1 / 1024, 7, '.1f')}Ki {_n(r['flow_bytes'], 1e-6, 9, '.1f')} "
            f"{_n(r['stream_bytes'], 1e-6, 9, '.1f')} "
            f"{_n(r['latency_s'], 1e3, 10, '.3f')} {_n(r['seconds'], 1e3, 9, '.3f')} "
            f"{_n(r['tokens_per_s'], 1e-6, 8, '.3f')} {_n(r['steady_tokens_per_s'], 1e-6, 8, '.3f')} "
            f"{_n(r['mfu'], 100, 5, '.1f')}% {r['compile_s']:>9.2f}  {sp}")
    worth = [r for r in rows if r.get("worth")]
    if worth:
        lines += ["", "What each pass is worth (time of the pipeline without it / with it; steady state in brackets):"]
        for r in worth:
            what = (f"x{r['speedup']:.3f} (x{r['steady_speedup']:.3f})" if r.get("speedup") else
                    "n/a: " + next((x["error"] for x in rows if x["model"] == r["model"] and
                                    x["variant"] in (r["variant"], r["vs"]) and not x["ok"]), "no comparison"))
            lines.append(f"  {r['model']:<20} {r['worth']:<40} {what}")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict]) -> bytes:
    """Steady-state tokens/s per variant, a group of bars per model (a failed variant: no bar)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in rows))
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    fig, ax = plt.subplots(figsize=(2 + 1.6 * len(models) * len(variants) / 2, 4), dpi=100)
    width = 0.8 / len(variants)
    for i, v in enumerate(variants):
        xs, ys = [], []
        for j, m in enumerate(models):
            r = next(r for r in rows if r["model"] == m and r["variant"] == v)
            if r["ok"]:
                xs.append(j + i * width)
                ys.append(r["steady_tokens_per_s"] / 1e6)
        ax.bar(xs, ys, width, label=v)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(models))], models)
    ax.set_ylabel("steady-state M tokens/s (simulated)")
    ax.set_yscale("log")
    ax.set_title(f"wafer bench: {rows[0]['target']}, batch {rows[0]['batch']}, seq {rows[0]['seq']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})  # no timestamp: the same rows, the same bytes
    plt.close(fig)
    return buf.getvalue()


def write(rows: list[dict], out: Path) -> list[Path]:
    """bench.json, bench.csv, bench.txt (the printed table) and bench.png into ``out``, all written
    or none."""
    from ..report.summary import replace_dir

    files = {"bench.json": json.dumps({"rows": rows}, indent=1) + "\n", "bench.csv": to_csv(rows),
             "bench.txt": table(rows), "bench.png": plot(rows)}
    return replace_dir(out, files, command="bench")


def models_arg(text: str) -> list[str]:
    models = [m.strip() for m in text.split(",") if m.strip()]
    if not models:
        raise UsageError("--models needs at least one model name (e.g. --models cerebras-gpt-111m,gpt2)")
    return models
