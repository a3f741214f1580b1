"""Reading the files a user hands us (reports, sweep specs and resume points, .ir, .mlir, configs, data)
without trusting them: one error line, never a hang, a crash or memory running out.

A file is read only if it is a regular file (a symlink is followed, but a device, a FIFO or a directory
at its end is refused before it is opened) no larger than the caller's bound from ``limits.py``, and
no more than that bound is read even if the file grows meanwhile. JSON and YAML are parsed with their
nesting and numbers bounded (``MAX_JSON_DEPTH``, ``MAX_NUMBER_CHARS``), YAML's aliases by the node
count they expand to (``MAX_YAML_NODES``). Values quoted in error messages go through ``short``.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import limits as L
from .errors import UsageError

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def short(value: Any, n: int = L.MAX_ERROR_VALUE_CHARS) -> str:
    """``repr(value)`` cut to ``n`` characters (with an ellipsis), for error messages."""
    text = repr(value)
    return text if len(text) <= n else text[:n - 1] + "…"


def _check_stat(st: os.stat_result, path: Path, what: str, limit: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        raise UsageError(f"{path} is {kind}, not a regular file: pass the {what} itself")
    if st.st_size > limit:
        raise UsageError(f"{path} is {st.st_size:,} bytes, more than the {limit:,} this tool reads for a {what} "
                         "(limits.py): is it the right file?")


def check_file(path: str | Path, what: str, limit: int) -> Path:
    """``path`` if it names a regular file of at most ``limit`` bytes (for readers that hand the path to a
    library, as MLIR's parser), else one UsageError line."""
    path = Path(path)
    try:
        st = os.stat(path)  # follows a symlink: the file at its end is checked
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror} ({what})") from None
    _check_stat(st, path, what, limit)
    return path


def read_bytes(path: str | Path, what: str, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (see the module docstring)."""
    path = check_file(path, what, limit)  # stat first: a device or FIFO is never opened
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror} ({what})") from None
    try:
        _check_stat(os.fstat(fd), path, what, limit)  # the file opened, in case the path changed since
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror} ({what})") from None
    finally:
        os.close(fd)
    if left <= 0:
        raise UsageError(f"{path} grew past the {limit:,} bytes this tool reads for a {what} while it was read")
    return b"".join(chunks)


def decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"{where} is not UTF-8 text (byte {e.start:,} is {data[e.start]:#04x})") from None


def read_text(path: str | Path, what: str, limit: int) -> str:
    return decode(read_bytes(path, what, limit), str(path))


class JsonSyntaxError(UsageError):
    """Text that is not JSON at all (as a line torn by a kill), apart from JSON too deep or with huge numbers."""


class _Bad(Exception):
    """Raised inside a parser's hooks; becomes a UsageError naming the file."""


def _number_text(s: str) -> None:
    if len(s) > L.MAX_NUMBER_CHARS:
        raise _Bad(f"a number of {len(s):,} characters ({short(s, 24)}), more than {L.MAX_NUMBER_CHARS}")


def _int(s: str) -> int:
    _number_text(s)
    return int(s)


def _float(s: str) -> float:
    _number_text(s)
    v = float(s)
    if not math.isfinite(v):
        raise _Bad(f"the number {short(s, 24)} is too large for a float")
    return v


def check_depth(value: Any, where: str, limit: int = L.MAX_JSON_DEPTH) -> Any:
    """``value`` if its lists and dicts nest at most ``limit`` deep (checked without recursion)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if depth > limit:
            raise UsageError(f"{where}: nested more than {limit} deep; is it the right file?")
        kids = v.values() if isinstance(v, dict) else v
        stack.extend((k, depth + 1) for k in kids if isinstance(k, dict | list))
    return value


def loads_json(text: str, where: str) -> Any:
    """JSON with bounded nesting and numbers; any problem is one UsageError line naming ``where``."""
    try:
        value = json.loads(text, parse_int=_int, parse_float=_float)
    except json.JSONDecodeError as e:
        raise JsonSyntaxError(f"{where}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except RecursionError:
        raise UsageError(f"{where}: nested more than {L.MAX_JSON_DEPTH} deep; is it the right file?") from None
    except _Bad as e:
        raise UsageError(f"{where}: {e}") from None
    return check_depth(value, where) if isinstance(value, dict | list) else value


def read_json(path: str | Path, what: str, limit: int) -> Any:
    return loads_json(read_text(path, what, limit), str(path))


def iter_lines(path: str | Path, what: str, limit: int, line_limit: int) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, bytes without the newline, whether the newline ended it) of a regular file of at most
    ``limit`` bytes, reading at most that many; a line longer than ``line_limit`` is one UsageError line."""
    path = check_file(path, what, limit)
    try:
        f = open(path, "rb", opener=lambda p, fl: os.open(p, fl | getattr(os, "O_NONBLOCK", 0)))
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror} ({what})") from None
    with f:
        _check_stat(os.fstat(f.fileno()), path, what, limit)
        left, number = limit, 0
        while left > 0:
            line = f.readline(min(line_limit + 1, left))
            if not line:
                return
            number += 1
            left -= len(line)
            ended = line.endswith(b"\n")
            if not ended and len(line) > line_limit:
                raise UsageError(f"{path}: line {number:,} is longer than the {line_limit:,} bytes of a {what}'s line")
            yield number, line.rstrip(b"\n"), ended


