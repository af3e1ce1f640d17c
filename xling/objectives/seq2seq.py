"""Supervised sequence-to-sequence training (translation, summarization) of an
encoder-decoder (:class:`xling.models.seq2seq.TransformerSeq2Seq`).

An example is a (source ids, target ids) pair, both without BOS/EOS. The layout
(shared with MASS and expected by decoding):

- encoder ``tokens``: ``<s> x </s>`` with the source language id, positions 0..;
- decoder ``dec_tokens``: ``<s> y`` with the target language id, positions 0..;
- ``targets``: ``y </s>`` (IGNORE on padding).

Decoding starts from ``<s>`` at position 0 and stops at ``</s>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from xling.data.masking import IGNORE, pad_batch
from xling.data.span_masking import with_bos_eos
from xling.errors import XlingError
from xling.objectives.base import masked_lm_loss


@dataclass
class Seq2SeqObjective:
    """Teacher-forced cross-entropy of ``y </s>`` given ``<s> x </s>`` and ``<s> y``."""

    bos_id: int = 2  # <s>: starts the source and the decoder input
    eos_id: int = 3  # </s>: ends the source and the target
    label_smoothing: float = 0.1  # weight of the uniform distribution in the targets (0 = plain cross-entropy)
    name: str = "seq2seq"  # stats prefix when the batch names no task

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0:
            raise XlingError(f"seq2seq label_smoothing: must be in [0, 1), got {self.label_smoothing!r}")

    def make_batch(
        self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]], lang_ids: tuple[int, int], rng: np.random.Generator
    ) -> dict[str, Any]:
        """``tokens, langs`` (B, S) and ``dec_tokens, dec_langs, targets`` (B, T); ``rng``
        is unused (no noise), kept for the objective contract."""
        src_lang, tgt_lang = lang_ids
        tokens = pad_batch([with_bos_eos(x, self.bos_id, self.eos_id) for x, _ in pairs])  # (B, S)
        ys = [np.asarray(y, dtype=np.int64) for _, y in pairs]
        dec = pad_batch([np.concatenate([[self.bos_id], y]) for y in ys])  # (B, T)
        targets = pad_batch([np.concatenate([y, [self.eos_id]]) for y in ys], pad_id=IGNORE)  # (B, T)
        return {
            "tokens": torch.from_numpy(tokens),
            "langs": torch.full(tokens.shape, src_lang, dtype=torch.long),
            "dec_tokens": torch.from_numpy(dec),
            "dec_langs": torch.full(dec.shape, tgt_lang, dtype=torch.long),
            "targets": torch.from_numpy(targets),
        }

    def loss(self, model, batch):
        return masked_lm_loss(model, batch, batch.get("task", self.name), self.label_smoothing)
