"""`wafer report DIR`: the summary (or, with --html, the page) of a directory `wafer compile` wrote."""

from __future__ import annotations

import sys
from pathlib import Path

from .. import limits as L
from ..errors import UsageError


def read_compiled(d: Path) -> tuple[dict, dict | None]:
    """report.json and placement.json (None without a target) of a directory `wafer compile` wrote."""
    from ..safe_read import read_json

    if not (d / "report.json").exists():
        raise UsageError(f"cannot read {d}/report.json: no such file; pass a directory written by "
                         "`wafer compile -o DIR`")
    report = read_json(d / "report.json", "report of `wafer compile`", L.MAX_REPORT_FILE_BYTES)
    pj = read_json(d / "placement.json", "placement of `wafer compile`", L.MAX_REPORT_FILE_BYTES) \
        if (d / "placement.json").exists() else None
    return report, pj


def from_reports(d: Path, make):
    """``make()``, with a report of the wrong shape as one line."""
    try:
        return make()
    except KeyError as e:
        raise UsageError(f"{d}/report.json or placement.json lacks the key {e.args[0]!r}: was it written by an "
                         "older waferscale? compile again") from None
    except (TypeError, AttributeError, ValueError, IndexError, ArithmeticError):  # a section of the wrong shape
        raise UsageError(f"{d}: report.json or placement.json does not have the shape `wafer compile` writes "
                         "(a section is missing, null or of the wrong type); compile again") from None


def cmd_report(args) -> int:
    from ..report.summary import to_text, write_dir
    from ..report.wafer import placement_text

    d = Path(args.dir)
    report, pj = read_compiled(d)
    if args.html:
        from ..report.html import report_html

        if pj is None:
            raise UsageError(f"{d} holds no placement.json, so there is no placement to show: compile with "
                             "`wafer compile MODEL --target T -o DIR` first")
        page = from_reports(d, lambda: report_html(report, pj))
        (path,) = write_dir(d, {"report.html": page})
        print(f"wrote {path} ({len(page.encode()) / 1024:.0f} KiB)")
        return 0
    text = from_reports(d, lambda: to_text(report) + (placement_text(report, pj) if pj is not None else ""))
    sys.stdout.write(text)
    return 0


def add_parser(sub) -> None:
    s = sub.add_parser("report", help="print the summary of a directory written by `wafer compile`")
    s.add_argument("dir", help="a directory written by `wafer compile -o DIR`")
    s.add_argument("--html", action="store_true", help="(re)write DIR/report.html, the interactive page, from "
                   "DIR/report.json and DIR/placement.json instead of printing the summary")
    s.set_defaults(fn=cmd_report)