def load_yaml(text: str, where: str) -> Any:
    """YAML (safe types only) whose aliases expand to at most ``MAX_YAML_NODES`` nodes, counted while the
    document is composed and before anything is built, and nested at most ``MAX_JSON_DEPTH`` deep."""
    import yaml

    class Loader(yaml.SafeLoader):
        sizes: dict[int, int]  # id(node) -> its node count with aliases expanded
        depth = 0

        def compose_node(self, parent, index):
            alias = self.check_event(yaml.AliasEvent)
            self.depth += 1
            if self.depth > L.MAX_JSON_DEPTH:
                raise _Bad(f"nested more than {L.MAX_JSON_DEPTH} deep")
            node = super().compose_node(parent, index)
            self.depth -= 1
            if alias:
                if id(node) not in self.sizes:
                    raise _Bad("an alias refers to the collection it is in (a recursive structure)")
                return node
            if isinstance(node, yaml.MappingNode):
                size = 1 + sum(self.sizes[id(k)] + self.sizes[id(v)] for k, v in node.value)
            elif isinstance(node, yaml.SequenceNode):
                size = 1 + sum(self.sizes[id(v)] for v in node.value)
            else:
                size = 1
            if size > L.MAX_YAML_NODES:
                raise _Bad(f"its aliases expand to more than {L.MAX_YAML_NODES:,} values")
            self.sizes[id(node)] = size
            return node

        def construct_yaml_int(self, node):
            _number_text(node.value)
            return super().construct_yaml_int(node)

        def construct_yaml_float(self, node):
            _number_text(node.value)
            return super().construct_yaml_float(node)

    Loader.add_constructor("tag:yaml.org,2002:int", Loader.construct_yaml_int)
    Loader.add_constructor("tag:yaml.org,2002:float", Loader.construct_yaml_float)
    loader = None
    try:
        loader = Loader(text)  # reads the first characters: may raise already
        loader.sizes = {}
        return loader.get_single_data()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{where}: not valid YAML ({getattr(e, 'problem', None) or 'syntax error'}{at})") from None
    except _Bad as e:
        raise UsageError(f"{where}: {e}") from None
    except RecursionError:
        raise UsageError(f"{where}: nested more than {L.MAX_JSON_DEPTH} deep") from None
    except (ValueError, TypeError, OverflowError) as e:  # a value of a type it cannot be: !!timestamp 2001-13-45
        raise UsageError(f"{where}: not valid YAML ({short(str(e).splitlines()[0] if str(e) else e)})") from None
    finally:
        if loader is not None:
            loader.dispose()
