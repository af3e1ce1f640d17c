"""Named text normalisers that a vocabulary applies before segmenting (``vocab.json``'s ``normalize``).

A vocabulary made by ``xling vocab`` normalises nothing (its SentencePiece model is trained on
raw text). A vocabulary converted from another toolkit declares the steps that toolkit ran
before its own segmenter, in order, and :meth:`xling.tokenization.vocab.Vocab.encode` runs them::

    "normalize": ["nonprint", "lowercase"]      # in vocab.json

A step is a pure function ``(text, lang) -> text`` (``lang`` is the text's language code, or None
when the caller does not know it) registered once under its name::

    register_normalizer("lowercase", lambda text, lang: text.lower())

A module that registers steps is imported by :func:`_load_builtin` (one line per module), so the
registry is complete whenever a name is looked up.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence

from xling.errors import XlingError, unknown

Normalizer = Callable[[str, "str | None"], str]

_NORMALIZERS: dict[str, Normalizer] = {}


def register_normalizer(name: str, fn: Normalizer) -> Normalizer:
    """Add ``fn`` under ``name`` (a name is registered once)."""
    if _NORMALIZERS.setdefault(name, fn) is not fn:
        raise ValueError(f"normalizer {name!r} is registered twice")
    return fn


def _load_builtin() -> None:
    """Import the modules that register steps (one line per module)."""
    import xling.tokenization.laser  # noqa: F401  (laser_punct)
    import xling.tokenization.moses  # noqa: F401  (Moses steps: moses_punct, moses_tokenize...)


def known_normalizers() -> list[str]:
    """Every registered step name, sorted."""
    _load_builtin()
    return sorted(_NORMALIZERS)


def check_normalizers(names: object, where: str) -> list[str]:
    """``names`` as a list of registered step names; anything else is an XlingError naming ``where``."""
    if names is None:
        return []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise XlingError(f"{where}: normalize must be a list of step names, got {names!r}")
    known = known_normalizers()
    for name in names:
        if name not in _NORMALIZERS:
            raise unknown("normalize step", name, known)
    return list(names)


def normalize(names: Sequence[str], text: str, lang: str | None = None) -> str:
    """``text`` after the steps ``names``, in order (names checked by :func:`check_normalizers`)."""
    for name in names:
        text = _NORMALIZERS[name](text, lang)
    return text


def _nonprint(text: str, lang: str | None) -> str:
    """Unicode "other" characters (categories C*: controls, format, unassigned...) become spaces
    (LASER's preprocessing)."""
    return "".join(" " if unicodedata.category(c).startswith("C") else c for c in text)


register_normalizer("lowercase", lambda text, lang: text.lower())
register_normalizer("nonprint", _nonprint)
