"""The ``wafer`` argument parser: the top-level options, then each command group's own parser (its
module's ``add_parser``), in the order `wafer --help` lists them."""

from __future__ import annotations

import argparse

from ..errors import UsageError
from ..version import __version__
from . import compile, info, kernel, opt, replay, report, run, serve, studies
from .checks import Help as _Help

# The command groups, in the order of `wafer --help`: each module's add_parser(sub) adds its commands.
GROUPS = (info, compile, replay, report, opt, studies, serve, run, kernel)


class Parser(argparse.ArgumentParser):
    def __init__(self, *a, **kw):
        kw.setdefault("formatter_class", _Help)
        super().__init__(*a, **kw)

    def error(self, message):  # argparse prints usage + message; we print one line
        raise UsageError(f"{message} (see `{self.prog} --help`)")


VERBOSE_HELP = ("every step on stderr (each pass, placement's search, the files written) and the warnings of the "
                "libraries underneath (transformers, torch)")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="wafer", description="Compile GPT models onto a wafer-scale mesh of cores.",
               epilog="`wafer COMMAND --help` shows a command's options; `wafer compile tiny --target wse2` is a "
               "first try.")
    p.add_argument("--version", action="version", version=f"waferscale {__version__}")
    p.add_argument("-v", "--verbose", action="store_true",
                   help=VERBOSE_HELP)
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser, title="commands",
                           metavar="COMMAND")

    for group in GROUPS:
        group.add_parser(sub)
    for s in sub.choices.values():  # -v after the command too (`wafer compile tiny -v`), as before it
        s.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    return p
