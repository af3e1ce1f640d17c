"""Moses preprocessing steps as named normalisers (:mod:`xling.tokenization.normalize`).

The original XLM and MASS models were trained on text run through Moses' scripts before their
BPE codes were applied (XLM's ``tools/tokenize.sh``, then ``tools/lowercase_and_remove_accent.py``
for the models trained lowercased)::

    replace-unicode-punctuation.perl | normalize-punctuation.perl -l L | remove-non-printing-char.perl
      | tokenizer.perl -no-escape -l L [| lowercase_and_remove_accent.py]

A converted vocabulary declares the same steps, in order, in vocab.json's ``normalize``::

    ["moses_unicode_punct", "moses_punct", "nonprint", "moses_tokenize", "lowercase_accents"]

The Moses steps are ``sacremoses``' ports of the Perl scripts (``nonprint``, the space that
``remove-non-printing-char.perl`` puts for every ``\\p{C}`` character, is a built-in step).
``moses_punct`` and ``moses_tokenize`` depend on the language (non-breaking prefixes, French
and German quote and number rules); a caller that does not know it (``lang=None``) gets English
rules, as Moses does without ``-l``. Moses only splits words: XLM segmented Chinese, Japanese and
Thai with other tools (Stanford segmenter, KyTea, PyThaiNLP), which these steps do not reproduce.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from xling.tokenization.normalize import register_normalizer

DEFAULT_LANG = "en"  # Moses' rules when the text's language is not known


@lru_cache(maxsize=None)
def _punct(lang: str):
    from sacremoses import MosesPunctNormalizer

    return MosesPunctNormalizer(lang=lang)


@lru_cache(maxsize=None)
def _tokenizer(lang: str):
    from sacremoses import MosesTokenizer

    return MosesTokenizer(lang=lang)


def moses_unicode_punct(text: str, lang: str | None) -> str:
    """``replace-unicode-punctuation.perl``: full-width and CJK punctuation to ASCII."""
    return _punct(DEFAULT_LANG).replace_unicode_punct(text)


def moses_punct(text: str, lang: str | None) -> str:
    """``normalize-punctuation.perl -l lang``: quotes, dashes, spaces around punctuation."""
    return _punct(lang or DEFAULT_LANG).normalize(text)


def moses_tokenize(text: str, lang: str | None) -> str:
    """``tokenizer.perl -no-escape -l lang``: tokens separated by single spaces."""
    return _tokenizer(lang or DEFAULT_LANG).tokenize(text, return_str=True, escape=False)


def lowercase_accents(text: str, lang: str | None) -> str:
    """XLM's ``lowercase_and_remove_accent.py``: lowercase, decompose (NFD), drop the combining
    marks (category Mn), lowercase again."""
    text = unicodedata.normalize("NFD", text.lower())
    return "".join(c for c in text if unicodedata.category(c) != "Mn").lower()


register_normalizer("moses_unicode_punct", moses_unicode_punct)
register_normalizer("moses_punct", moses_punct)
register_normalizer("moses_tokenize", moses_tokenize)
register_normalizer("lowercase_accents", lowercase_accents)
