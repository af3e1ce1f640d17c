"""File helpers: atomic writes, strict UTF-8 line reading, content hashing.

Every output goes through :func:`atomic_path` / :func:`atomic_dir`: it is written under a
temporary name next to its target (``.NAME.<host>-<pid>.<random>.tmp``) and renamed when
complete, so a crash never leaves a half-written output. Temporaries left by a killed process
(same host, process gone) are removed the next time anything writes that target, and
:func:`remove_stale_temps` clears a whole directory (``--resume`` does). A target that cannot
be written (read-only directory, a directory where a file is expected, a file where a
directory is expected) is a one-line :class:`XlingError` naming the path; commands call
:func:`check_writable` before long work starts so the error comes first, not last.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xling.errors import XlingError

_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<host>[0-9a-f]{6})-(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temps(directory: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Delete the temporaries of killed writers in ``directory`` (only those of ``name`` when
    given): written on this host by a process that no longer runs. Returns what was removed."""
    directory = Path(directory)
    removed: list[Path] = []
    try:
        entries = list(directory.iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _TEMP.match(p.name)
        if not m or (name is not None and m["name"] != name) or m["host"] != _HOST:
            continue
        if int(m["pid"]) == os.getpid() or _pid_alive(int(m["pid"])):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def _reason(e: OSError) -> str:
    return {
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EROFS: "read-only file system",
        errno.EISDIR: "is a directory",
        errno.ENOTDIR: "a parent is not a directory",
        errno.EEXIST: "exists",
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.ENAMETOOLONG: "file name too long",
    }.get(e.errno, (e.strerror or str(e)).lower())


def check_writable(path: str | os.PathLike, kind: str = "file", what: str = "output") -> Path:
    """Fail early, with one line naming ``path``, when an output ``kind`` ("file" or "dir")
    cannot be created or replaced there; nothing is written."""
    path = Path(path)
    if kind == "file" and path.is_dir():
        raise XlingError(f"{path}: is a directory; the {what} is a file (give a file name)")
    if kind == "dir" and path.exists() and not path.is_dir():
        raise XlingError(f"{path}: exists and is not a directory; the {what} is a directory")
    parent = path.parent
    while not parent.exists():
        if parent.is_symlink():  # dangling link
            raise XlingError(f"{path}: cannot write the {what} ({parent} is a broken link)")
        parent = parent.parent
    if not parent.is_dir():
        raise XlingError(f"{path}: cannot write the {what} ({parent} is not a directory)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise XlingError(f"{path}: cannot write the {what} ({parent}: permission denied)")
    return path


@contextlib.contextmanager
def _os_errors(path: Path, tmp: Path | None = None) -> Iterator[None]:
    """OSErrors about ``path`` (or its temporary) as one-line XlingErrors naming ``path``."""
    try:
        yield
    except OSError as e:
        names = {str(path), str(path.parent)} | ({str(tmp)} if tmp else set())
        if e.filename is None:
            if e.errno not in _WRITE_ERRNOS:  # not about writing this output
                raise
        elif str(e.filename) not in names and not str(path).startswith(str(e.filename)):
            raise
        raise XlingError(f"{path}: cannot write ({_reason(e)})") from None


def _prepare(path: Path, kind: str) -> None:
    check_writable(path, kind)
    with _os_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, path.name)


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{_HOST}-{os.getpid()}."


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched, so
    a crash never leaves a half-written output behind.
    """
    path = Path(path)
    _prepare(path, "file")
    with _os_errors(path):
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600; outputs get normal modes
    try:
        with _os_errors(path, tmp_path):
            yield tmp_path
            os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces ``path`` as a whole."""
    path = Path(path)
    _prepare(path, "dir")
    with _os_errors(path):
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        with _os_errors(path, tmp):
            yield tmp
            if path.exists():
                old = path.with_name(f".{path.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_lines_atomic(path: str | os.PathLike, lines: list[str]) -> None:
    write_text_atomic(path, "".join(line + "\n" for line in lines))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def nul_byte_error(path: str | os.PathLike, line_no: int) -> XlingError:
    """The one-line error for a NUL byte in a text input (binary data, or UTF-16 read as UTF-8)."""
    return XlingError(f"{path}:{line_no}: NUL byte (a binary or UTF-16 file? xling reads UTF-8 text)")


def read_lines(path: str | os.PathLike, *, allow_empty: bool = False) -> list[str]:
    """Read a UTF-8 text file, one item per line (newline stripped).

    Raises XlingError naming the file and line for invalid UTF-8, a NUL byte and, unless
    ``allow_empty``, for empty lines. CRLF line endings read as LF (the ``\r`` is dropped).
    """
    path = Path(path)
    if not path.is_file():
        raise XlingError(f"{path}: no such file")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line_no = data[: e.start].count(b"\n") + 1
        raise XlingError(f"{path}:{line_no}: invalid UTF-8 (byte offset {e.start})") from None
    if "\0" in text:  # binary data, or UTF-16 read as UTF-8: never text a model should see
        line_no = text[: text.index("\0")].count("\n") + 1
        raise nul_byte_error(path, line_no)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [line.rstrip("\r") for line in lines]
    if not allow_empty:
        for i, line in enumerate(lines, 1):
            if not line.strip():
                raise XlingError(f"{path}:{i}: empty line (remove it or pass allow_empty)")
    return lines


def read_json(path: str | os.PathLike, missing: str = "no such file") -> Any:
    """Parse a JSON file; a missing, non-UTF-8 or malformed file is a one-line
    XlingError naming it (``missing`` says what a missing file means)."""
    path = Path(path)
    if not path.is_file():
        raise XlingError(f"{path}: {missing}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise XlingError(f"{path}: invalid UTF-8") from None
    except json.JSONDecodeError as e:
        raise XlingError(f"{path}: invalid JSON ({e.msg} at line {e.lineno})") from None


def sha256_file(path: str | os.PathLike, h: "hashlib._Hash | None" = None) -> str:
    h = h or hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_files(paths: list[str | os.PathLike]) -> str:
    """One hash over several files (names and contents), order-independent."""
    h = hashlib.sha256()
    for p in sorted(Path(p) for p in paths):
        h.update(p.name.encode() + b"\0")
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()
