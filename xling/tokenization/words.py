"""Word tokens for counting and scoring words in any script (not the model's vocabulary):
used by ROUGE (``xling.evaluation.textmetrics``) and the Debian corpus word filters.
"""

from __future__ import annotations

import regex

_CJK_CHAR = r"[\p{Han}\p{Hiragana}\p{Katakana}]"
_TOKEN = regex.compile(rf"{_CJK_CHAR}|(?:(?!{_CJK_CHAR})[\p{{L}}\p{{M}}\p{{N}}])+")


def unicode_tokens(text: str) -> list[str]:
    """Lowercased word tokens of any script: runs of letters/marks/digits; Han and kana one per character.

    >>> unicode_tokens("Größe: 3 Äpfel, 中文字")
    ['größe', '3', 'äpfel', '中', '文', '字']
    """
    return _TOKEN.findall(text.lower())
