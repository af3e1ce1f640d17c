"""Source noise for denoising auto-encoding (Lample et al. 2018; XLM's ``--word_shuffle 3
--word_dropout 0.1 --word_blank 0.1``): pure functions of token ids and a numpy Generator.

Noise acts on whole words: a word is a SentencePiece piece that starts one (``▁...``) and the
pieces after it up to the next word start (:func:`word_starts` marks which ids start a word; the
first piece of a sentence always does). In this order:

1. **local shuffle**: word i gets the score ``i + U(0, k)`` and words are sorted by score, so a
   word never moves ``k`` or more places (``k = 0``: no shuffle);
2. **drop**: each word is removed with probability ``drop_prob``; at least one word is kept;
3. **blank**: each remaining word is replaced by one ``<mask>`` with probability ``blank_prob``.

The ids passed in have no ``<s>`` / ``</s>``: the objective adds them around the noised source,
so they are never moved, dropped or blanked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xling.errors import XlingError

WORD_START = "\u2581"  # SentencePiece's space marker


@dataclass
class NoiseConfig:
    """The ``denoise`` section of a training config: the source noise of the ``denoise`` objective."""

    shuffle_k: float = 3.0  # local shuffle: word i sorted by i + U(0, k); it moves fewer than k places (0 = off)
    drop_prob: float = 0.1  # probability of dropping each word (at least one word is kept)
    blank_prob: float = 0.1  # probability of replacing each remaining word by one <mask>

    def __post_init__(self) -> None:
        if not (math.isfinite(self.shuffle_k) and self.shuffle_k >= 0):
            raise XlingError(f"denoise shuffle_k: must be a number >= 0, got {self.shuffle_k!r}")
        for name in ("drop_prob", "blank_prob"):
            p = getattr(self, name)
            if not 0.0 <= p < 1.0:
                raise XlingError(f"denoise {name}: must be in [0, 1), got {p!r}")


def word_starts(pieces: Sequence[str]) -> np.ndarray:
    """(V,) bool: whether the piece of each id starts a word (begins with ``▁``)."""
    return np.fromiter((p.startswith(WORD_START) for p in pieces), dtype=bool, count=len(pieces))


def split_words(ids: np.ndarray, starts: np.ndarray) -> list[np.ndarray]:
    """``ids`` (n,) -> its words: runs of pieces, each beginning at a word start (or at index 0)."""
    ids = np.asarray(ids, dtype=np.int64)
    if not len(ids):
        return []
    cut = np.flatnonzero(starts[ids])
    cut = cut[cut > 0]
    return np.split(ids, cut)


def shuffle_order(n: int, k: float, rng: np.random.Generator) -> np.ndarray:
    """A permutation of ``range(n)`` in which no item moves ``k`` or more places."""
    if k <= 0 or n < 2:
        return np.arange(n)
    return np.argsort(np.arange(n) + rng.uniform(0.0, k, size=n), kind="stable")


def noise_words(ids: Sequence[int], starts: np.ndarray, cfg: NoiseConfig, mask_id: int,
                rng: np.random.Generator) -> np.ndarray:
    """The noised ids of one sentence (shuffle, drop, blank on whole words; never empty unless
    ``ids`` is)."""
    words = split_words(np.asarray(ids, dtype=np.int64), starts)
    n = len(words)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    words = [words[i] for i in shuffle_order(n, cfg.shuffle_k, rng)]
    keep = rng.random(n) >= cfg.drop_prob
    if not keep.any():
        keep[rng.integers(n)] = True
    words = [w for w, kept in zip(words, keep) if kept]
    blank = rng.random(len(words)) < cfg.blank_prob
    words = [np.array([mask_id], dtype=np.int64) if b else w for w, b in zip(words, blank)]
    return np.concatenate(words)
