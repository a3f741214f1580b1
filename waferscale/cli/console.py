"""What every `wafer` command shares: its exit codes, progress on stderr, and comma-separated option
values.

Progress has three levels. By default a command prints a few milestone lines (tracing, traced,
placed) and, on a terminal, one status line under them that shows the current detail (the pass
running, placement's search, the simulation's count as a bar), redrawn in place and erased at the
end; where stderr is not a terminal (CI, a pipe, a log file) the details are dropped, so that no
bar redraws pile up there. ``-v`` prints every detail as a line of its own; ``-q`` prints nothing.
"""

from __future__ import annotations

import re
import shutil
import sys
import time

# Messages that are details (shown as lines only with -v): the passes' own reports of their steps.
DETAILS = ("band height ", "pass ", "routed ", "simulating: ", "simulated ", "wrote ", "sparsify: ", "micro-batch ")
EXIT_USAGE = 2  # a problem with the user's input: one line on stderr
EXIT_BUG = 3  # a bug in waferscale: one line on stderr, the traceback in a log file

_COUNT = re.compile(r"(.*?): ([\d,]+)/([\d,]+)(.*)")  # "simulating: 3/26 kernel chunks": a bar
_REDRAW_S = 0.1  # at most ten redraws a second of the status line

_open: list[Progress] = []


class Progress:
    """A log function (``log(msg)``) for one command, at the level its flags ask for."""

    def __init__(self, quiet: bool = False, verbose: bool = False, stream=None):
        self.quiet, self.verbose = quiet, verbose
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self.bar = None
        self.drawn = 0.0

    def __call__(self, msg: str) -> None:
        if self.quiet:
            return
        if self.verbose or not msg.startswith(DETAILS):
            line = f"[{time.perf_counter() - self.start:6.2f}s] {msg}"
            if self.bar is not None:
                self.bar.write(line, file=self.stream)  # above the status line, which is drawn again
            else:
                print(line, file=self.stream, flush=True)
        elif self.tty:
            self._status(msg)

    def _status(self, msg: str) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(file=self.stream, leave=False, total=None, dynamic_ncols=True, bar_format="{desc}")
            _open.append(self)
        now = time.perf_counter()
        width = shutil.get_terminal_size((80, 24)).columns - 12  # one row: a wrapped line is not redrawn in place
        m = _COUNT.fullmatch(msg)
        if m:
            self.bar.bar_format = "{desc}: {bar:20} {n_fmt}/{total_fmt} {unit} [{elapsed}]"
            self.bar.total, self.bar.n = int(m[3].replace(",", "")), int(m[2].replace(",", ""))
            self.bar.unit = m[4].strip()[:max(width - 50, 0)]
            self.bar.set_description_str(m[1][:20], refresh=False)
        else:
            self.bar.bar_format, self.bar.total = "{desc} [{elapsed}]", None
            self.bar.set_description_str(msg[:max(width, 10)], refresh=False)
        if now - self.drawn >= _REDRAW_S:
            self.drawn = now
            self.bar.refresh()

    def close(self) -> None:
        """Erase the status line (before the command's result on stdout, or an error)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self in _open:
            _open.remove(self)


def progress(quiet: bool, verbose: bool = False) -> Progress:
    """A log function: each message on stderr with the seconds since now, at the level of -q/-v."""
    return Progress(quiet, verbose)


def close_all() -> None:
    """Erase every status line still drawn (``wafer``'s main, before it prints an error or exits)."""
    for p in list(_open):
        p.close()


def comma_names(values: list[str] | None) -> tuple[str, ...]:
    """The names of repeatable, comma-separated option values (``--print-ir-after a,b --print-ir-after c``)."""
    return tuple(n.strip() for v in values or [] for n in v.split(",") if n.strip())
