"""The spec of a ``wafer sweep``: a YAML or JSON file (or the same keys from flags), checked whole
before anything runs, and the design points it stands for.

    name: mesh-111m                  # optional, for the plot's title
    sample: grid                     # every combination (the default), or {random: 16, seed: 0}
    model: cerebras-gpt-111m         # each axis is one value or a list of them
    batch: [1, 4]
    seq: 2048                        # default: each model's context
    mode: auto                       # pipelined | streaming | auto; or `pipeline:` (explicit pipelines)
                                     # or a mode of the driver: inference | train | generate
    execution: auto                  # with a driver mode: pipelined | streaming | auto
    systems: [1, 2]                  # systems, and how the run spreads over them (split: data | pipeline)
    prompt_len: 128                  # generate's lengths; lora: train's adapters (a lora{...} pass)
    mesh: [128x128, 256x256]         # or rows: [...] and cols: [...]
    sram_kib: [48, 96]
    fmac: [4, 8]
    clock_ghz: 1.1
    io_gbs: 150

A point of the forward pass on one system is measured the quick way: the graph traced once and
shared by every such point (``measure.measure``). Any other point (``mode: train`` or ``generate``,
``systems`` > 1, a ``split``) is a ``RunSpec`` compiled by the driver, its row read from the report
(``measure.measure_run``).

A point is one value of every axis; its id is a hash of its parameters, so the same point has the
same id in any spec, which is what lets a sweep resume. Points come out in grid order (the axes in
the order of ``AXES``), a random sample in grid order too. Every bad spec is one ``UsageError``
line that names the key and what it accepts.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import random
from dataclasses import asdict, dataclass
from math import prod
from pathlib import Path
from typing import Any

from .. import limits as L
from ..errors import UsageError
from ..safe_read import load_yaml, loads_json, read_text, short
from .spec_values import AXES, MODES, RUN_MODES, check_modes, check_value, context, is_int  # noqa: F401

# axes with no effect at their default: left out of a point's id, so an older spec's points keep theirs
QUIET = {"run": "inference", "systems": 1, "split": "", "prompt_len": 0, "new_tokens": 0, "lora": "", "rate": 0,
         "policy": "", "requests": 0, "slo_ttft": 0, "slo_tpot": 0, "placement": ""}
SERVE_REQUESTS = 200  # mode: serve's requests a point when the spec gives none
OTHER_KEYS = {"name": "a string", "sample": "grid or {random: N, seed: S}"}
SYNONYMS = {"sparsity": "density"}  # --sparsity's name for the density axis
# a WSE-2's core and I/O (backends/machine.py); seq None: each model's context
DEFAULTS = {"dtype": "f16", "batch": 1, "seq": None, "mode": "auto", "density": 1, "sram_kib": 48, "fmac": 4,
            "clock_ghz": 1.1, "io_gbs": 150, "link_bytes": 4}
WAFER_PIPELINE = "canonicalize,fuse,lower,place{{mode={mode}}},route,simulate"
MAX_GRID = 100_000


@dataclass(frozen=True)
class Point:
    """One design point: every parameter, resolved (the seq a number, the pipeline written out)."""
    model: str
    dtype: str
    batch: int
    seq: int
    mode: str  # as asked ("" when the spec gives pipelines)
    pipeline: str
    density: float
    rows: int
    cols: int
    sram_kib: float
    fmac: int
    clock_ghz: float
    io_gbs: float
    link_bytes: int
    run: str = "inference"  # the driver's mode
    systems: int = 1
    split: str = ""  # "": the mode's default
    prompt_len: int = 0
    new_tokens: int = 0
    lora: str = ""
    rate: float = 0  # mode: serve's (requests/s, policy, requests a point, SLOs in seconds; 0: none)
    policy: str = ""
    requests: int = 0
    slo_ttft: float = 0
    slo_tpot: float = 0
    placement: str = ""  # serve: "" is the mode's default (auto)

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in QUIET or v != QUIET[k]}

    @property
    def driven(self) -> bool:
        """Whether the point is compiled by the driver (any mode, several systems), not the quick way."""
        return any(getattr(self, k) != v for k, v in QUIET.items())

    @property
    def id(self) -> str:
        text = json.dumps(self.params(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def target(self) -> str:
        """The ``mesh:`` target of ``backends/machine.py`` (links are a WSE-2's: see ``link_bytes``)."""
        return (f"mesh:{self.rows}x{self.cols},sram_kib={_text(self.sram_kib)},fmac={self.fmac},"
                f"clock_ghz={_text(self.clock_ghz)},io_gbs={_text(self.io_gbs)}")

    @property
    def trace_key(self) -> tuple[str, str, int, int]:
        """Points with one key share one traced graph (a driven point traces its own)."""
        return ("driver", self.id) if self.driven else (self.model, self.dtype, self.batch, self.seq)

    def serve_task(self) -> dict:
        """What ``measure_serve.measure_serve`` takes for a point of mode: serve."""
        return {"model": self.model, "target": self.target, "systems": self.systems, "policy": self.policy,
                "split": float(self.split) if self.split else 0.5, "max_batch": self.batch, "rate": self.rate,
                "requests": self.requests, "prompt_len": self.prompt_len, "new_tokens": self.new_tokens,
                "slo_ttft": self.slo_ttft or None, "slo_tpot": self.slo_tpot or None, "dtype": self.dtype,
                "execution": self.mode if self.mode in ("pipelined", "streaming") else None,
                "placement": self.placement or None}

    def run_spec(self):
        """The driver's spec of a driven point."""
        from ..modes import RunSpec

        sparsity = None if self.density >= 1 else float(self.density)
        options = {"inference": {"sparsity": sparsity}, "train": {"lora": self.lora or None, "sparsity": sparsity},
                   "generate": {"prompt_len": self.prompt_len, "new_tokens": self.new_tokens}}[self.run]
        generate = self.run == "generate"
        return RunSpec(self.model, self.run, options, target=self.target,
                       execution=None if generate or self.mode in ("", "auto") else self.mode,
                       systems=self.systems, split=self.split or None, batch=self.batch,
                       seq=None if generate else self.seq, dtype=self.dtype, weights="meta",
                       pipeline=self.pipeline if self.run == "inference" and not self.mode else None)


def _text(v: float) -> str:  # a number as get_machine reads it: digits and a dot, no exponent
    return str(v) if isinstance(v, int) else f"{v:.12f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class Spec:
    axes: dict[str, tuple]  # the keys of AXES given (or defaulted), each a tuple of checked values
    sample: int | None = None  # None: the grid; N: a random sample of N points
    seed: int = 0
    name: str = ""
    contexts: tuple[tuple[str, int], ...] = ()  # each model's context (the default seq)

    def grid_size(self) -> int:
        return prod(len(v) for v in self.axes.values())

    def points(self) -> list[Point]:
        """The grid in order, or a seeded random sample of it (without repeats) in grid order."""
        keys, values = list(self.axes), list(self.axes.values())
        if self.sample is None:
            combos = itertools.product(*values)
        else:
            picked = sorted(random.Random(self.seed).sample(range(self.grid_size()), self.sample))
            combos = (_nth(values, i) for i in picked)
        context = dict(self.contexts)
        out = []
        for combo in combos:
            p = {**DEFAULTS, **dict(zip(keys, combo))}
            if "mesh" in p:
                p["rows"], p["cols"] = (int(x) for x in p.pop("mesh").split("x"))
            if p.get("mode") in RUN_MODES:
                p["run"], p["mode"] = p["mode"], p.pop("execution", "auto")
            p.pop("execution", None)
            if p.get("run", "inference") == "generate":
                p["seq"] = p["prompt_len"]  # the prefill's tokens (a decode step's are 1)
            if p.get("run", "inference") == "serve":
                p["seq"] = p.get("prompt_len", 0)  # 0: `wafer serve`'s default prompt lengths
                p.setdefault("requests", SERVE_REQUESTS)
                p.setdefault("policy", "colocated")
            if p.get("run", "inference") != "inference":
                p["pipeline"] = ""  # the mode's passes are fixed (the report's run.executed has them)
            elif "pipeline" in p:
                p["mode"] = ""
            else:
                p["pipeline"] = WAFER_PIPELINE.format(mode=p["mode"])
                if p["density"] < 1:
                    p["pipeline"] = p["pipeline"].replace("canonicalize,", f"canonicalize,{sparsify(p['density'])},", 1)
            if p["seq"] is None:
                p["seq"] = context[p["model"]]
            out.append(Point(**p))
        return out

    def as_dict(self) -> dict[str, Any]:
        """The spec as checked: every axis a list (what sweep.json records)."""
        d: dict[str, Any] = {"name": self.name} if self.name else {}
        d["sample"] = "grid" if self.sample is None else {"random": self.sample, "seed": self.seed}
        return d | {k: list(v) for k, v in self.axes.items()}


def _nth(values: list[tuple], i: int) -> tuple:
    """The i-th combination of itertools.product(*values)."""
    out = []
    for v in reversed(values):
        i, r = divmod(i, len(v))
        out.append(v[r])
    return tuple(reversed(out))


def load_spec(path: str | Path, overrides: dict[str, Any] | None = None,
              labels: dict[str, str] | None = None) -> Spec:
    """Read a YAML or JSON spec file; ``overrides`` (from flags) replace its keys."""
    path = Path(path)
    text = read_text(path, "sweep spec", L.MAX_SPEC_BYTES)
    data = loads_json(text, str(path)) if path.suffix == ".json" else load_yaml(text, str(path))
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a sweep spec is a mapping of keys (model, mesh, batch, ...), "
                         f"not {type(data).__name__ if data is not None else 'an empty file'}")
    return parse_spec(data | (overrides or {}), str(path), labels)


