"""Strict readers for user text data, and the Moses corpus layout.

Every reader returns plain Python lists and raises :class:`XlingError` naming the
file and line (or row) of the first problem: invalid UTF-8, an empty line, a
malformed TSV row, bad JSON, a missing field. Nothing is silently skipped.

The corpus layout (see ARCHITECTURE.md, "Corpus layout") is one directory with
``{split}.{lang}``, ``{split}.{lang}.ids``, ``{split}.{l1}-{l2}.{l1|l2|ids}``
(``l1 < l2``) and ``manifest.json``; :func:`write_manifest` completes a manifest
with per-file line counts and one content hash.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from xling.errors import XlingError, unknown
from xling.tokenization.langs import check_lang
from xling.utils.io import read_lines, sha256_files, write_json_atomic, write_lines_atomic

SPLITS = ("train", "valid", "test")
MANIFEST = "manifest.json"


# ----------------------------------------------------------------------------- readers


def read_text(path: str | os.PathLike) -> list[str]:
    """One sentence per line; invalid UTF-8 or an empty line is an error (file:line)."""
    return read_lines(path)


def read_parallel(src_path: str | os.PathLike, tgt_path: str | os.PathLike) -> list[tuple[str, str]]:
    """Two line-aligned text files as ``(src, tgt)`` pairs; their lengths must match."""
    src, tgt = read_text(src_path), read_text(tgt_path)
    if len(src) != len(tgt):
        raise XlingError(
            f"parallel files differ in length: {src_path} has {len(src)} lines, {tgt_path} has {len(tgt)}"
        )
    return list(zip(src, tgt))


def _pick(record: dict[str, Any], fields: list[str] | None, where: str) -> dict[str, Any]:
    """Keep ``fields`` of ``record``; a missing or empty text field is an error at ``where``."""
    if fields is None:
        return record
    out = {}
    for name in fields:
        if name not in record:
            raise XlingError(f"{where}: missing field {name!r} (has: {', '.join(map(str, record)) or 'none'})")
        value = record[name]
        if value is None or (isinstance(value, str) and not value.strip()):
            raise XlingError(f"{where}: field {name!r} is empty")
        out[name] = value
    return out


def read_tsv(path: str | os.PathLike, columns: list[str] | None = None, has_header: bool = True) -> list[dict]:
    """Tab-separated rows as dicts.

    With ``has_header`` the first line names the columns and ``columns`` selects
    some of them (``None``: all). Without a header ``columns`` names the
    positional columns and is required. A row with the wrong number of fields, or
    an empty selected value, is an error naming the row's line number.
    """
    lines = read_lines(path)
    if has_header:
        if not lines:
            raise XlingError(f"{path}: empty file, expected a header line")
        header, body, first = lines[0].split("\t"), lines[1:], 2
        for name in columns or []:
            if name not in header:
                raise unknown(f"column in {path}", name, header)
    else:
        if not columns:
            raise XlingError(f"{path}: columns must be given for a TSV file without header")
        header, body, first = list(columns), lines, 1
    rows = []
    for line_no, line in enumerate(body, first):
        values = line.split("\t")
        if len(values) != len(header):
            raise XlingError(f"{path}:{line_no}: expected {len(header)} tab-separated fields, got {len(values)}")
        rows.append(_pick(dict(zip(header, values)), columns, f"{path}:{line_no}"))
    return rows


def read_jsonl(path: str | os.PathLike, fields: list[str] | None = None) -> list[dict]:
    """One JSON object per line; bad JSON, a non-object or a missing field names the line."""
    rows = []
    for line_no, line in enumerate(read_lines(path), 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise XlingError(f"{path}:{line_no}: invalid JSON ({e.msg})") from None
        if not isinstance(record, dict):
            raise XlingError(f"{path}:{line_no}: expected a JSON object, got {type(record).__name__}")
        rows.append(_pick(record, fields, f"{path}:{line_no}"))
    return rows


_HF_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}


def read_hf(
    name_or_path: str,
    split: str = "train",
    fields: list[str] | None = None,
    data_files: Any = None,
    config: str | None = None,
) -> list[dict]:
    """Rows of a Hugging Face ``datasets`` split.

    A local ``.jsonl/.json/.csv/.parquet/.txt`` file is loaded with the matching
    builder (works offline, its only split is ``train``); anything else is passed
    to ``datasets.load_dataset`` (a local dataset directory, or a hub name when
    online). Failures become one-line errors.
    """
    import datasets  # slow import: only when used

    path = Path(name_or_path)
    builder = _HF_BUILDERS.get(path.suffix.lower()) if path.is_file() else None
    try:
        if builder:
            ds = datasets.load_dataset(builder, data_files={"train": str(path)}, split=split)
        else:
            ds = datasets.load_dataset(name_or_path, config, data_files=data_files, split=split)
    except Exception as e:  # datasets raises many types; all mean "cannot load this"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise XlingError(f"{name_or_path}: cannot load split {split!r} ({first})") from None
    for name in fields or []:
        if name not in ds.column_names:
            raise unknown(f"field in {name_or_path}", name, ds.column_names)
    return [_pick(dict(row), fields, f"{name_or_path}[{split}] row {i}") for i, row in enumerate(ds, 1)]


# ----------------------------------------------------------------------------- layout


def pair_name(l1: str, l2: str) -> str:
    """The canonical name of a language pair: codes in alphabetical order (``de-en``)."""
    check_lang(l1, "language pair"), check_lang(l2, "language pair")
    if l1 == l2:
        raise XlingError(f"language pair {l1}-{l2}: the two languages must differ")
    a, b = sorted((l1, l2))
    return f"{a}-{b}"


def mono_file(corpus_dir: str | os.PathLike, split: str, lang: str, suffix: str = "") -> Path:
    """``{split}.{lang}`` (``suffix`` ``.ids`` / ``.genre`` for its companions)."""
    check_lang(lang, f"{corpus_dir}: language")  # a file name: never a path from user text
    return Path(corpus_dir) / f"{split}.{lang}{suffix}"


def pair_file(corpus_dir: str | os.PathLike, split: str, l1: str, l2: str, side: str) -> Path:
    """``{split}.{a}-{b}.{side}`` with ``a < b``; ``side`` is a language or ``ids``."""
    return Path(corpus_dir) / f"{split}.{pair_name(l1, l2)}.{side}"


def write_mono(
    corpus_dir: str | os.PathLike, split: str, lang: str, lines: list[str], ids: list[str], genres: list[str] | None = None
) -> None:
    """Write ``{split}.{lang}`` with its ``.ids`` (and ``.genre`` when given), all aligned."""
    if len(ids) != len(lines) or (genres is not None and len(genres) != len(lines)):
        raise ValueError("lines, ids and genres must have the same length")
    write_lines_atomic(mono_file(corpus_dir, split, lang), lines)
    write_lines_atomic(mono_file(corpus_dir, split, lang, ".ids"), ids)
    if genres is not None:
        write_lines_atomic(mono_file(corpus_dir, split, lang, ".genre"), genres)


def write_pair(
    corpus_dir: str | os.PathLike, split: str, l1: str, l2: str, lines1: list[str], lines2: list[str], ids: list[str]
) -> None:
    """Write the aligned pair files (given in any language order) and their ids."""
    if not len(lines1) == len(lines2) == len(ids):
        raise ValueError("both sides and ids must have the same length")
    write_lines_atomic(pair_file(corpus_dir, split, l1, l2, l1), lines1)
    write_lines_atomic(pair_file(corpus_dir, split, l1, l2, l2), lines2)
    write_lines_atomic(pair_file(corpus_dir, split, l1, l2, "ids"), ids)


def _missing(corpus_dir: str | os.PathLike, what: str) -> XlingError:
    manifest = Path(corpus_dir) / MANIFEST
    if not Path(corpus_dir).is_dir():
        return XlingError(f"{corpus_dir}: no such corpus directory")
    have = ""
    if manifest.is_file():
        try:
            m = json.loads(manifest.read_text(encoding="utf-8"))
            have = f" (languages: {', '.join(m.get('languages', []))}; pairs: {', '.join(m.get('pairs', [])) or 'none'})"
        except (json.JSONDecodeError, UnicodeDecodeError):
            have = " (its manifest.json is unreadable)"
    return XlingError(f"{corpus_dir}: no {what} in this corpus{have}")


def load_corpus_split(corpus_dir: str | os.PathLike, split: str, lang: str) -> list[str]:
    """The sentences of ``{split}.{lang}``; a missing file is an error listing what exists."""
    path = mono_file(corpus_dir, split, lang)
    if not path.is_file():
        raise _missing(corpus_dir, f"{split} data for {lang!r} ({path.name})")
    return read_text(path)


def load_parallel_split(corpus_dir: str | os.PathLike, split: str, l1: str, l2: str) -> tuple[list[str], list[str]]:
    """Aligned sentences of the pair, returned in the asked order (``en, de`` reads ``de-en``)."""
    p1, p2 = pair_file(corpus_dir, split, l1, l2, l1), pair_file(corpus_dir, split, l1, l2, l2)
    if not (p1.is_file() and p2.is_file()):
        raise _missing(corpus_dir, f"{split} data for pair {pair_name(l1, l2)}")
    pairs = read_parallel(p1, p2)
    return [a for a, _ in pairs], [b for _, b in pairs]


def data_files(corpus_dir: str | os.PathLike) -> list[Path]:
    """Every file of a corpus directory except the manifest (and hidden temp files)."""
    return sorted(p for p in Path(corpus_dir).iterdir() if p.is_file() and p.name != MANIFEST and not p.name.startswith("."))


def write_manifest(corpus_dir: str | os.PathLike, manifest: dict[str, Any]) -> dict[str, Any]:
    """Add ``counts`` (lines per data file) and ``sha256`` (over all data files) and write it.

    The hash covers names and contents only, so identical builds hash identically.
    """
    files = data_files(corpus_dir)
    counts = {}
    for p in files:
        with open(p, "rb") as f:
            counts[p.name] = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    manifest = {**manifest, "counts": counts, "sha256": sha256_files(files)}
    write_json_atomic(Path(corpus_dir) / MANIFEST, manifest)
    return manifest
