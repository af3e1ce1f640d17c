"""Debian package descriptions: summarization pairs and en-xx translations (DDTP).

Source: the translated-description indexes apt keeps under ``/var/lib/apt/lists``
after ``apt-get update -o Acquire::Languages="en,de,fr,zh_CN"``: files named
``*_i18n_Translation-<lang>`` (``zh_CN`` for xling's ``zh``; apt stores it
URL-quoted as ``zh%5fCN``), compressed ``.lz4`` (or ``.gz``, ``.xz``, ``.bz2``,
``.zst``, or not at all). Every suite found (``bookworm``, ``bookworm-updates``,
``bookworm-security`` ...) is read. ``.gz/.xz/.bz2`` are opened with the standard
library; ``.lz4/.zst`` with ``/usr/lib/apt/apt-helper cat-file`` (present
wherever apt is), or the ``lz4`` Python package if installed.

An entry::

    Package: 0ad-data
    Description-md5: 26581e685027d5ae84824362a4ba59ee
    Description-de: Echtzeit-Strategiespiel ... (Datendateien)      <- synopsis
     0 A.D. ist ein freies, quelloffenes ...                          <- long description
     .                                                                <- paragraph break
     Dieses Paket enthält ...

The md5 is that of the English description, shared by its translations: it
deduplicates (one description serves many packages and suites) and aligns
languages. Per language, each md5 keeps one entry (the one of the
alphabetically first package; a different text under the same md5 is counted as
a conflict). The long description's lines are joined into one line (paragraph
breaks become spaces, whitespace collapsed).

Filters, per language: no synopsis or no long description (``empty``); long
description under ``min_words`` words (``short``) or over ``max_words`` (``long``).
Words are :func:`xling.tokenization.words.unicode_tokens` (Han and kana
characters count one each, punctuation not at all).

Split: ``int(sha256(md5), 16) % 100``: < 5 test, 5-9 valid, else train. A
description has the same split in every language and pair, so no test
description (or its translation) reaches train.

Output (Moses layout, ARCHITECTURE.md): ``{split}.{lang}`` long descriptions (for
pretraining) with ``.ids`` (md5); ``.desc`` / ``.syn`` the same descriptions and
their synopses (summarization pairs, aligned with ``.ids``); pairs
``{split}.{l1}-{l2}.{l1|l2|ids}``: for each shared md5 two lines, the long
description (id ``<md5>.desc``) then the synopsis (id ``<md5>.syn``).
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
import re
import subprocess
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote

from xling.data.readers import SPLITS, mono_file, write_manifest, write_mono, write_pair
from xling.errors import XlingError
from xling.tokenization.langs import check_lang
from xling.tokenization.words import unicode_tokens
from xling.utils.io import atomic_dir, sha256_file, write_lines_atomic

DEFAULT_LISTS = "/var/lib/apt/lists"
APT_HELPER = "/usr/lib/apt/apt-helper"
APT_SUFFIX = {"zh": "zh_CN"}  # xling code -> DDTP language suffix where they differ
_INDEX = re.compile(r"_i18n_Translation-(?P<lang>[A-Za-z]{2,3}(?:_[A-Za-z]{2})?)(?P<ext>\.lz4|\.gz|\.xz|\.bz2|\.zst)?$")
_MD5 = re.compile(r"^[0-9a-f]{32}$")
DEFAULT_MIN_WORDS = 3
DEFAULT_MAX_WORDS = 300
SPLIT_RULE = "int(sha256(Description-md5), 16) % 100: < 5 -> test, 5-9 -> valid, else train"
PARALLEL = "per shared Description-md5 two lines: the long description (id <md5>.desc), then the synopsis (id <md5>.syn)"


class Entry(NamedTuple):
    """One translated description."""

    package: str
    md5: str
    synopsis: str
    description: str  # long description, one line


def apt_command(langs: list[str]) -> str:
    """The apt command that fetches the index files for ``langs`` (English always kept)."""
    suffixes = dict.fromkeys(["en", *(APT_SUFFIX.get(lang, lang) for lang in langs)])
    return f'apt-get update -o Acquire::Languages="{",".join(suffixes)}"'


def split_of_md5(md5: str) -> str:
    """``train``, ``valid`` or ``test`` for a Description-md5 (see the module docstring)."""
    r = int(hashlib.sha256(md5.encode("ascii")).hexdigest(), 16) % 100
    return "test" if r < 5 else "valid" if r < 10 else "train"


def find_index_files(lists_dir: str | os.PathLike, lang: str) -> list[Path]:
    """The ``Translation-<lang>`` index files in ``lists_dir`` (every suite), sorted by name."""
    suffix = APT_SUFFIX.get(lang, lang)
    found = []
    for p in Path(lists_dir).iterdir():
        m = _INDEX.search(unquote(p.name))
        if m and m.group("lang") == suffix and p.is_file():
            found.append(p)
    return sorted(found)


def _apt_helper_cat(path: Path) -> bytes:
    if Path(APT_HELPER).is_file():
        proc = subprocess.run([APT_HELPER, "cat-file", str(path)], capture_output=True)
        if proc.returncode != 0:
            why = (proc.stderr.decode("utf-8", "replace").strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            raise XlingError(f"{path}: cannot decompress ({why})")
        return proc.stdout
    if path.suffix == ".lz4":
        try:
            import lz4.frame
        except ImportError:
            pass
        else:
            try:
                return lz4.frame.decompress(path.read_bytes())
            except RuntimeError as e:
                raise XlingError(f"{path}: cannot decompress ({e})") from None
    raise XlingError(f"{path}: {path.suffix} needs {APT_HELPER} (Debian's apt) or the lz4 Python package")


def read_index(path: str | os.PathLike) -> str:
    """The decompressed text of an index file; corrupt data or invalid UTF-8 is a one-line error."""
    path = Path(path)
    opener = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}.get(path.suffix)
    try:
        if opener:
            with opener(path, "rb") as f:
                data = f.read()
        elif path.suffix in (".lz4", ".zst"):
            data = _apt_helper_cat(path)
        else:
            data = path.read_bytes()
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise XlingError(f"{path}: cannot decompress ({e})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise XlingError(f"{path}: invalid UTF-8 in decompressed line {line}") from None


def join_description(lines: list[str]) -> str:
    """Continuation lines of a long description as one line (`` .`` breaks become spaces)."""
    return " ".join(" ".join(line for line in lines if line.strip() != ".").split())


def parse_index(text: str, source: str = "<text>") -> list[Entry]:
    """The entries of a ``Translation-<lang>`` index (deb822 paragraphs, in file order).

    A continuation line before any field, a line without ``:``, or an entry
    without ``Package``, a 32-hex ``Description-md5`` and a ``Description-<lang>``
    is a one-line error naming ``source`` and the line.
    """
    entries: list[Entry] = []
    fields: dict[str, list[str]] = {}
    current: list[str] | None = None
    start = 1

    def flush() -> None:
        if not fields:
            return
        desc = [k for k in fields if k.startswith("Description-") and k != "Description-md5"]
        md5 = (fields.get("Description-md5") or [""])[0].strip()
        if "Package" not in fields or not _MD5.match(md5) or len(desc) != 1:
            raise XlingError(
                f"{source}:{start}: malformed entry (needs Package, a 32-hex Description-md5, one Description-<lang>)"
            )
        synopsis, *body = fields[desc[0]]
        entries.append(Entry(fields["Package"][0].strip(), md5, " ".join(synopsis.split()), join_description(body)))
        fields.clear()

    lines = text.split("\n")
    for no, line in enumerate(lines, 1):
        if not line.strip(" \t"):  # deb822: a blank (spaces or tabs only) line ends an entry
            flush()
            current = None
            continue
        if line[0] in " \t":
            if current is None:
                raise XlingError(f"{source}:{no}: continuation line outside a field")
            current.append(line)
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise XlingError(f"{source}:{no}: expected 'Field: value', got {line[:40]!r}")
        if not fields:
            start = no
        current = fields[name.strip()] = [value]
    flush()
    return entries


def _word_count(text: str) -> int:
    return len(unicode_tokens(text))


def collect_language(
    files: list[Path], lang: str, min_words: int, max_words: int, progress: bool = False
) -> tuple[dict[str, Entry], dict[str, int]]:
    """Deduplicated, filtered entries ``{md5: Entry}`` of one language, and statistics."""
    from tqdm import tqdm  # heavy imports stay out of CLI start-up (the parser imports this module)

    chosen: dict[str, Entry] = {}
    stats = dict.fromkeys(("entries", "duplicates", "conflicts", "empty", "short", "long", "kept"), 0)
    for path in tqdm(files, desc=f"debian {lang}", unit="file", disable=not progress):
        for e in parse_index(read_index(path), str(path)):
            stats["entries"] += 1
            old = chosen.get(e.md5)
            if old is None:
                chosen[e.md5] = e
                continue
            stats["duplicates"] += 1
            if (old.synopsis, old.description) != (e.synopsis, e.description):
                stats["conflicts"] += 1
            chosen[e.md5] = min(old, e)  # the alphabetically first package's entry: independent of file order
    kept = {}
    for md5, e in chosen.items():
        n = _word_count(e.description)
        why = "empty" if not e.synopsis or not e.description else "short" if n < min_words else "long" if n > max_words else ""
        if why:
            stats[why] += 1
        else:
            kept[md5] = e
    stats["kept"] = len(kept)
    return kept, stats


def _ordered(entries: dict[str, Entry], md5s) -> dict[str, list[str]]:
    """md5s per split, ordered by (package, md5)."""
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for md5 in sorted(md5s, key=lambda m: (entries[m].package, m)):
        out[split_of_md5(md5)].append(md5)
    return out


def _write_language(out: Path, lang: str, entries: dict[str, Entry]) -> None:
    for split, md5s in _ordered(entries, entries).items():
        descs = [entries[m].description for m in md5s]
        write_mono(out, split, lang, descs, md5s)
        write_lines_atomic(mono_file(out, split, lang, ".desc"), descs)
        write_lines_atomic(mono_file(out, split, lang, ".syn"), [entries[m].synopsis for m in md5s])


def _write_pair(out: Path, l1: str, l2: str, e1: dict[str, Entry], e2: dict[str, Entry]) -> int:
    shared = [m for m in e1 if m in e2]
    for split, md5s in _ordered(e1, shared).items():
        side1 = [t for m in md5s for t in (e1[m].description, e1[m].synopsis)]
        side2 = [t for m in md5s for t in (e2[m].description, e2[m].synopsis)]
        write_pair(out, split, l1, l2, side1, side2, [f"{m}.{kind}" for m in md5s for kind in ("desc", "syn")])
    return len(shared)


def _parse_langs(langs: str | list[str]) -> list[str]:
    from xling.data.bible import split_langs

    items = split_langs(langs)
    for lang in items:
        check_lang(lang, "--langs")
    return sorted(set(items))


def build_debian_corpus(
    langs: str | list[str],
    out_dir: str | os.PathLike,
    lists_dir: str | os.PathLike = DEFAULT_LISTS,
    pairs: str | list[str] = "en",
    min_words: int = DEFAULT_MIN_WORDS,
    max_words: int = DEFAULT_MAX_WORDS,
    progress: bool = True,
) -> dict[str, Any]:
    """Build the Debian descriptions corpus in ``out_dir`` and return its manifest.

    ``langs``: codes (list or comma string; ``zh`` reads ``Translation-zh_CN``);
    ``pairs``: see :func:`xling.data.bible.resolve_pairs` (default each language
    with English); ``min_words`` / ``max_words``: the length filter. The
    directory is written whole or not at all.
    """
    from xling.data.bible import resolve_pairs

    lang_list = _parse_langs(langs)
    pair_list = resolve_pairs(lang_list, pairs)
    if min_words < 1 or max_words < min_words:
        raise XlingError(f"word limits: need 1 <= min_words <= max_words, got {min_words} and {max_words}")
    lists = Path(lists_dir)
    files = {lang: find_index_files(lists, lang) for lang in lang_list} if lists.is_dir() else {}
    missing = [lang for lang in lang_list if not files.get(lang)]
    if missing:
        names = ", ".join(f"Translation-{APT_SUFFIX.get(lang, lang)}" for lang in missing)
        raise XlingError(f"{lists}: no Debian description index ({names}); as root run: {apt_command(lang_list)}")
    entries, stats = {}, {}
    with atomic_dir(out_dir) as tmp:
        for lang in lang_list:
            entries[lang], stats[lang] = collect_language(files[lang], lang, min_words, max_words, progress)
            _write_language(tmp, lang, entries[lang])
        aligned = {f"{a}-{b}": _write_pair(tmp, a, b, entries[a], entries[b]) for a, b in pair_list}
        manifest = {
            "name": "debian-descriptions",
            "source": {
                lang: [{"file": p.name, "bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in paths]
                for lang, paths in files.items()
            },
            "languages": lang_list,
            "pairs": list(aligned),
            "splits": list(SPLITS),
            "split_rule": SPLIT_RULE,
            "id_format": "Description-md5 (32 hex); pair ids <md5>.desc and <md5>.syn",
            "files": {
                "{split}.{lang}": "long descriptions, one per line (paragraphs joined)",
                "{split}.{lang}.desc": "the same long descriptions (summarization source)",
                "{split}.{lang}.syn": "their one-line synopses (summarization target)",
                "{split}.{lang}.ids": "Description-md5 of each line",
            },
            "parallel": PARALLEL,
            "filters": {"min_words": min_words, "max_words": max_words, "words": "unicode_tokens (CJK: characters)"},
            "stats": stats,
            "aligned_descriptions": aligned,
        }
        manifest = write_manifest(tmp, manifest)
    return manifest
