"""The encoder protocol every backend follows, and the parts of ``encode`` they share.

    enc.encode(texts, lang, batch_size=64, normalize=False, truncation=None)  # (n, dim) float32
    enc.dim            # size of a vector
    enc.name           # names the model in score signatures (a hub id, a backend name, a directory)
    enc.languages      # the codes it knows, sorted; None when it cannot know
    enc.check_lang(lang)

Every backend keeps xling's row contract (:func:`encode_rows`): row i is text i; empty or
whitespace-only texts get zero vectors (one warning counts them) and never reach the model;
``normalize`` gives unit rows. A backend that takes no language id still checks the code:
against the languages it declares (a region or script variant of one counts, ``pt_BR`` for
``pt``), or, when it declares none, with one warning per encoder that it cannot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from xling.errors import XlingError
from xling.utils.truncation import Truncation, counting

log = logging.getLogger(__name__)


@runtime_checkable
class Encoder(Protocol):
    name: str  # what score signatures call the model
    languages: list[str] | None  # the codes it accepts; None: it cannot know

    @property
    def dim(self) -> int: ...

    def check_lang(self, lang: str) -> None: ...

    def encode(self, texts: Sequence[str], lang: str, batch_size: int = 64, normalize: bool = False,
               truncation: Truncation | None = None) -> np.ndarray: ...


def check_batch_size(batch_size: object) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise XlingError(f"batch size: must be a positive integer, got {batch_size!r}")


def encode_rows(texts: Sequence[str], dim: int, embed: Callable[[list[str]], np.ndarray],
                normalize: bool = False) -> np.ndarray:
    """(len(texts), dim) float32: ``embed`` of the non-empty texts in their rows, zero rows
    for the empty ones (one warning counts them); ``normalize``: unit L2 rows (zero stays zero)."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    where = [i for i, t in enumerate(texts) if t.strip()]
    if len(where) < len(texts):
        log.warning("%d of %d texts are empty: zero vectors", len(texts) - len(where), len(texts))
    if where:
        vecs = np.asarray(embed([texts[i] for i in where]), dtype=np.float32)  # (n', dim)
        if vecs.shape != (len(where), dim):
            raise RuntimeError(f"encoder returned {vecs.shape} for {len(where)} texts of dimension {dim}")
        out[where] = vecs
    if normalize:
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
    return out


def known_lang(lang: str, known: Sequence[str]) -> bool:
    """``lang`` is one of ``known``, or a script / region variant of one (``pt_BR``, ``zh_Hant``)."""
    return lang in known or lang.split("_")[0] in known


class EncoderBase:
    """A backend: subclasses set ``name``, ``languages`` and ``dim`` and implement :meth:`embed`."""

    name: str = ""
    languages: list[str] | None = None
    dim: int = 0
    what: str = "encoder"  # how errors and warnings call it ("the multilingual USE", ...)
    _warned = False

    def embed(self, texts: list[str], batch_size: int, truncation: Truncation) -> np.ndarray:
        """(len(texts), dim) vectors of non-empty texts in order, whatever their batch;
        lines cut to the model's length are added to ``truncation``."""
        raise NotImplementedError

    def check_lang(self, lang: str) -> None:
        """XlingError unless the encoder knows ``lang``; one warning when it cannot know."""
        if self.languages is None:
            if not self._warned:
                log.warning("%s: the model declares no languages, so %r (and any other code) is not checked",
                            self.name, lang)
                self._warned = True
            return
        if not known_lang(lang, self.languages):
            raise XlingError(f"language {lang!r}: {self.what} {self.name} does not know it "
                             f"(known: {', '.join(self.languages)})")

    def encode(self, texts: Sequence[str], lang: str, batch_size: int = 64, normalize: bool = False,
               truncation: Truncation | None = None) -> np.ndarray:
        """(len(texts), dim) float32 in input order (see the module doc)."""
        self.check_lang(lang)
        check_batch_size(batch_size)
        with counting(truncation, log) as cut:
            return encode_rows(texts, self.dim, lambda kept: self.embed(kept, batch_size, cut), normalize)
