"""Output directories: written whole or not at all, and never over what we did not write.

Every output directory carries ``MARKER``, a small JSON file naming the tool, the command and the
files that command wrote there. A directory is replaced (``wafer compile``, ``wafer bench``) or
added to (a ``wafer sweep`` that resumes) only if it does not exist, is empty, or holds a marker of
the same command and nothing but the files that marker lists; anything else is refused with one
line (UsageError, exit 2) naming the path and the first foreign file, before any work starts
(``check_output``) and again just before the write. A directory written by an older waferscale,
which wrote no marker, is refused the same way: the user removes it or picks another one.

``-o`` may be a symbolic link to a directory: the directory it points to is the output (checked
and replaced as above; the link stays). The current directory, or one that holds it, cannot be
replaced as a whole (the shell would be left in a deleted directory), so ``compile`` and ``bench``
refuse it; a sweep, which adds to its directory in place, accepts it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import UsageError

MARKER = ".waferscale-output"
TOOL = "waferscale"
_MARKER_MAX_BYTES = 1 << 20  # ours hold a few dozen names; a bigger one is not ours


def marker_text(command: str, files: Iterable[str]) -> str:
    """The marker's content: the same command and files give the same bytes."""
    return json.dumps({"tool": TOOL, "command": command, "files": sorted(set(files))}, indent=1) + "\n"


