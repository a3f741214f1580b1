"""A machine description as a YAML file: every figure with its value and where it comes from.

One file per machine (``machines/wse2.yaml``, ``machines/wse3.yaml``; a user may write their own and pass
it as ``--target path/to/my.yaml``). The file is a mapping: ``name``, ``source`` (one line on where the
figures come from), then one entry per figure, each ``value`` plus ``source: "..."`` (who published it,
where) or ``assumed: "..."`` (why we picked it)::

    clock_hz:
      value: 1100000000.0
      source: "Lie, Hot Chips 34 (2022)"

Every figure is required (copy ``wse2.yaml`` and edit it); an unknown key, a value of the wrong type or
out of range is one error line that names the key and the file.

An optional ``costs`` mapping sets the instruction cost table (``costs.py``: field -> cycles, e.g.
``costs: {vector_issue: 15}``); the fields it leaves out keep their default (fitted or sourced
there), and a file without it gets the default. ``dump`` writes the canonical form: the shipped files
are in it, so they load and dump back byte for byte.
"""

from __future__ import annotations

import json
import math
import re

from ..errors import UsageError
from .costs import DEFAULT as DEFAULT_COSTS
from .costs import Costs

# figure -> (type, smallest value allowed). Counts are int; rates and sizes in bytes or seconds float.
FIGURES: dict[str, tuple[type, float]] = {
    "rows": (int, 1), "cols": (int, 1), "fabric_rows": (int, 0), "fabric_cols": (int, 0), "die_cores": (int, 0),
    "clock_hz": (float, 1e-300),
    "sram_bytes": (int, 1), "reserved_sram_bytes": (int, 0),
    "sram_port_bytes": (int, 1), "sram_read_ports": (int, 1), "sram_write_ports": (int, 1),
    "fmacs_per_cycle": (int, 1), "f32_fmacs_per_cycle": (float, 1e-300),
    "link_bytes_per_cycle": (int, 1), "elements_per_wavelet": (int, 1), "colors": (int, 1),
    "queue_bytes_per_color": (int, 0), "pe_queue_depth": (int, 1),
    "hop_cycles": (int, 0), "ramp_cycles": (int, 0), "router_delay_cycles": (int, 0),
    "io_bytes_per_s": (float, 1e-300), "memoryx_bytes": (float, 0),
    "inter_system_latency_s": (float, 0), "inter_system_link_name": (str, 0),
    "published_peak_flops": (float, 0), "published_ai_flops": (float, 0),
    "published_sram_bytes_per_s": (float, 0), "published_fabric_bits_per_s": (float, 0),
}
HEAD = ("name", "source", "costs")
PROVENANCE = ("source", "assumed")


