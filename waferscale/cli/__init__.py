"""The ``wafer`` command line (``wafer = "waferscale.cli:main"``; ``python -m waferscale.cli``). Every user
error is one line on stderr and exit code 2; a bug is one line and exit code 3, its traceback in a file.

One module per command group, each an ``add_parser(sub)`` and its ``cmd_*`` over the Python API:
``info`` (models), ``compile``, ``replay``, ``report``, ``opt`` (opt, passes), ``studies`` (bench, sweep),
``run``, ``kernel`` (simulate-kernel); ``train`` and ``generate`` hold compile's and run's --train and
--generate; ``checks`` what is checked before any work; ``console`` progress and exit codes;
``parser`` puts the groups together."""

from __future__ import annotations

import os
import sys

from ..errors import WaferError
from .checks import check_names, check_numbers
from .console import EXIT_BUG, EXIT_USAGE, close_all
from .parser import build_parser

__all__ = ["EXIT_BUG", "EXIT_USAGE", "build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if not argv:  # `wafer` alone: what it can do, as argparse's convention (usage and exit 2)
        parser.print_help(sys.stderr)
        print("\nwafer: error: give a command (`wafer COMMAND --help` for its options)", file=sys.stderr)
        return EXIT_USAGE
    try:
        args = parser.parse_args(argv)
        check_numbers(args)
        check_names(args)
        if args.verbose or "waferscale.frontend.lm" in sys.modules:  # importing lm imports torch: only when needed
            from ..frontend import lm

            lm.LIBRARY_WARNINGS = args.verbose
        try:
            return args.fn(args)
        finally:
            close_all()  # a status line erased before the error or the shell's prompt
    except WaferError as e:
        print(f"wafer: error: {_one_line(str(e))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("wafer: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # a path the user gave: unwritable, a file where a folder should be, too long
        where = f" {e.filename!r}" if e.filename else ""
        print(f"wafer: error: cannot use{where}: {e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # anything else is a bug in waferscale: one line, the traceback kept in a file
        import tempfile
        import traceback

        fd, path = tempfile.mkstemp(prefix="wafer-bug-", suffix=".log")
        with os.fdopen(fd, "w") as f:
            f.write(f"wafer {' '.join(map(str, argv))}\n")
            traceback.print_exc(file=f)
        print(f"wafer: internal error (a bug in waferscale, please report it): {type(e).__name__}: "
              f"{_one_line(str(e))[:300]}; the traceback is in {path}", file=sys.stderr)
        return EXIT_BUG


def _one_line(text: str) -> str:
    """An error as one line: a newline in a file name or a library's message would make two."""
    return " ".join(text.split("\n")).replace("\r", " ")

