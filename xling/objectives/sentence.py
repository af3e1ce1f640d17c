"""Translation ranking: a contrastive loss on sentence embeddings with in-batch negatives.

For a batch of B translation pairs (x_i, y_i) with embeddings normalised to unit length,
``s_ij = cos(x_i, y_j)``. The additive-margin softmax (Yang et al. 2019, LaBSE) scores

    logit_ij = scale * (s_ij - margin * [i == j])

and the loss is the mean of the cross-entropies of the true pair in both directions::

    L = ( mean_i CE(logit_i., i) + mean_j CE(logit_.j, j) ) / 2

Negatives are the other pairs of the batch; a negative whose text (token ids) equals the
positive's on either side is a duplicate, not a negative, and is left out of the softmax.
The other signal of a sentence embedder, translation through the bottleneck decoder,
is :class:`xling.objectives.seq2seq.Seq2SeqObjective` on a
:class:`~xling.embeddings.model.SentenceEmbedder` (same batch layout).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from xling.data.masking import pad_batch
from xling.data.span_masking import with_bos_eos
from xling.errors import XlingError
from xling.objectives.readers import read_direction
from xling.objectives.registry import BuildContext, ObjectiveKind, register_objective
from xling.objectives.seq2seq import Seq2SeqObjective
from xling.tokenization.langs import Lang


def ranking_loss(x: torch.Tensor, y: torch.Tensor, scale: float, margin: float,
                 exclude: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """x, y (B, D) embeddings of aligned pairs (normalised here) -> (loss, stats).

    exclude: (B, B) bool, True = leave s_ij out of both softmaxes (duplicates; the diagonal
    must be False). Stats: ``acc`` (the true pair ranks first, averaged over both directions)."""
    x, y = F.normalize(x.float(), dim=-1), F.normalize(y.float(), dim=-1)
    sim = x @ y.T  # (B, B) cosines
    eye = torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
    logits = scale * (sim - margin * eye.to(sim.dtype))  # (B, B)
    if exclude is not None:
        logits = logits.masked_fill(exclude & ~eye, float("-inf"))
    target = torch.arange(sim.shape[0], device=sim.device)
    loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    with torch.no_grad():
        acc = ((logits.argmax(1) == target).float().mean() + (logits.argmax(0) == target).float().mean()) / 2
    return loss, {"acc": acc}  # a tensor: no host sync


def duplicates(xs: Sequence[Sequence[int]], ys: Sequence[Sequence[int]]) -> np.ndarray:
    """(B, B) bool: pairs i != j sharing their source or their target text."""
    def same(seqs: Sequence[Sequence[int]]) -> np.ndarray:
        keys = [tuple(int(t) for t in s) for s in seqs]
        ids = {k: i for i, k in enumerate(dict.fromkeys(keys))}
        code = np.array([ids[k] for k in keys])
        return code[:, None] == code[None, :]

    out = same(xs) | same(ys)
    np.fill_diagonal(out, False)
    return out


@dataclass
class TranslationRankingObjective:
    """Contrastive translation ranking on a sentence embedder (see the module doc)."""

    bos_id: int = 2  # <s>: starts every sentence (the encoder layout <s> x </s>)
    eos_id: int = 3  # </s>: ends every sentence
    scale: float = 20.0  # multiplies the cosines before the softmax (1 / temperature)
    margin: float = 0.3  # subtracted from the true pair's cosine (additive margin)
    name: str = "ranking"  # stats prefix when the batch names no task

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise XlingError(f"ranking scale: must be > 0, got {self.scale!r}")
        if not self.margin >= 0:
            raise XlingError(f"ranking margin: must be >= 0, got {self.margin!r}")

    def make_batch(self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]], lang_ids: tuple[int, int],
                   rng: np.random.Generator) -> dict[str, Any]:
        """``tokens, langs`` (2B, S): the B sources then the B targets (one encoder pass),
        ``exclude`` (B, B) duplicates; ``rng`` is unused (no noise)."""
        src, tgt = lang_ids
        xs, ys = [x for x, _ in pairs], [y for _, y in pairs]
        tokens = pad_batch([with_bos_eos(s, self.bos_id, self.eos_id) for s in [*xs, *ys]])  # (2B, S)
        langs = np.repeat(np.array([src, tgt], dtype=np.int64), len(pairs))[:, None]  # (2B, 1)
        return {
            "tokens": torch.from_numpy(tokens),
            "langs": torch.from_numpy(np.broadcast_to(langs, tokens.shape).copy()),
            "exclude": torch.from_numpy(duplicates(xs, ys)),
        }

    def loss(self, model, batch):
        emb = model(batch["tokens"], langs=batch.get("langs"))  # (2B, D) sentence embeddings
        B = emb.shape[0] // 2
        loss, st = ranking_loss(emb[:B], emb[B:], self.scale, self.margin, batch.get("exclude"))
        name = batch.get("task", self.name)
        stats = {f"loss/{name}": loss.detach(), f"acc/{name}": st["acc"],
                 "tokens": (batch["tokens"] != 0).sum()}  # tensors: no host sync
        return loss, stats


# ---------------------------------------------------------------- model_type: sentence


@dataclass
class SentenceConfig:
    """The ``sentence`` section of a training config (``model_type: sentence``)."""

    pivots: list[Lang] = field(default_factory=lambda: ["en"])  # target languages: every language -> each other pivot
    autoencode: bool = True  # laser_translation: a language without another pivot is reconstructed (en -> en)
    label_smoothing: float = 0.1  # laser_translation: label smoothing of the decoder loss
    scale: float = 20.0  # translation_ranking: cosines are multiplied by it in the softmax (1 / temperature)
    margin: float = 0.3  # translation_ranking: additive margin subtracted from the true pair's cosine
    hard_negatives: bool = False  # translation_ranking: batch pairs whose pivot sentences are alike (k-means
    #   clusters of the starting model's embeddings, ~one batch each), so in-batch negatives are hard; use with init

    def __post_init__(self) -> None:
        if not self.pivots or len(set(self.pivots)) != len(self.pivots):
            raise XlingError(f"config sentence.pivots: give one or more distinct languages, got {self.pivots!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise XlingError(f"config sentence.label_smoothing: must be in [0, 1), got {self.label_smoothing!r}")
        if not self.scale > 0 or not self.margin >= 0:
            raise XlingError(f"config sentence.scale/margin: need scale > 0 and margin >= 0, "
                             f"got {self.scale!r}, {self.margin!r}")


def directions(kind: str, langs: list[str], spec: SentenceConfig) -> list[str]:
    """The ``src-tgt`` directions an objective of ``kind`` trains on: every language into each
    pivot but itself; ``laser_translation`` reconstructs a language that is its only pivot
    (``autoencode``); ``translation_ranking`` uses each pair once whatever its order."""
    ranking = objective_is_ranking(kind)
    out: list[str] = []
    for lang in langs:
        targets = [p for p in spec.pivots if p != lang]
        if not targets and not ranking and spec.autoencode:
            targets = [lang]
        for p in targets:
            if ranking and f"{p}-{lang}" in out:
                continue
            out.append(f"{lang}-{p}")
    return out


def objective_is_ranking(kind: str) -> bool:
    from xling.objectives.registry import objective_kind

    return objective_kind(kind).ranking


def _read(ctx: BuildContext, direction: str, corpus: str, split: str, cache: dict) -> tuple[list, tuple[int, int]]:
    """A direction's pairs; ``en-en`` (autoencoding) reads ``{split}.en`` once."""
    from xling.data.examples import nonempty, sentences

    src, tgt = direction.split("-", 1)
    if src != tgt:
        return read_direction(ctx, direction, corpus, split, cache)
    ids = (ctx.vocab.lang_id(src), ctx.vocab.lang_id(src))
    ex = [(x, x[: ctx.data.max_tgt_len]) for x in sentences(ctx.vocab, corpus, split, src, ctx.data.max_len)]
    return nonempty(ex), ids


def _expand(kind: str):
    return lambda langs, ctx: directions(kind, langs, ctx.section("sentence"))


LASER_TRANSLATION = register_objective(ObjectiveKind(
    name="laser_translation", langs="lang", model_types=("sentence",), read=_read,
    build=lambda ctx: Seq2SeqObjective(ctx.vocab.bos_id, ctx.vocab.eos_id, ctx.section("sentence").label_smoothing),
    padded_len=lambda xy: len(xy[0]) + len(xy[1]) + 3, section=("sentence", SentenceConfig),
    expand=_expand("laser_translation")))
TRANSLATION_RANKING = register_objective(ObjectiveKind(
    name="translation_ranking", langs="lang", model_types=("sentence",), read=_read,
    build=lambda ctx: TranslationRankingObjective(ctx.vocab.bos_id, ctx.vocab.eos_id, ctx.section("sentence").scale,
                                                  ctx.section("sentence").margin),
    padded_len=lambda xy: 2 * (max(len(xy[0]), len(xy[1])) + 2),  # both sides through the encoder, as 2B rows
    section=("sentence", SentenceConfig), expand=_expand("translation_ranking"), ranking=True))
