"""LASER's punctuation normalisation as a named normaliser (:mod:`xling.tokenization.normalize`).

``laser_encoders``' ``LaserTokenizer`` (the reference for LASER2 / LASER3) prepares a sentence as::

    non-printing characters (Unicode C*) -> space
    MosesPunctNormalizer("en", perl_parity=True), with two substitutions replaced
        ("parity with MOSES release-4.0": a lone ``‘`` and ``‚`` become ``"``, not ``'``)
    lower-case, then SentencePiece

A converted LASER vocabulary declares ``["nonprint", "laser_punct", "lowercase"]``. The rules
are English whatever the text's language: ``LaserEncoderPipeline`` builds its tokenizer with
the default ``lang="en"`` for every encoder, LASER3's included.

The substitutions are sacremoses' list for English with the perl-parity and LASER replacements
written into a copy by index (sacremoses 0.1.0 applies ``perl_parity`` to its class-level lists,
which would change every other normaliser of the process); each replaced entry is checked
first, so a sacremoses release that reorders its list fails loudly instead of normalising
differently.
"""

from __future__ import annotations

from functools import lru_cache

from xling.errors import XlingError
from xling.tokenization.normalize import register_normalizer

# (index in MosesPunctNormalizer("en").substitutions, its pattern, the replacement LASER uses)
REPLACED = (
    (23, "’", '"'),  # sacremoses perl_parity
    (27, "\u00a0«\u00a0", ' "'),  # perl_parity
    (30, "\u00a0»\u00a0", '" '),  # perl_parity
    (21, "‘", '"'),  # laser_encoders: "add parity with MOSES release-4.0"
    (22, "‚", '"'),  # laser_encoders
)


@lru_cache(maxsize=1)
def _normalizer():
    from sacremoses import MosesPunctNormalizer

    n = MosesPunctNormalizer("en")
    subs = list(n.substitutions)
    for i, pattern, replacement in REPLACED:
        if i >= len(subs) or subs[i][0] != pattern:
            raise XlingError(f"laser_punct: this sacremoses release orders its substitutions differently "
                             f"(entry {i} is not {pattern!r}); LASER's normalisation needs sacremoses 0.1 - 0.2")
        subs[i] = (pattern, replacement)
    n.substitutions = subs  # this instance only
    return n


def laser_punct(text: str, lang: str | None) -> str:
    """LaserTokenizer's Moses punctuation step (English rules, perl parity, LASER's two
    replacements; surrounding spaces stripped)."""
    return _normalizer().normalize(text)


register_normalizer("laser_punct", laser_punct)
