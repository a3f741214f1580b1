"""`wafer opt` (graph passes over a text IR file) and `wafer passes` (the passes and their options)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import UsageError
from ..version import __version__


def cmd_opt(args) -> int:
    from ..frontend.ir_file import header, read_ir_file
    from ..ir import print_graph
    from ..passes import CompileState, parse_pipeline, run_pipeline, spec

    passes = parse_pipeline(args.pipeline)
    for p in passes:
        if not p.is_graph_pass:
            raise UsageError(f"wafer opt runs graph passes; {p.name!r} makes or needs the lowered program: "
                             "use `wafer compile FILE.ir --target T -p ...` for the wafer passes")
    f = read_ir_file(args.file)
    state, records = run_pipeline(CompileState(f.graph), passes)
    for r in records:
        print(f"pass {r.name}: {r.before['ops']} -> {r.after['ops']} ops in {1e3 * r.seconds:.2f} ms", file=sys.stderr)
    out = print_graph(state.graph)
    if f.model is not None:  # a dump keeps its header, with these passes added to its pipeline
        done = spec(parse_pipeline(f.done) + passes) if f.done else spec(passes)
        out = header(done, f.model, f"waferscale {__version__}: {f.model.get('name')}") + out
    if args.output:
        from ..report.summary import write_dir

        write_dir(Path(args.output).parent, {Path(args.output).name: out})
    else:
        sys.stdout.write(out)
    return 0


def cmd_passes(args) -> int:
    from ..passes import DEFAULT_GRAPH, DEFAULT_WAFER, PASSES
    from ..passes.base import format_value, type_name

    print("Passes (a pipeline is a comma-separated list of NAME or NAME{option=value,...}):")
    for name, cls in PASSES.items():
        stage = f"{cls.stage} -> {cls.gives}" if cls.gives else cls.stage
        print(f"  {name:<13} [{stage}] {cls.summary}")
        for f in cls.options():
            kind = "|".join(map(str, f.metadata["choices"])) if f.metadata.get("choices") else type_name(f)
            print(f"  {'':<13}   {f.name}={kind} (default {format_value(f.default)}): {f.metadata['doc']}")
    print(f"Default pipeline: {DEFAULT_GRAPH}; with --target: {DEFAULT_WAFER}")
    return 0


def add_parser(sub) -> None:
    s = sub.add_parser("opt", help="read, verify, run graph passes on and print text IR")
    s.add_argument("file", help="a text IR file (a dump of `wafer compile --print-ir-after`, model.ir, or your own)")
    s.add_argument("-p", "--pipeline", default="", help="graph passes to run, e.g. 'canonicalize,fuse' (default: "
                   "none, the file is verified and printed)")
    s.add_argument("-o", "--output", help="write the result here (default: stdout)")
    s.set_defaults(fn=cmd_opt)

    s = sub.add_parser("passes", help="list the passes, their options and the default pipelines")
    s.set_defaults(fn=cmd_passes)
