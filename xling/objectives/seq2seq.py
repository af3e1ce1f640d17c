"""Supervised sequence-to-sequence training (translation, summarization) of an
encoder-decoder (:class:`xling.models.seq2seq.TransformerSeq2Seq`).

An example is a (source ids, target ids) pair, both without BOS/EOS. The layout
(shared with MASS and expected by decoding):

- encoder ``tokens``: ``<s> x </s>`` with the source language id, positions 0..;
- decoder ``dec_tokens``: ``<s> y`` with the target language id, positions 0..;
- ``targets``: ``y </s>`` (IGNORE on padding).

Decoding starts from ``<s>`` at position 0 and stops at ``</s>``. An encoder-decoder in fairseq's
layout (``Seq2SeqConfig.source_bos: false``, ``decoder_start: eos``) is trained in its own:
sources ``x </s>``, decoder inputs ``</s> y`` (what ``xling convert to-fairseq`` exports).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from xling.data.masking import IGNORE, pad_batch
from xling.data.span_masking import with_bos_eos
from xling.errors import XlingError, unknown
from xling.objectives.base import masked_lm_loss
from xling.objectives.readers import read_direction
from xling.objectives.registry import BuildContext, ObjectiveKind, register_objective


CORRUPTIONS = ("bert", "mask", "pseudo", "causal")  # UNILM fine-tuning layouts (xling.objectives.unilm)


@dataclass
class SupervisedConfig:
    """The ``seq2seq`` section of a training config: supervised source -> target objectives
    (translation, summarization) on an encoder-decoder or, UNILM's way, on an encoder."""

    label_smoothing: float = 0.1  # encoder-decoder: label smoothing of the teacher-forced loss
    tgt_mask_prob: float = 0.7  # UNILM fine-tuning: fraction of target tokens (final </s> included) masked and predicted
    corruption: str = "bert"  # UNILM fine-tuning: masked targets 80/10/10 ("bert"), all <mask> ("mask"),
    #   UNILMv2 pseudo-masks ("pseudo") or a prefix LM predicting each next token ("causal")
    valid_generate: int = 0  # validation: greedy-decode the first N (<= data.valid_examples) valid pairs of each
    #   translation / summarization task, reporting bleu/<task>, chrf/<task>, bleu/avg (best_metric: bleu/avg); 0 = off

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0:
            raise XlingError(f"seq2seq label_smoothing: must be in [0, 1), got {self.label_smoothing!r}")
        if not 0.0 < self.tgt_mask_prob <= 1.0:
            raise XlingError(f"unilm seq2seq tgt_mask_prob: must be in (0, 1], got {self.tgt_mask_prob}")
        if self.corruption not in CORRUPTIONS:
            raise unknown("unilm seq2seq corruption", self.corruption, CORRUPTIONS)
        n = self.valid_generate
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise XlingError(f"config seq2seq.valid_generate: must be an integer >= 0, got {n!r}")


@dataclass
class Seq2SeqObjective:
    """Teacher-forced cross-entropy of ``y </s>`` given ``<s> x </s>`` and ``<s> y`` (or the model's
    fairseq layout: ``x </s>``, ``</s> y``)."""

    bos_id: int = 2  # <s>: starts the source and the decoder input
    eos_id: int = 3  # </s>: ends the source and the target
    label_smoothing: float = 0.1  # weight of the uniform distribution in the targets (0 = plain cross-entropy)
    name: str = "seq2seq"  # stats prefix when the batch names no task
    source_bos: bool = True  # sources are <s> x </s>; False: x </s> (the model's Seq2SeqConfig.source_bos)
    decoder_start: str = "bos"  # the decoder input starts with <s> ("bos") or </s> ("eos"), as the model's config

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0:
            raise XlingError(f"seq2seq label_smoothing: must be in [0, 1), got {self.label_smoothing!r}")

    def make_batch(
        self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]], lang_ids: tuple[int, int], rng: np.random.Generator
    ) -> dict[str, Any]:
        """``tokens, langs`` (B, S) and ``dec_tokens, dec_langs, targets`` (B, T); ``rng``
        is unused (no noise), kept for the objective contract."""
        src_lang, tgt_lang = lang_ids
        if self.source_bos:
            tokens = pad_batch([with_bos_eos(x, self.bos_id, self.eos_id) for x, _ in pairs])  # (B, S)
        else:
            tokens = pad_batch([np.concatenate([np.asarray(x, dtype=np.int64), [self.eos_id]]) for x, _ in pairs])
        ys = [np.asarray(y, dtype=np.int64) for _, y in pairs]
        start = self.eos_id if self.decoder_start == "eos" else self.bos_id
        dec = pad_batch([np.concatenate([[start], y]) for y in ys])  # (B, T)
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


def _build(ctx: BuildContext) -> Any:
    """Teacher forcing on an encoder-decoder; UNILM's seq2seq fine-tuning on an encoder."""
    v, cfg, d = ctx.vocab, ctx.section("seq2seq"), ctx.data
    if ctx.model_type == "seq2seq":
        source_bos, start = ctx.seq2seq_layout()
        return Seq2SeqObjective(v.bos_id, v.eos_id, cfg.label_smoothing, source_bos=source_bos, decoder_start=start)
    from xling.objectives.unilm import UnilmSeq2SeqObjective  # imports this module

    return UnilmSeq2SeqObjective(len(v), cfg, v.bos_id, v.eos_id, ctx.section("masking"), d.max_len, d.max_tgt_len)


def _read_summaries(ctx: BuildContext, lang: str, corpus: str, split: str, cache: dict) -> tuple[list, tuple[int, int]]:
    """(document, summary) pairs of ``{split}.{lang}.desc`` / ``.syn``."""
    from xling.data.examples import nonempty, summary_pairs

    ids = (ctx.vocab.lang_id(lang), ctx.vocab.lang_id(lang))
    return nonempty(summary_pairs(ctx.vocab, corpus, split, lang, ctx.data.max_len, ctx.data.max_tgt_len)), ids


def _padded(xy) -> int:
    return len(xy[0]) + len(xy[1]) + 3  # <s> x </s> and <s> y (+ </s> in the targets)


for _name, _langs, _read in (("translation", "pair", read_direction), ("summarization", "lang", _read_summaries)):
    register_objective(ObjectiveKind(
        name=_name, langs=_langs, model_types=("seq2seq", "encoder"), build=_build, read=_read, padded_len=_padded,
        section=("seq2seq", SupervisedConfig), supervised=True, source_len=True))
