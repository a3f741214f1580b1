"""`wafer replay DIR -o NEW`: compile again the run that DIR/report.json records (``driver.replay``)."""

from __future__ import annotations

from pathlib import Path

from .console import progress


def cmd_replay(args) -> int:
    from ..compiled import write_compiled
    from ..driver import replay

    log = progress(args.quiet)
    c, same = replay(Path(args.dir), log=log)
    for p in write_compiled(c, Path(args.output)):
        log(f"wrote {p}")
    print(f"replayed {args.dir}/report.json's run -> {args.output}/: "
          + ("the same report (but its host section)" if same else "a DIFFERENT report"))
    return 0 if same else 1


def add_parser(sub) -> None:
    s = sub.add_parser("replay", help="compile again the run recorded in DIR/report.json (its run section) and "
                       "write it to NEW; exits 1 if the report differs (but for its host section)")
    s.add_argument("dir", help="a directory written by `wafer compile -o DIR` (or `wafer serve -o DIR`)")
    s.add_argument("-o", "--output", required=True, metavar="NEW", help="the output directory of the replay")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    s.set_defaults(fn=cmd_replay)
