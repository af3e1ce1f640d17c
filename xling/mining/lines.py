"""Text files of any size as line offsets and line hashes (16 bytes a line, not the text).

Mining needs the text only to drop empty and duplicate lines and to write the pairs
found, so :class:`LineFile` scans the file once (strict UTF-8: an invalid byte is an
XlingError naming the file and line, in the format of ``xling.utils.io.read_lines``)
and reads single lines back by offset when writing output.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from xling.errors import XlingError
from xling.utils.io import nul_byte_error


def first_occurrences(hashes: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Sorted rows of the first occurrence of every distinct hash among rows with ``keep``."""
    candidates = np.flatnonzero(keep)
    _, first = np.unique(hashes[candidates], return_index=True)
    return np.sort(candidates[first])


def text_rows(texts: list[str]) -> np.ndarray:
    """Rows of an in-memory list to mine: first occurrence of each non-empty text."""
    hashes = np.fromiter((hash(t) for t in texts), dtype=np.int64, count=len(texts))
    keep = np.fromiter((bool(t.strip()) for t in texts), dtype=bool, count=len(texts))
    return first_occurrences(hashes, keep)


class LineFile:
    """Offsets, hashes and emptiness of every line of a UTF-8 file (newline and a final
    ``\\r`` stripped, like ``read_lines``)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise XlingError(f"{self.path}: no such file")
        offsets, hashes, nonempty = [], [], []
        pos = 0
        with open(self.path, "rb") as f:
            for line_no, raw in enumerate(f, 1):
                line = raw.rstrip(b"\n").rstrip(b"\r")
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise XlingError(f"{self.path}:{line_no}: invalid UTF-8 (byte offset {pos + e.start})") from None
                if b"\0" in line:  # as read_lines: binary data or UTF-16 is not text
                    raise nul_byte_error(self.path, line_no)
                offsets.append(pos)
                hashes.append(hash(line))
                nonempty.append(bool(text.strip()))
                pos += len(raw)
        self.offsets = np.asarray(offsets, dtype=np.int64)  # (n,)
        self.hashes = np.asarray(hashes, dtype=np.int64)  # (n,)
        self.nonempty = np.asarray(nonempty, dtype=bool)  # (n,)
        self._f = None

    def __len__(self) -> int:
        return len(self.offsets)

    def unique_rows(self) -> np.ndarray:
        """Sorted rows to mine: the first occurrence of each distinct non-empty line."""
        return first_occurrences(self.hashes, self.nonempty)

    def line(self, i: int) -> str:
        """Line ``i`` (0-based), read back by offset."""
        if self._f is None:
            self._f = open(self.path, "rb")
        self._f.seek(int(self.offsets[i]))
        return self._f.readline().rstrip(b"\n").rstrip(b"\r").decode("utf-8")

    def chunks(self, size: int) -> Iterator[list[str]]:
        """The lines in order, ``size`` at a time."""
        with open(self.path, encoding="utf-8", newline="\n") as f:
            chunk: list[str] = []
            for raw in f:
                chunk.append(raw.rstrip("\n").rstrip("\r"))
                if len(chunk) == size:
                    yield chunk
                    chunk = []
            if chunk:
                yield chunk

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self) -> "LineFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
