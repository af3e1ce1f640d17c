"""Simple summarization baselines that any model should beat.

- ``lead-sentence``: the first sentence of the document (up to and including the first
  ``.``, ``!``, ``?`` or ``。`` / ``！`` / ``？`` that ends a sentence), the classic lead baseline;
- ``lead-N`` (e.g. ``lead-8``): the first N words (whitespace tokens) of the document.
"""

from __future__ import annotations

import re

from xling.errors import XlingError

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)|(?<=[。！？])")


def first_sentence(text: str) -> str:
    """The first sentence of ``text`` (the whole text when it has no sentence end)."""
    text = " ".join(text.split())
    parts = _SENTENCE_END.split(text, maxsplit=1)
    return parts[0].strip()


def first_words(text: str, n: int) -> str:
    """The first ``n`` whitespace-separated words of ``text``."""
    return " ".join(text.split()[:n])


def baseline(name: str, texts: list[str]) -> list[str]:
    """Apply the baseline ``name`` ("lead-sentence" or "lead-N") to every text."""
    if name == "lead-sentence":
        return [first_sentence(t) for t in texts]
    m = re.fullmatch(r"lead-(\d+)", name)
    if m and int(m.group(1)) > 0:
        return [first_words(t, int(m.group(1))) for t in texts]
    raise XlingError(f"unknown baseline {name!r}; use lead-sentence or lead-N (e.g. lead-8)")
