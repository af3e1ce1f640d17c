"""File helpers: atomic writes, strict UTF-8 line reading, content hashing."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xling.errors import XlingError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched, so
    a crash never leaves a half-written output behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600; outputs get normal modes
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces ``path`` as a whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
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


def read_lines(path: str | os.PathLike, *, allow_empty: bool = False) -> list[str]:
    """Read a UTF-8 text file, one item per line (newline stripped).

    Raises XlingError naming the file and line for invalid UTF-8 and, unless
    ``allow_empty``, for empty lines.
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