class _Loader:
    """PyYAML's safe loader, with YAML 1.2 floats: ``1.1e9`` and ``2e-06`` are numbers, not strings."""

    cls = None

    @classmethod
    def get(cls):
        if cls.cls is None:
            import yaml

            class Loader(yaml.SafeLoader):
                pass

            Loader.yaml_implicit_resolvers = {k: [r for r in v if r[0] != "tag:yaml.org,2002:float"]
                                              for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
            Loader.add_implicit_resolver(
                "tag:yaml.org,2002:float",
                re.compile(r"^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
                           r"|[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
                list("-+0123456789."))
            cls.cls = Loader
        return cls.cls


def parse(text: str, path: str) -> tuple[str, str, dict, tuple]:
    """(name, source, {figure: value}, ((figure, 'source' | 'assumed', text), ...)) of a file's text."""
    import yaml

    try:
        data = yaml.load(text, Loader=_Loader.get())  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{path}{where}: not a YAML machine file ({getattr(e, 'problem', None) or e})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a machine file is a mapping of name, source and figures (got {type(data).__name__})")
    unknown = [k for k in data if k not in FIGURES and k not in HEAD]
    if unknown:
        raise UsageError(f"{path}: unknown key {str(unknown[0])[:60]!r} (figures are: {', '.join(FIGURES)})")
    for key in ("name", *FIGURES):
        if key not in data:
            raise UsageError(f"{path}: missing key {key!r} (every figure is required; copy wse2.yaml and edit it)")
    name, source = data["name"], data.get("source", "")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.:+-]{1,64}", name):
        raise UsageError(f"{path}: key 'name' must be a short name of letters, digits and -_.:+ (got {name!r:.60})")
    if not isinstance(source, str):
        raise UsageError(f"{path}: key 'source' must be a string")
    values, sources = {}, []
    for key, (kind, low) in FIGURES.items():
        entry = data[key]
        if not isinstance(entry, dict) or "value" not in entry:
            raise UsageError(f"{path}: key {key!r} must be a mapping with a 'value' (and 'source' or 'assumed')")
        extra = [k for k in entry if k != "value" and k not in PROVENANCE]
        if extra or len(entry) > 2:
            what = f"unknown key {str(extra[0])[:40]!r}" if extra else "both source and assumed"
            raise UsageError(f"{path}: key {key!r} has {what} (an entry is value plus one of source or assumed)")
        for p in PROVENANCE:
            if p in entry:
                if not isinstance(entry[p], str):
                    raise UsageError(f"{path}: {key}.{p} must be a string")
                sources.append((key, p, entry[p]))
        values[key] = _value(entry["value"], key, kind, low, path)
    if "costs" in data:
        values["costs"] = _costs(data["costs"], path)
    return name, source, values, tuple(sources)


def _costs(data, path: str) -> Costs:
    """The ``costs`` mapping: the default table with the fields it names replaced."""
    fields = DEFAULT_COSTS.as_dict()
    if not isinstance(data, dict):
        raise UsageError(f"{path}: key 'costs' must be a mapping of cost names to cycles ({', '.join(fields)})")
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise UsageError(f"{path}: unknown cost {str(unknown[0])[:60]!r} under 'costs' (costs: {', '.join(fields)})")
    given = {k: _value(v, f"costs.{k}", type(fields[k]), 0, path) for k, v in data.items()}
    return Costs(**{**fields, **given})


def _value(v, key: str, kind: type, low: float, path: str):
    if kind is str:
        if not isinstance(v, str):
            raise UsageError(f"{path}: key {key!r} must be a string (got {type(v).__name__})")
        return v
    if isinstance(v, bool) or not isinstance(v, int | float) or (kind is int and not isinstance(v, int)):
        what = "a whole number" if kind is int else "a number"
        raise UsageError(f"{path}: key {key!r} must be {what} (got {type(v).__name__} {v!r:.40})")
    if not math.isfinite(v) or v < low:
        bound = "positive" if low > 0 else "zero or more"
        raise UsageError(f"{path}: key {key!r} must be {bound} (got {v!r:.40})")
    if kind is int and v > 10**12:
        raise UsageError(f"{path}: key {key!r} is too large (got {v})")
    return float(v) if kind is float else int(v)


def _scalar(v) -> str:
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar
    if isinstance(v, float):
        return repr(v)
    return str(v)


def dump(name: str, source: str, values: dict, sources: tuple, costs: Costs = DEFAULT_COSTS) -> str:
    """The canonical text of a machine file (what ``parse`` reads back to the same figures); ``costs``
    written only where they are not the default table (every field then, so the file says them all)."""
    prov = {k: (p, t) for k, p, t in sources}
    lines = [f"name: {_scalar(name)}", f"source: {_scalar(source)}"]
    for key in FIGURES:
        lines += [f"{key}:", f"  value: {_scalar(values[key])}"]
        if key in prov:
            lines.append(f"  {prov[key][0]}: {_scalar(prov[key][1])}")
    if costs != DEFAULT_COSTS:
        lines += ["costs:", *(f"  {k}: {_scalar(v)}" for k, v in costs.as_dict().items())]
    return "\n".join(lines) + "\n"
