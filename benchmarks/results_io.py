"""What every benchmark writes beside its figures: the command that produced them, the machine
it ran on, and the results as JSON and Markdown under benchmarks/results/."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def command() -> str:
    """The command line that ran this benchmark, as a reader would type it."""
    return ("python benchmarks/" + Path(sys.argv[0]).name + " " + " ".join(sys.argv[1:])).strip()


def machine() -> str:
    load = os.getloadavg()[0]
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, load average {load:.1f}"


def merged_rows(name: str, rows: list[dict], order: list[str], cmd: str, where: str) -> tuple[list[dict], list[str]]:
    """The rows of this run, each with its command and machine, in place of the rows of the same models in
    benchmarks/results/NAME.json (the others kept as an earlier command measured them), in ``order`` of
    models; and the distinct commands behind them. So ``--models a,b`` re-runs only those rows."""
    path = RESULTS / f"{name}.json"
    old = json.loads(path.read_text()) if path.exists() else {"rows": []}
    ran = {r["model"] for r in rows}
    kept = [{"command": old.get("command"), "machine": old.get("machine"), **r} for r in old["rows"]
            if r["model"] not in ran]
    new = [{**r, "command": cmd, "machine": where} for r in rows]
    rank = {m: i for i, m in enumerate(order)}
    out = sorted(kept + new, key=lambda r: rank.get(r["model"], len(rank)))  # stable: targets keep their order
    return out, list(dict.fromkeys(f"`{r['command']}` on {r['machine']}" for r in out))


def write(name: str, record: dict, markdown: str, indent: int = 2) -> None:
    """benchmarks/results/NAME.json and NAME.md."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=indent) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown)


def heading(title: str, record: dict) -> str:
    """A results page's title and the command and machine that produced it (record's "command" and
    "machine"): "# TITLE", a blank line, "`COMMAND` on MACHINE"; the caller goes on from there."""
    return f"# {title}\n\n`{record['command']}` on {record['machine']}"


def args_or_render(p: argparse.ArgumentParser, name: str, markdown: Callable[[dict], str]) -> argparse.Namespace:
    """p's arguments, with a --render flag added: with it, write benchmarks/results/NAME.md again from
    NAME.json by ``markdown`` (after a change to the page's text, without re-running the benchmark) and exit."""
    p.add_argument("--render", action="store_true", help=f"only write {name}.md again from {name}.json")
    a = p.parse_args()
    if a.render:
        record = json.loads((RESULTS / f"{name}.json").read_text())
        write(name, record, markdown(record))
        raise SystemExit(0)
    return a


def compile_outputs(model: str, *args: str, names=("report.json",)) -> tuple[dict | None, str | None]:
    """({name: parsed JSON}, None) of the named files of `wafer compile MODEL ARGS...` run in a fresh
    process, or (None, its one-line error) when it fails (a model that does not fit, say)."""
    with tempfile.TemporaryDirectory() as d:
        cmd = [sys.executable, "-m", "waferscale.cli", "compile", model, *args, "-o", d, "-q"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            return None, r.stderr.strip().removeprefix("wafer: error: ")
        return {n: json.loads(Path(d, n).read_text()) for n in names}, None


def compile_report(model: str, *args: str) -> tuple[dict | None, str | None]:
    """(report.json, None) of `wafer compile MODEL ARGS...`, or (None, its one-line error)."""
    out, error = compile_outputs(model, *args)
    return (out["report.json"] if out else None), error


def zoo_on_wafer_args(doc: str) -> argparse.Namespace:
    """--seq, --batch, --targets and --models of a benchmark that runs the zoo on the wafer."""
    from waferscale.frontend.zoo import ZOO

    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--targets", default="wse2,wse3")
    p.add_argument("--models", default=",".join(n for n in ZOO if not n.startswith("tiny")))
    return p.parse_args()


def run_case(script: str, case: list, what: str) -> dict:
    """Run one case of a benchmark script in a fresh process (``script --case JSON``, which prints
    the case's JSON), so that its peak RSS and its timings are its own; a failure stops the run."""
    import waferscale  # the child imports the package this process runs, not whichever one is installed

    here = str(Path(waferscale.__file__).resolve().parent.parent)
    path = os.pathsep.join([here] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    r = subprocess.run([sys.executable, script, "--case", json.dumps(case)], capture_output=True, text=True,
                       cwd=Path(script).resolve().parent.parent, env={**os.environ, "PYTHONPATH": path})
    if r.returncode:
        raise SystemExit(f"case {what}: {r.stderr.strip()}")
    return json.loads(r.stdout)