def read_marker(d: Path) -> dict | None:
    """The marker of directory ``d`` if it holds one we wrote (a regular file of our shape), else None."""
    m = d / MARKER
    try:
        if not m.is_file() or m.is_symlink() or m.stat().st_size > _MARKER_MAX_BYTES:
            return None
        info = json.loads(m.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    if (not isinstance(info, dict) or info.get("tool") != TOOL or not isinstance(info.get("command"), str)
            or not isinstance(info.get("files"), list) or not all(isinstance(f, str) for f in info["files"])):
        return None
    return info


def _entries(d: Path, prefix: str = "") -> Iterable[tuple[str, Path]]:
    """Every entry under ``d`` (relative name, path), sorted, depth first; links are not followed."""
    for p in sorted(d.iterdir()):
        rel = prefix + p.name
        yield rel, p
        if p.is_dir() and not p.is_symlink():
            yield from _entries(p, rel + "/")


def _check_ours(d: Path, command: str, shown: Path) -> None:
    """Refuse a non-empty directory ``d`` unless it holds only what an earlier ``command`` wrote."""
    try:
        _check_listing(d, command, shown)
    except OSError as e:
        raise UsageError(f"cannot read {shown}: {e.strerror}; give -o a directory you can read and write") from None


def _check_listing(d: Path, command: str, shown: Path) -> None:
    first = next(iter(sorted(d.iterdir())), None)
    if first is None:
        return
    info = read_marker(d)
    if info is None:
        raise UsageError(f"{shown} is not empty and was not written by waferscale (it holds no {MARKER}; first "
                         f"file: {first.name}), so it is not replaced: remove it yourself or give -o another "
                         "directory (an output of an older waferscale, which wrote no marker, is refused too)")
    if info["command"] != command:
        raise UsageError(f"{shown} holds the output of `wafer {info['command']}`, not of `wafer {command}`: give -o "
                         "another directory")
    files = set(info["files"])
    folders = {"/".join(f.split("/")[:i]) for f in files for i in range(1, f.count("/") + 1)}
    for rel, p in _entries(d):
        ours = (rel in folders) if (p.is_dir() and not p.is_symlink()) else (
            (rel in files or rel == MARKER) and p.is_file() and not p.is_symlink())
        if not ours:
            raise UsageError(f"{shown} holds {rel}, which `wafer {command}` did not write there, so the directory "
                             "is not replaced: move that file out or give -o another directory")


def _writable(d: Path) -> bool:
    return os.access(d, os.W_OK | os.X_OK)


def check_output(out: str | Path, command: str, *, replace: bool = True) -> Path:
    """Refuse, before any work, an ``-o`` that ``command`` could not write or must not replace: a
    file, a link to nothing, a directory that holds what we did not write, the current directory
    (``replace``), a parent that is not a writable directory. Returns the real directory to write."""
    shown = Path(out)
    if shown.is_symlink() and not shown.is_dir():
        raise UsageError(f"{shown} is a symbolic link to {os.readlink(shown)}, which is not a directory: give -o a "
                         "new or empty directory")
    real = Path(os.path.realpath(shown))
    if real.exists() or real.is_symlink():
        if not real.is_dir():
            raise UsageError(f"{shown} exists and is not a directory: give -o a new or empty directory")
        cwd = Path(os.path.realpath(os.getcwd()))
        if replace and (real == cwd or real in cwd.parents):
            raise UsageError(f"{shown} is the current directory or holds it, which cannot be replaced as a whole: "
                             "give -o a directory of its own (e.g. -o out)")
        _check_ours(real, command, shown)
    if real.parent == real:
        raise UsageError(f"{shown} is the root directory: give -o a directory of its own")
    above = real.parent
    while not above.exists():
        above = above.parent
    if not above.is_dir():
        raise UsageError(f"cannot make {shown}: {above} is not a directory")
    if not _writable(above) or (real.is_dir() and not _writable(real)):
        raise UsageError(f"cannot write {shown}: {above if not _writable(above) else real} is not writable; give -o "
                         "a directory you can write")
    return real


def _umask() -> int:
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def _mkdtemp(parent: Path, prefix: str) -> Path:
    """A temporary folder with the mode a plain mkdir gives (mkdtemp's is 0700)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where the
    system or its file system cannot."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        at_fdcwd, rename_exchange = -100, 2
        return libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0
    except (OSError, AttributeError):
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(p: Path) -> None:
    if p.is_symlink() or p.is_file():
        p.unlink(missing_ok=True)
    else:
        shutil.rmtree(p, ignore_errors=True)


def _clean_stale(parent: Path, name: str) -> None:
    """Remove the temporary folders that killed runs left beside ``name`` (their process is gone)."""
    for old in parent.glob(f".{name}.*"):
        parts = old.name[len(name) + 2:].split("-")
        if len(parts) >= 2 and parts[0] in ("new", "old") and parts[1].isdigit() and not _alive(int(parts[1])):
            _remove(old)


def _put(folder: Path, batch: dict[str, str | bytes]) -> None:
    for name, content in batch.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        mode = "wb" if isinstance(content, bytes) else "w"
        with open(folder / name, mode) as f:
            f.write(content)


def _stage(folder: Path, files: dict[str, str | bytes], last) -> dict[str, str | bytes]:
    """Write ``files`` into ``folder``, then what ``last()`` makes (if given); returns them all."""
    files = dict(files)
    _put(folder, files)
    if last is not None:
        more = last()
        _put(folder, more)
        files.update(more)
    return files


def replace_dir(out_dir: Path, files: dict[str, str | bytes], *, command: str,
                last: Callable[[], dict[str, str | bytes]] | None = None) -> list[Path]:
    """Make ``out_dir`` hold exactly ``files`` and the marker of ``command``, replacing what it held
    as a whole: everything is written to a sibling temporary folder first, which then takes the
    directory's place in one atomic exchange, so a reader (or a kill) sees the old directory or the
    new one, complete, never a mix, and no file of an earlier run survives. Where the system cannot
    exchange two paths atomically the old directory is moved aside first (a moment with neither).
    An existing ``out_dir`` must be one ``check_output`` accepts. ``last`` makes more files once
    the others are written."""
    out_dir = Path(out_dir)
    real = check_output(out_dir, command)
    parent = real.parent
    parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(parent, real.name)
    tmp = _mkdtemp(parent, f".{real.name}.new-{os.getpid()}-")
    aside = None
    try:
        files = _stage(tmp, files, last)
        _put(tmp, {MARKER: marker_text(command, files)})
        check_output(out_dir, command)  # again: the directory may have changed while we worked
        if not real.exists():
            os.rename(tmp, real)
        elif _exchange(tmp, real):  # tmp now holds the old directory: check it once more, as it left
            try:
                _check_ours(tmp, command, out_dir)
            except UsageError:
                _exchange(tmp, real)  # a file arrived at the last moment: put the old directory back
                raise
        else:
            aside = _mkdtemp(parent, f".{real.name}.old-{os.getpid()}-")
            os.rename(real, aside / "d")
            os.rename(tmp, real)
    finally:
        _remove(tmp)
        if aside is not None:
            _remove(aside)
    return [out_dir / name for name in files]


def open_dir(out_dir: Path, command: str, names: Iterable[str]) -> Path:
    """Make ``out_dir`` a directory that ``command`` adds to in place (a sweep that resumes): new or
    empty, it gets a marker listing ``names``, every file the command may write there; otherwise
    it must be an earlier output of the same command (``check_output``). Returns the real path."""
    out_dir = Path(out_dir)
    real = check_output(out_dir, command, replace=False)
    real.mkdir(parents=True, exist_ok=True)
    info = read_marker(real)
    if info is None or not set(names) <= set(info["files"]):
        write_dir(real, {MARKER: marker_text(command, set(names) | set(info["files"] if info else ()))})
    return real


def write_dir(out_dir: Path, files: dict[str, str | bytes]) -> list[Path]:
    """Add files to a directory, every file or none (``wafer opt -o``; a whole output directory
    is ``replace_dir``'s): all go to a temporary folder beside out_dir first, then each is
    moved into place with an atomic rename. Names may hold a subfolder ("ir/01-canonicalize.ir").
    In an output directory (one with a marker) the marker is updated to list them too. Returns the
    paths of ``files``."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir} exists and is not a directory")
    real = Path(os.path.realpath(out_dir))
    names = list(files)
    for name in names:
        if (real / name).is_dir() and not (real / name).is_symlink():
            raise UsageError(f"{out_dir / name} is a directory: give the name of a file to write")
    info = read_marker(real)
    if info is not None and MARKER not in files:  # an output directory: its marker lists these files too
        files = {**files, MARKER: marker_text(info["command"], [*info["files"], *files])}
    real.parent.mkdir(parents=True, exist_ok=True)
    tmp = _mkdtemp(real.parent, f".{real.name}.new-{os.getpid()}-")
    try:
        files = _stage(tmp, files, None)
        real.mkdir(exist_ok=True)
        for name in files:
            (real / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / name, real / name)
    finally:
        _remove(tmp)
    return [out_dir / name for name in names]
