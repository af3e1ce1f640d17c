"""XLM's masked (MLM) and translation (TLM) language modelling.

MLM: rows of a monolingual text stream (256 tokens by default), 15% of tokens
chosen, replaced 80% <mask> / 10% random / 10% kept; masks are drawn afresh every
time a row is visited, so every epoch sees new masks.

TLM: a parallel pair concatenated into one sequence ``<s> x </s> <s> y </s>``;
position ids restart at 0 for the second sentence, each segment carries its own
language id, and tokens are masked in both halves so the model can look at the
translation to recover a masked word.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from xling.data.masking import MaskingConfig, mlm_mask, pad_batch
from xling.objectives.base import masked_lm_loss
from xling.objectives.readers import read_streams
from xling.objectives.registry import BuildContext, ObjectiveKind, register_objective


@dataclass
class MLMObjective:
    """Masked LM on monolingual stream rows of one language."""

    vocab_size: int
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    name: str = "mlm"

    def make_batch(self, rows: list[np.ndarray], lang_id: int, rng: np.random.Generator) -> dict[str, Any]:
        tokens = pad_batch(rows)  # (B, T)
        inputs, targets = mlm_mask(tokens, self.vocab_size, rng, self.masking)
        return {
            "tokens": torch.from_numpy(inputs),
            "langs": torch.full(tokens.shape, lang_id, dtype=torch.long),
            "targets": torch.from_numpy(targets),
        }

    def loss(self, model, batch):
        return masked_lm_loss(model, batch, batch.get("task", self.name))


def concat_pair(
    src: np.ndarray, tgt: np.ndarray, src_lang: int, tgt_lang: int, bos_id: int, eos_id: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One TLM example: ``<s> src </s> <s> tgt </s>`` with positions restarting at 0
    for the second segment and each segment's language id.
    Returns (tokens, positions, langs), each (len(src) + len(tgt) + 4,)."""
    a = np.concatenate([[bos_id], src, [eos_id]]).astype(np.int64)
    b = np.concatenate([[bos_id], tgt, [eos_id]]).astype(np.int64)
    tokens = np.concatenate([a, b])
    positions = np.concatenate([np.arange(len(a)), np.arange(len(b))])
    langs = np.concatenate([np.full(len(a), src_lang), np.full(len(b), tgt_lang)])
    return tokens, positions, langs.astype(np.int64)


@dataclass
class TLMObjective:
    """Translation LM on parallel pairs (l1, l2); the order is swapped at random per
    example so both languages appear first equally often."""

    vocab_size: int
    bos_id: int = 2
    eos_id: int = 3
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    swap: bool = True  # randomly put the l2 sentence first
    name: str = "tlm"

    def make_batch(
        self, pairs: list[tuple[np.ndarray, np.ndarray]], lang_ids: tuple[int, int], rng: np.random.Generator
    ) -> dict[str, Any]:
        l1, l2 = lang_ids
        toks, poss, langs = [], [], []
        swaps = rng.random(len(pairs)) < 0.5 if self.swap else np.zeros(len(pairs), bool)
        for (x, y), s in zip(pairs, swaps):
            t, p, g = concat_pair(y, x, l2, l1, self.bos_id, self.eos_id) if s else concat_pair(
                x, y, l1, l2, self.bos_id, self.eos_id
            )
            toks.append(t)
            poss.append(p)
            langs.append(g)
        tokens = pad_batch(toks)  # (B, T), T = longest pair
        inputs, targets = mlm_mask(tokens, self.vocab_size, rng, self.masking)
        return {
            "tokens": torch.from_numpy(inputs),
            "positions": torch.from_numpy(pad_batch(poss)),
            "langs": torch.from_numpy(pad_batch(langs)),
            "targets": torch.from_numpy(targets),
        }

    def loss(self, model, batch):
        return masked_lm_loss(model, batch, batch.get("task", self.name))


def _read_pairs(ctx: BuildContext, pair: str, corpus: str, split: str, cache: dict) -> tuple[list, tuple[int, int]]:
    """TLM: aligned pairs of ``l1-l2``, each side cut at data.max_pair_len."""
    from xling.data.examples import pairs

    l1, l2 = pair.split("-", 1)
    ids = (ctx.vocab.lang_id(l1), ctx.vocab.lang_id(l2))
    return pairs(ctx.vocab, corpus, split, l1, l2, ctx.data.max_pair_len), ids


MLM = register_objective(ObjectiveKind(
    name="mlm", langs="lang", model_types=("encoder", "seq2seq"), read=read_streams, padded_len=len,
    build=lambda ctx: MLMObjective(len(ctx.vocab), ctx.section("masking")), section=("masking", MaskingConfig),
    stream=True, lm_probe=True))
TLM = register_objective(ObjectiveKind(
    name="tlm", langs="pair", model_types=("encoder", "seq2seq"), read=_read_pairs,
    padded_len=lambda xy: len(xy[0]) + len(xy[1]) + 4,  # <s> x </s> <s> y </s>
    build=lambda ctx: TLMObjective(len(ctx.vocab), ctx.vocab.bos_id, ctx.vocab.eos_id, ctx.section("masking")),
    section=("masking", MaskingConfig), lm_probe=True))
