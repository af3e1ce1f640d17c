"""``checksums.json``: the sha256 of the files of a saved directory, and their verification.

A model directory (:mod:`xling.models.io`) records its weights, its config.json and its
vocabulary files; loading checks every file the record lists, so a file edited, replaced,
truncated or corrupted since the save is a one-line XlingError naming it. Only listed files
are checked: directories written before a file was covered still load.

A module that saves further files into model directories (a vocabulary backend's own files) names
them once with :func:`cover_files`; every record written afterwards covers them when present.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from xling.errors import XlingError
from xling.utils.io import read_json, sha256_file, write_json_atomic

CHECKSUMS_FILE = "checksums.json"

_COVERED: list[str] = []  # file names every record covers as well (cover_files)


def cover_files(*names: str) -> None:
    """Have every record written from now on cover ``names`` too (when present in the directory):
    the files a vocabulary backend saves next to a model (e.g. ``bpe.codes``)."""
    _COVERED.extend(n for n in names if n not in _COVERED)


def record_checksums(dir: str | os.PathLike, names: Iterable[str]) -> dict[str, str]:
    """Write ``dir/checksums.json`` with the sha256 of each of ``names`` (and of the files named
    with :func:`cover_files`) present in ``dir``."""
    dir = Path(dir)
    names = list(dict.fromkeys([*names, *_COVERED]))
    sums = {name: sha256_file(dir / name) for name in names if (dir / name).is_file()}
    write_json_atomic(dir / CHECKSUMS_FILE, sums)
    return sums


def read_checksums(dir: str | os.PathLike, required: bool = False) -> dict[str, str] | None:
    """The record of ``dir`` ({file name: sha256}); None when there is none and it is not ``required``."""
    path = Path(dir) / CHECKSUMS_FILE
    if not required and not path.exists():
        return None
    sums = read_json(path, missing="missing (not a complete model directory)")
    if not isinstance(sums, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in sums.items()):
        raise XlingError(f"{path}: not a checksum record (expected {{file name: sha256}})")
    return sums


def verify_checksums(dir: str | os.PathLike, names: Iterable[str] | None = None,
                     sums: dict[str, str] | None = None) -> None:
    """Check each of ``names`` (default: every file) that the record of ``dir`` lists
    against its recorded sha256 (``sums``: the record, when already read)."""
    dir = Path(dir)
    sums = sums if sums is not None else read_checksums(dir)
    if not sums:
        return
    for name in sums if names is None else [n for n in names if n in sums]:
        path = dir / name
        if not path.is_file():
            raise XlingError(f"{path}: missing (listed in {CHECKSUMS_FILE}; not a complete model directory)")
        if sha256_file(path) != sums[name]:
            raise XlingError(f"{path}: changed since the model was saved (sha256 checksum mismatch with "
                             f"{CHECKSUMS_FILE}: edited, truncated or corrupt); restore the saved file or save "
                             f"the model again")
