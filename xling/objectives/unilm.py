"""UNILM (Dong et al. 2019): one shared transformer, the objective chosen by the mask.

Pretraining (:class:`UnilmObjective`) works on monolingual stream rows
(``</s> s1 </s> s2 ...`` cut at a fixed length, as MLM gets them). Each *batch* draws
one of four self-attention masks from the mixture (default 1/3 bidirectional, 1/3
sequence-to-sequence, 1/6 left-to-right, 1/6 right-to-left) and masks 15% of the
tokens 80/10/10, some of them as whole n-grams (:func:`xling.data.masking.ngram_mask`);
the masked tokens are predicted under that mask. Per-batch draws keep one (T, T) mask
for three of the four types (and the causal fast path for left-to-right); only the
seq2seq mask is per row (B, T, T), since each row has its own source length.

Seq2seq pretraining splits each row in two segments without inserting tokens: the
source ends with the ``</s>`` nearest the middle of the row (``split="sentence"``,
falling back to a random point when no ``</s>`` leaves both segments
``min_segment`` tokens), or at a random point (``split="random"``). Positions run
0..T-1, both segments carry the row's language id, tokens are masked in both segments
(as in UNILM) and ``masks.seq2seq(src_lens, T)`` lets the source see the whole source
and each target token the source plus the target up to itself.

Fine-tuning (:class:`UnilmSeq2SeqObjective`) takes (source, target) pairs laid out as
``<s> x </s> y </s>``: the source segment ``<s> x </s>`` with the source language id,
the target segment ``y </s>`` with the target language id, positions 0..T-1, the
seq2seq mask, and a fraction (0.7) of the *target* tokens, the final ``</s>`` included
(the model learns to stop), chosen and predicted. The chosen tokens are corrupted
80/10/10 by default (UNILM v1's fine-tuning does so; ``corruption="mask"`` replaces
them all by ``<mask>``). The incremental decoder (:mod:`xling.generation.unilm`) feeds
``<mask>`` at the position to predict, which matches both. ``corruption="pseudo"`` is
UNILMv2's pseudo-masking (:meth:`UnilmSeq2SeqObjective._pseudo_batch`); ``"causal"`` lays
the pair out as ``<s> x </s> <s> y </s>`` and trains each target row to predict the next
token (a prefix LM), decoded without ``<mask>``.

Batches: ``tokens, langs, positions (B, T) long; attn_mask (T, T) or (B, T, T) bool;
targets (B, T)`` (IGNORE where no loss), so :func:`masked_lm_loss` works unchanged;
pretraining batches also carry ``unilm_mask`` (the mask type, a string) for the stats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from xling.data.masking import (
    IGNORE,
    MaskingConfig,
    NgramConfig,
    choose_units,
    corrupt,
    ngram_mask,
    pad_batch,
)
from xling.data.span_masking import with_bos_eos
from xling.errors import XlingError, unknown
from xling.models import masks
from xling.objectives.base import masked_lm_loss
from xling.objectives.readers import read_streams
from xling.objectives.registry import BuildContext, ObjectiveKind, register_objective
from xling.objectives.seq2seq import SupervisedConfig

MASK_TYPES = ("bidi", "s2s", "l2r", "r2l")  # short names used in stats: loss/unilm-<type>
SPLITS = ("sentence", "random")


@dataclass
class UnilmConfig:
    p_bidirectional: float = 1 / 3  # share of batches with the bidirectional (BERT) mask
    p_seq2seq: float = 1 / 3  # share of batches with the sequence-to-sequence mask
    p_left_to_right: float = 1 / 6  # share of batches with the left-to-right (causal) mask
    p_right_to_left: float = 1 / 6  # share of batches with the right-to-left mask
    ngram: NgramConfig = field(default_factory=NgramConfig)  # 20% of masked units are 2-3-grams
    split: str = "sentence"  # seq2seq source/target split: "sentence" (</s> nearest the middle) | "random"
    min_segment: int = 2  # seq2seq: fewest tokens in the source and in the target segment

    def __post_init__(self) -> None:
        p = self.probs()
        if (p < 0).any() or abs(p.sum() - 1.0) > 1e-6:
            raise XlingError(f"unilm mixture p_bidirectional/p_seq2seq/p_left_to_right/p_right_to_left: "
                             f"must be >= 0 and sum to 1, got {p.tolist()} (sum {p.sum():.6g})")
        if self.split not in SPLITS:
            raise unknown("unilm split", self.split, SPLITS)
        if self.min_segment < 1:
            raise XlingError(f"unilm min_segment: must be >= 1, got {self.min_segment}")
        ng = self.ngram
        if not 0.0 <= ng.ngram_prob <= 1.0 or not 1 <= ng.min_ngram <= ng.max_ngram:
            raise XlingError(f"unilm ngram: need 0 <= ngram_prob <= 1 and 1 <= min_ngram <= max_ngram, got {ng}")

    def probs(self) -> np.ndarray:
        """(4,) probabilities in the order of MASK_TYPES."""
        return np.array([self.p_bidirectional, self.p_seq2seq, self.p_left_to_right, self.p_right_to_left])


def split_point(row: np.ndarray, n: int, eos_id: int, how: str, min_segment: int, rng: np.random.Generator) -> int:
    """Source length of a stream row's seq2seq split (the row's first ``n`` tokens are real).

    ``how="sentence"``: the source ends just after the ``</s>`` nearest the middle, among
    those leaving both segments at least ``min_segment`` tokens (ties: the earlier);
    without one, or with ``how="random"``, a uniform point in
    ``[min_segment, n - min_segment]``. Rows shorter than ``2 * min_segment`` split at
    ``max(1, n // 2)``.
    """
    lo, hi = min_segment, n - min_segment  # allowed source lengths
    if hi < lo:
        return max(1, n // 2)
    if how == "sentence":
        ends = np.flatnonzero(row[: n] == eos_id) + 1  # source lengths ending on </s>
        ends = ends[(ends >= lo) & (ends <= hi)]
        if len(ends):
            return int(ends[np.argmin(np.abs(2 * ends - n))])
    return int(rng.integers(lo, hi + 1))


def build_mask(kind: str, T: int, src_lens: torch.Tensor | None = None) -> torch.Tensor:
    """The UNILM self-attention mask of type ``kind`` (one of MASK_TYPES): (T, T), or
    (B, T, T) for "s2s" (which needs the (B,) source lengths)."""
    if kind == "bidi":
        return masks.bidirectional(T)
    if kind == "l2r":
        return masks.causal(T)
    if kind == "r2l":
        return masks.right_to_left(T)
    if kind == "s2s":
        return masks.seq2seq(src_lens, T)
    raise unknown("unilm mask type", kind, MASK_TYPES)


def _loss_with_kind(model, batch: dict[str, Any], name: str) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
    """masked_lm_loss under the task's name, plus loss/acc under ``unilm-<mask type>``."""
    loss, stats = masked_lm_loss(model, batch, name)
    kind = batch.get("unilm_mask")
    if kind is not None:
        stats[f"loss/unilm-{kind}"] = stats[f"loss/{name}"]
        stats[f"acc/unilm-{kind}"] = stats[f"acc/{name}"]
    return loss, stats


@dataclass
class UnilmObjective:
    """UNILM pretraining on monolingual stream rows of one language (see module doc)."""

    vocab_size: int  # vocabulary size (random replacements are drawn below it)
    config: UnilmConfig = field(default_factory=UnilmConfig)  # mask mixture, n-grams, seq2seq split
    eos_id: int = 3  # sentence separator of the stream rows (</s>)
    masking: MaskingConfig = field(default_factory=MaskingConfig)  # 15% chosen, 80/10/10 (the masking section)
    name: str = "unilm"  # default stat name (a mixture task's name wins)

    def make_batch(
        self, rows: list[np.ndarray], lang_id: int, rng: np.random.Generator, kind: str | None = None
    ) -> dict[str, Any]:
        """Rows (each (T_i,)) -> batch; ``kind`` forces a mask type (default: drawn)."""
        c = self.config
        if kind is None:
            p = c.probs()  # (4,) sums to 1 within 1e-6; renormalized for numpy's stricter check
            kind = MASK_TYPES[int(rng.choice(len(MASK_TYPES), p=p / p.sum()))]
        tokens = pad_batch(rows)  # (B, T)
        B, T = tokens.shape
        inputs, targets = ngram_mask(tokens, self.vocab_size, rng, self.masking, c.ngram)
        batch = {
            "tokens": torch.from_numpy(inputs),
            "langs": torch.full((B, T), lang_id, dtype=torch.long),
            "positions": torch.arange(T).expand(B, T).contiguous(),
            "targets": torch.from_numpy(targets),
            "unilm_mask": kind,
        }
        src_lens = None
        if kind == "s2s":
            lens = [len(r) for r in rows]
            src_lens = torch.tensor(
                [split_point(tokens[b], min(lens[b], T), self.eos_id, c.split, c.min_segment, rng) for b in range(B)]
            )  # (B,)
            batch["src_lens"] = src_lens
        batch["attn_mask"] = build_mask(kind, T, src_lens)
        return batch

    def loss(self, model, batch):
        return _loss_with_kind(model, batch, batch.get("task", self.name))


def seq2seq_example(
    src: Sequence[int], tgt: Sequence[int], src_lang: int, tgt_lang: int, bos_id: int, eos_id: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """UNILM seq2seq layout ``<s> src </s> tgt </s>``.

    Returns (tokens (T,), langs (T,), src_len): the source segment ``<s> src </s>``
    (``src_len = len(src) + 2`` tokens) carries ``src_lang``, the target segment
    ``tgt </s>`` carries ``tgt_lang``; positions are simply 0..T-1. With an empty
    ``tgt`` the result is the source segment followed by ``</s>``.
    """
    s = with_bos_eos(src, bos_id, eos_id)  # source segment, as MASS's encoder input
    t = np.concatenate([np.asarray(tgt, dtype=np.int64), [eos_id]]).astype(np.int64)
    langs = np.concatenate([np.full(len(s), src_lang), np.full(len(t), tgt_lang)]).astype(np.int64)
    return np.concatenate([s, t]), langs, len(s)


@dataclass
class UnilmSeq2SeqObjective:
    """UNILM seq2seq fine-tuning (translation, summarization) on (source, target) pairs."""

    vocab_size: int  # vocabulary size (random replacements are drawn below it)
    config: SupervisedConfig = field(default_factory=SupervisedConfig)  # tgt_mask_prob, corruption (seq2seq section)
    bos_id: int = 2  # <s>
    eos_id: int = 3  # </s>
    masking: MaskingConfig = field(default_factory=MaskingConfig)  # p_mask/p_random of "bert", mask_id
    max_src_len: int = 254  # source tokens kept (without <s> </s>); longer sources are cut
    max_tgt_len: int = 255  # target tokens kept (without the final </s>, which is always added)
    name: str = "unilm-seq2seq"  # default stat name (a mixture task's name wins)

    def make_batch(
        self, pairs: list[tuple[Sequence[int], Sequence[int]]], lang_ids: tuple[int, int], rng: np.random.Generator
    ) -> dict[str, Any]:
        c = self.config
        src_lang, tgt_lang = lang_ids
        if c.corruption == "pseudo":
            return self._pseudo_batch(pairs, src_lang, tgt_lang)
        causal = c.corruption == "causal"
        toks, langs, src_lens = zip(*self._examples(pairs, src_lang, tgt_lang, tgt_bos=causal))
        tokens = pad_batch(toks)  # (B, T)
        B, T = tokens.shape
        lens = np.array([len(t) for t in toks])
        n_src = np.array(src_lens)
        pos = np.arange(T)[None, :]  # (1, T)
        in_tgt = (pos >= n_src[:, None]) & (pos < lens[:, None])  # (B, T) target segment, final </s> included
        if causal:  # target segment <s> y </s>: its row p predicts token p + 1 (rows n .. len-2)
            inputs = tokens
            targets = np.full_like(tokens, IGNORE)
            targets[:, :-1] = np.where(in_tgt[:, :-1] & in_tgt[:, 1:], tokens[:, 1:], IGNORE)
        else:
            chosen = choose_units(in_tgt, c.tgt_mask_prob, rng, NgramConfig(ngram_prob=0.0)) >= 0  # (B, T)
            if c.corruption == "mask":
                inputs = np.where(chosen, self.masking.mask_id, tokens)
            else:
                inputs = corrupt(tokens, chosen, self.vocab_size, rng, self.masking)
            targets = np.where(chosen, tokens, IGNORE)
        src_lens_t = torch.from_numpy(n_src)  # (B,)
        return {
            "tokens": torch.from_numpy(inputs),
            "langs": torch.from_numpy(pad_batch(langs)),
            "positions": torch.arange(T).expand(B, T).contiguous(),
            "attn_mask": masks.seq2seq(src_lens_t, T),
            "targets": torch.from_numpy(targets),
            "src_lens": src_lens_t,
        }

    def _examples(self, pairs: list[tuple[Sequence[int], Sequence[int]]], src_lang: int,
                  tgt_lang: int, tgt_bos: bool = False) -> list[tuple[np.ndarray, np.ndarray, int]]:
        """:func:`seq2seq_example` of each pair, source and target cut to the configured lengths;
        ``tgt_bos``: the target segment starts with ``<s>`` (in the target language)."""
        start = [self.bos_id] if tgt_bos else []
        return [seq2seq_example(x[: self.max_src_len], start + list(y[: self.max_tgt_len]), src_lang, tgt_lang,
                                self.bos_id, self.eos_id) for x, y in pairs]

    def _pseudo_batch(self, pairs: list[tuple[Sequence[int], Sequence[int]]], src_lang: int,
                      tgt_lang: int) -> dict[str, Any]:
        """``<s> x </s> y </s>`` followed by one pseudo ``<mask>`` per target token (at that
        token's position, predicting it) under :func:`masks.seq2seq_pseudo`."""
        toks, langs, poss, tgts, ns, ms = [], [], [], [], [], []
        for t, g, n in self._examples(pairs, src_lang, tgt_lang):
            m = len(t) - n  # target tokens, final </s> included
            toks.append(np.concatenate([t, np.full(m, self.masking.mask_id)]))
            langs.append(np.concatenate([g, np.full(m, tgt_lang)]))
            poss.append(np.concatenate([np.arange(n + m), n + np.arange(m)]))
            tgts.append(np.concatenate([np.full(n + m, IGNORE), t[n:]]))
            ns.append(n)
            ms.append(m)
        tokens = pad_batch(toks)  # (B, T)
        T = tokens.shape[1]
        src_lens = torch.tensor(ns)  # (B,)
        return {
            "tokens": torch.from_numpy(tokens),
            "langs": torch.from_numpy(pad_batch(langs)),
            "positions": torch.from_numpy(pad_batch(poss)),
            "attn_mask": masks.seq2seq_pseudo(src_lens, torch.tensor(ms), T),  # (B, T, T)
            "targets": torch.from_numpy(pad_batch(tgts, pad_id=IGNORE)),
            "src_lens": src_lens,
        }

    def loss(self, model, batch):
        return masked_lm_loss(model, batch, batch.get("task", self.name))


def _build(ctx: BuildContext) -> UnilmObjective:
    return UnilmObjective(len(ctx.vocab), ctx.section("unilm"), ctx.vocab.eos_id, ctx.section("masking"))


UNILM = register_objective(ObjectiveKind(
    name="unilm", langs="lang", model_types=("encoder",), build=_build, read=read_streams, padded_len=len,
    section=("unilm", UnilmConfig), stream=True, decodes=True))
