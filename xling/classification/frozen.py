"""Frozen sentence embeddings as classifier features (the LASER-style path).

The encoder is any backend of :mod:`xling.embeddings.backends` given by its directory
(imported only here, when this path is used): ``load_encoder(dir).encode(texts, lang,
batch_size=, normalize=) -> np.ndarray (n, d)``. It is never trained here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from xling.classification.data import Example
from xling.classification.model import pair_features
from xling.errors import XlingError, unknown


def named_encoder(spec: str | Path) -> bool:
    """Whether ``spec`` is a backend name (``use-multilingual``) rather than a directory: a classifier
    on a named encoder records the name, since there is no directory to copy."""
    if Path(spec).is_dir():
        return False
    try:
        from xling.embeddings.backends.registry import names
    except ImportError:
        return False
    return str(spec) in names()


def load_sentence_encoder(dir: str | Path) -> Any:
    """The encoder of a model directory of any backend kind (xling, sentence-transformers,
    transformers: :func:`xling.embeddings.backends.load_encoder`) or of a backend name
    (``use-multilingual``); a missing directory is a one-line error (the classifier keeps a copy
    of its encoder's directory, and the name of a named one)."""
    if not named_encoder(dir) and not Path(dir).is_dir():
        raise XlingError(f"{dir}: no such sentence-encoder directory")
    try:
        from xling.embeddings.backends import load_encoder
    except ImportError:
        raise XlingError("frozen embeddings need xling.embeddings, which this install lacks") from None
    return load_encoder(dir)


def encoder_languages(encoder: Any) -> list[str]:
    """The languages an encoder knows (its ``languages`` or its vocabulary's), [] if it does not say."""
    langs = getattr(encoder, "languages", None)
    if langs is None and getattr(encoder, "vocab", None) is not None:
        langs = getattr(encoder.vocab, "languages", None)
    return list(langs) if langs else []


def check_language(lang: str, known: list[str]) -> None:
    if known and lang not in known:
        raise unknown("language code", lang, known)


def embed_examples(encoder: Any, examples: list[Example], lang: str, batch_size: int = 64,
                   normalize: bool = True, known: list[str] | None = None, truncation: Any = None) -> np.ndarray:
    """Features of ``examples`` (all in ``lang``): (N, d), or (N, 4d) for pairs. ``truncation``
    (a :class:`xling.utils.truncation.Truncation`) goes to the encoder, which counts the
    sentences it cuts into it."""
    check_language(lang, known or [])
    if not examples:
        return np.zeros((0, 0), dtype=np.float32)
    kw = {} if truncation is None else {"truncation": truncation}

    def enc(texts: list[str]) -> np.ndarray:
        out = np.asarray(encoder.encode(texts, lang, batch_size=batch_size, normalize=normalize, **kw),
                         dtype=np.float32)
        if out.ndim != 2 or out.shape[0] != len(texts):
            raise XlingError(f"sentence encoder returned shape {out.shape} for {len(texts)} sentences")
        return out  # (N, d)

    u = enc([x.text for x in examples])
    v = enc([x.text_b for x in examples]) if examples[0].text_b is not None else None
    return pair_features(u, v)