def parse_spec(data: dict[str, Any], source: str = "sweep spec", labels: dict[str, str] | None = None) -> Spec:
    """Check every key of a spec; the first problem is a UsageError naming the key (or its flag)."""
    labels = labels or {}

    def bad(key: str, msg: str) -> UsageError:
        return UsageError(f"{source}: {labels.get(key, f'key {short(key)}')}: {msg}")

    for key in data:
        if key not in AXES and key not in OTHER_KEYS and key not in SYNONYMS:
            close = difflib.get_close_matches(str(key), [*AXES, *OTHER_KEYS], n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(f"{source}: unknown key {short(key)}{hint}; the keys are "
                             f"{', '.join([*OTHER_KEYS, *AXES])}")
    if "model" not in data:
        raise UsageError(f"{source}: no {labels.get('model', 'key model')}: name the model(s) to sweep")
    if "mesh" in data and ("rows" in data or "cols" in data):
        raise bad("mesh", "give mesh or rows and cols, not both")
    if "mesh" not in data and ("rows" not in data or "cols" not in data):
        raise UsageError(f"{source}: no mesh: give {labels.get('mesh', 'key mesh')} (RxC strings such as 128x128) "
                         "or both rows and cols")
    if "mode" in data and "pipeline" in data:
        raise bad("pipeline", "give mode or pipeline, not both (a pipeline's place{mode=...} sets the mode)")
    if "density" in data and "pipeline" in data:
        raise bad("density", "give density or pipeline, not both (write sparsify{density=...} into the pipelines)")

    if "sparsity" in data:
        if "density" in data:
            raise bad("sparsity", "give sparsity or density, not both (they are one axis)")
        data = {("density" if k == "sparsity" else k): v for k, v in data.items()}
        labels = {**labels, "density": labels.get("sparsity", "key sparsity")}
    check_modes(data, bad)
    axes: dict[str, tuple] = {}
    contexts = {}
    for key in AXES:
        if key not in data:
            if key in DEFAULTS and not (key == "mode" and "pipeline" in data):
                axes[key] = (DEFAULTS[key],)
            continue
        raw = data[key]
        values = raw if isinstance(raw, list) else [raw]
        if not values:
            raise bad(key, f"an empty list: give at least one value ({AXES[key]})")
        checked = []
        for v in values:
            c = check_value(key, v, lambda msg, k=key: bad(k, msg))
            if c in checked:
                raise bad(key, f"lists {short(v)} twice")
            checked.append(c)
        axes[key] = tuple(checked)
        if key == "model":
            contexts = {m: context(m, lambda msg: bad("model", msg)) for m in checked}

    sample, seed = None, 0
    s = data.get("sample", "grid")
    if isinstance(s, dict) and set(s) <= {"random", "seed"} and "random" in s:
        sample, seed = s["random"], s.get("seed", 0)
        if not is_int(sample) or sample < 1 or not is_int(seed):
            raise bad("sample", f"random and seed are integers, random at least 1 (got {short(s)})")
    elif s != "grid":
        raise bad("sample", f"{short(s)} is not grid or {{random: N, seed: S}}")
    grid = prod(len(v) for v in axes.values())
    if sample is not None and sample > grid:
        raise bad("sample", f"random: {sample} asks for more points than the grid's {grid}")
    if sample is None and grid > MAX_GRID:
        raise bad("sample", f"the grid has {grid:,} points (more than {MAX_GRID:,}): sample it with "
                  "sample: {random: N, seed: S} or shorten an axis")
    name = data.get("name", "")
    if not isinstance(name, str):
        raise bad("name", f"{short(name)} is not a string")
    return Spec(axes, sample, seed, name, tuple(sorted(contexts.items())))


def sparsify(density: float) -> str:
    return f"sparsify{{density={float(density)!r}}}"


def flags_spec(args) -> tuple[dict[str, Any], dict[str, str]]:
    """The spec keys that ``wafer sweep``'s flags give (comma lists), and each key's flag for messages."""
    flags = {"model": "models", "mesh": "meshes", "batch": "batch", "seq": "seq", "dtype": "dtype", "mode": "mode",
             "density": "density", "sram_kib": "sram_kib", "fmac": "fmac", "clock_ghz": "clock_ghz",
             "io_gbs": "io_gbs", "link_bytes": "link_bytes"}
    data, labels = {}, {}
    for key, attr in flags.items():
        text = getattr(args, attr, None)
        if text is not None:
            data[key] = [x.strip() for x in text.split(",") if x.strip()]
            labels[key] = "--" + attr.replace("_", "-")
    if getattr(args, "pipeline", None):
        data["pipeline"], labels["pipeline"] = list(args.pipeline), "--pipeline"
    if getattr(args, "random", None) is not None:
        data["sample"], labels["sample"] = {"random": args.random, "seed": args.seed}, "--random"
    return data, labels
