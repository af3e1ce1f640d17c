"""MASS span masking (Song et al. 2019): a pure function of (sentences, rng).

Layout. Sentences come as token ids *without* BOS/EOS; the encoder input is
``<s> x </s>`` (like a TLM segment), so sentence token ``k`` (0-based) sits at
encoder position ``k + 1``. One contiguous span of ``L = span_length(n)`` of the
``n`` sentence tokens (never ``<s>`` / ``</s>``) is chosen:

- it starts at the first token with probability ``p_start`` (0.2), ends at the last
  token with probability ``p_end`` (0.2), and otherwise (0.6) starts uniformly at one
  of the *interior* starts (neither first nor last possible start; when there is none,
  at any possible start);
- in the encoder, span tokens are corrupted 80% ``<mask>`` / 10% random / 10% kept
  (:func:`xling.data.masking.corrupt`); tokens outside the span are untouched;
- the decoder is fed only the span shifted right by one: for span positions
  ``p = a .. a+L-1`` (encoder positions), decoder input ``j`` is the *original* token
  at ``a - 1 + j`` (the token before the span, ``<s>`` when the span starts the
  sentence; never ``<mask>``), at its own original position ``a - 1 + j``, and the
  target is the original token at ``a + j``.

Positions follow MASS's code (microsoft/MASS: XLM-based ``positions = pos_i - 1``;
fairseq-based ``masked_pos + pad_index``, i.e. the fed token's index) and match the
seq2seq fine-tuning layout, where decoder input ``<s>`` sits at position 0: a decoder
token at position ``q`` is the sentence token at ``q`` and predicts the one at ``q + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from xling.data.masking import IGNORE, MaskingConfig, corrupt, pad_batch

P_START = 0.2  # MASS: span at the beginning of the sentence
P_END = 0.2  # MASS: span at the end of the sentence


def with_bos_eos(ids: Sequence[int], bos_id: int, eos_id: int) -> np.ndarray:
    """``<s> ids </s>`` as an int64 array (len(ids) + 2,): the encoder layout of one
    sentence in MASS and in supervised seq2seq."""
    return np.concatenate([[bos_id], np.asarray(ids, dtype=np.int64), [eos_id]]).astype(np.int64)


def span_length(n: np.ndarray, span_ratio: float) -> np.ndarray:
    """Span length for sentences of ``n`` tokens: ``floor(n * span_ratio + 0.5)``
    (rounded half up), at least 1 and at most n; 0 for an empty sentence."""
    n = np.asarray(n, dtype=np.int64)
    length = np.floor(n * span_ratio + 0.5).astype(np.int64)
    return np.where(n > 0, np.clip(length, 1, np.maximum(n, 1)), 0)


def span_starts(
    n: np.ndarray, length: np.ndarray, rng: np.random.Generator, p_start: float = P_START, p_end: float = P_END
) -> np.ndarray:
    """0-based span starts in sentences of ``n`` tokens for spans of ``length`` tokens (B,).

    Possible starts are ``0 .. n - length``: the first with probability ``p_start``, the
    last with ``p_end``, otherwise uniform over the interior ``1 .. n - length - 1``
    (uniform over all possible starts when there is no interior one).
    """
    room = np.asarray(n) - np.asarray(length)  # (B,) last possible start
    u = rng.random(room.shape)
    interior = rng.integers(1, np.maximum(room, 2))  # uniform in 1 .. room-1 (used when room >= 2)
    anywhere = rng.integers(0, room + 1)
    elsewhere = np.where(room >= 2, interior, anywhere)
    return np.where(u < p_start, 0, np.where(u < p_start + p_end, room, elsewhere)).astype(np.int64)


@dataclass
class MassMasking:
    """One MASS batch as numpy arrays (B rows; pad id 0, IGNORE = -100)."""

    enc_tokens: np.ndarray  # (B, S) int64: ``<s> x </s>`` with the span corrupted, padded
    dec_tokens: np.ndarray  # (B, L) int64: original tokens before each span token, padded with 0
    dec_positions: np.ndarray  # (B, L) int64: their encoder positions (0 on padding)
    targets: np.ndarray  # (B, L) int64: the span's original tokens, IGNORE on padding
    starts: np.ndarray  # (B,) int64: span start in the sentence (0-based; encoder position - 1)
    lengths: np.ndarray  # (B,) int64: span lengths (0 for an empty sentence)


def mass_mask(
    sentences: Sequence[Sequence[int]],
    vocab_size: int,
    rng: np.random.Generator,
    span_ratio: float = 0.5,
    cfg: MaskingConfig = MaskingConfig(),
    bos_id: int = 2,
    eos_id: int = 3,
    p_start: float = P_START,
    p_end: float = P_END,
) -> MassMasking:
    """MASS masking of a batch of sentences (token ids without BOS/EOS); see the module
    docstring for the layout. ``cfg`` gives the 80/10/10 corruption (its ``mask_prob``
    is unused: the span is the prediction set). An empty sentence gets no span."""
    n = np.array([len(s) for s in sentences], dtype=np.int64)  # (B,)
    length = span_length(n, span_ratio)  # (B,)
    starts = span_starts(n, length, rng, p_start, p_end)  # (B,)
    original = pad_batch([with_bos_eos(s, bos_id, eos_id) for s in sentences])  # (B, S)
    B, S = original.shape
    first = starts + 1  # (B,) encoder position of the span's first token
    pos = np.arange(S)[None, :]  # (1, S)
    in_span = (pos >= first[:, None]) & (pos < (first + length)[:, None])  # (B, S)
    enc_tokens = corrupt(original, in_span, vocab_size, rng, cfg)  # (B, S)
    L = int(length.max(initial=0))
    j = np.arange(L)[None, :]  # (1, L)
    real = j < length[:, None]  # (B, L)
    tgt_pos = np.minimum(first[:, None] + j, S - 1)  # (B, L) encoder positions of the targets
    rows = np.arange(B)[:, None]
    return MassMasking(
        enc_tokens=enc_tokens,
        dec_tokens=np.where(real, original[rows, tgt_pos - 1], 0),
        dec_positions=np.where(real, tgt_pos - 1, 0),
        targets=np.where(real, original[rows, tgt_pos], IGNORE),
        starts=starts,
        lengths=length,
    )
