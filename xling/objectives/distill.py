"""Multilingual distillation of a sentence encoder (Reimers & Gurevych 2020; LASER3).

A student sentence embedder learns to map a sentence in any language to the teacher's
embedding of its pivot translation, and a pivot sentence to the teacher's embedding of itself::

    model_type: sentence
    sentence: {pivots: [en]}
    distill: {teacher: use-multilingual, loss: mse}
    objectives:
      - {type: distill, langs: [de, fr, sw, en]}    # de->en fr->en sw->en, and en->en

For a pair (x in l, its translation y in the pivot p) with teacher vector t(y), the loss is
``MSE(s(x), t(y))`` (``loss: cosine``: ``1 - cos(s(x), t(y))``; ``mse+cosine``: their sum),
averaged over the batch. ``loss: contrastive`` ranks instead: s(x) must be nearer (cosine over
``distill.temperature``) to t(y) than to the teacher vectors of the batch's other pivots, and t(y)
nearer to s(x) than to the other students (a symmetric in-batch softmax; pivots of equal text are
not negatives). The teacher's vectors share a large common direction (the USE's: cosine about 0.4
with their mean), which MSE lets a young student copy for a low loss; the ranking loss pays only
for telling sentences apart. ``mse+contrastive`` adds the two. The teacher is any ``--model`` (:mod:`xling.embeddings.backends`): an
xling embedder, a Hugging Face / sentence-transformers model or the shipped USE. It embeds the
pivot side only, each text once, into a :class:`xling.embeddings.cache.VectorCache` read as a
memory map; a resumed or repeated run finds every vector there and never loads the teacher.
The teacher sees the whole pivot sentence; the student's side is cut at ``data.max_len``.
Validation scores the tasks by retrieval (P@1 against the pivot side), like translation ranking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from xling.data.masking import pad_batch
from xling.data.span_masking import with_bos_eos
from xling.errors import XlingError
from xling.objectives.registry import BuildContext, ObjectiveKind, register_objective
from xling.objectives.sentence import ranking_loss

LOSSES = ("mse", "cosine", "mse+cosine", "contrastive", "mse+contrastive")
STORE = "distill.teacher"  # BuildContext.shared key of the run's teacher vector cache


@dataclass
class DistillConfig:
    """The ``distill`` section of a training config (objective type ``distill``)."""

    teacher: str = ""  # the teacher: any --model (xling / Hugging Face / sentence-transformers dir, hub id, use-multilingual)
    loss: str = "mse"  # "mse" (Reimers & Gurevych) | "cosine" (1 - cos) | "mse+cosine" | "contrastive" | "mse+contrastive"
    temperature: float = 0.05  # contrastive losses: cosines divided by this before the in-batch softmax
    cache: str = ""  # directory of the teacher's cached vectors; "" = $XLING_CACHE/vectors/<teacher>-<fingerprint>
    teacher_batch: int = 64  # sentences per teacher call when filling the cache

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise XlingError(f"config distill.loss: {self.loss!r} is not one of {', '.join(LOSSES)}")
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)) or self.temperature <= 0:
            raise XlingError(f"config distill.temperature: must be a positive number, got {self.temperature!r}")
        if not isinstance(self.teacher_batch, int) or isinstance(self.teacher_batch, bool) or self.teacher_batch < 1:
            raise XlingError(f"config distill.teacher_batch: must be a positive integer, got {self.teacher_batch!r}")


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str, rows: torch.Tensor | None = None,
                 temperature: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """student, teacher (B, D) -> (loss, mean cosine); ``kind`` one of :data:`LOSSES`; ``rows`` (B,)
    the teacher rows (contrastive: equal rows are not each other's negatives)."""
    if student.shape != teacher.shape:
        raise XlingError(f"distill: the student's embeddings are {student.shape[-1]}-d, the teacher's "
                         f"{teacher.shape[-1]}-d; give the student the teacher's size")
    student = student.float()
    cos = F.cosine_similarity(student, teacher, dim=-1)  # (B,)
    loss = student.new_zeros(())
    parts = kind.split("+")
    if "mse" in parts:
        loss = loss + F.mse_loss(student, teacher)
    if "cosine" in parts:
        loss = loss + (1 - cos).mean()
    if "contrastive" in parts:  # translation ranking's symmetric in-batch softmax, no margin; equal pivots excluded
        same = None if rows is None else rows[:, None] == rows[None, :]  # (B, B)
        loss = loss + ranking_loss(student, teacher, 1 / temperature, 0.0, exclude=same)[0]
    return loss, cos.detach().mean()


@dataclass
class DistillObjective:
    """Student embeddings regressed on cached teacher vectors (see the module doc)."""

    store: Any  # VectorCache: the teacher's vectors; examples hold row numbers into it
    bos_id: int = 2  # <s>: starts every student input
    eos_id: int = 3  # </s>: ends it
    loss_kind: str = "mse"  # one of LOSSES
    temperature: float = 0.05  # contrastive losses: softmax temperature of the cosines
    name: str = "distill"  # stats prefix when the batch names no task

    @property
    def target_dim(self) -> int | None:
        """Size of the teacher's vectors (None before any is cached)."""
        return self.store.dim

    def make_batch(self, examples: Sequence[tuple[Sequence[int], Sequence[int], int]], lang_ids: tuple[int, int],
                   rng: np.random.Generator) -> dict[str, Any]:
        """``tokens, langs`` (B, S) of the students' sentences, ``target`` (B, D) the teacher's
        vectors of their pivots; ``rng`` is unused (no noise)."""
        tokens = pad_batch([with_bos_eos(x, self.bos_id, self.eos_id) for x, _, _ in examples])  # (B, S)
        rows = np.array([r for _, _, r in examples], dtype=np.int64)
        target = np.asarray(self.store.vectors[rows], dtype=np.float32)  # (B, D), from the memory map
        return {"tokens": torch.from_numpy(tokens),
                "langs": torch.full(tokens.shape, int(lang_ids[0]), dtype=torch.long),
                "target": torch.from_numpy(target), "rows": torch.from_numpy(rows)}

    def loss(self, model, batch):
        emb = model(batch["tokens"], langs=batch.get("langs"))  # (B, D)
        loss, cos = distill_loss(emb, batch["target"], self.loss_kind, batch.get("rows"), self.temperature)
        name = batch.get("task", self.name)
        return loss, {f"loss/{name}": loss.detach(), f"cos/{name}": cos, "tokens": (batch["tokens"] != 0).sum()}


# ---------------------------------------------------------------- reading and the teacher


def teacher_store(ctx: BuildContext):
    """The run's teacher vector cache (one per BuildContext; the teacher itself is loaded only
    when a pivot sentence is missing from it)."""
    if STORE not in ctx.shared:
        from xling.embeddings.backends.registry import load_encoder
        from xling.embeddings.cache import VectorCache, default_cache_dir

        spec: DistillConfig = ctx.section("distill")
        if not spec.teacher:
            raise XlingError("config distill.teacher: objective distill needs a teacher (any --model: a model "
                             "directory, a hub id, use-multilingual)")
        cache = spec.cache or default_cache_dir(spec.teacher)
        ctx.shared[STORE] = VectorCache(cache, lambda: load_encoder(spec.teacher), spec.teacher,
                                        batch_size=spec.teacher_batch)
    return ctx.shared[STORE]


def distill_directions(langs: list[str], ctx: BuildContext) -> list[str]:
    """Every language into each pivot but itself, and each pivot into itself (the teacher's own vector)."""
    pivots = list(ctx.section("sentence").pivots)
    out = [f"{lang}-{p}" for lang in langs for p in pivots if p != lang]
    return out + [f"{p}-{p}" for p in pivots]


def read_distill(ctx: BuildContext, direction: str, corpus: str, split: str, cache: dict) -> tuple[list, tuple[int, int]]:
    """(student ids cut at data.max_len, pivot ids cut alike, whole pivot text) of every pair of ``src-pivot``;
    ``p-p`` reads ``{split}.p`` once. :func:`teacher_rows` then turns the texts a task keeps into teacher rows."""
    from xling.data.readers import load_corpus_split, load_parallel_split

    src, pivot = direction.split("-", 1)
    ids = (ctx.vocab.lang_id(src), ctx.vocab.lang_id(pivot))  # unknown languages before any reading
    try:
        if src == pivot:
            a = b = load_corpus_split(corpus, split, src)
        else:
            a, b = load_parallel_split(corpus, split, src, pivot)
    except XlingError as e:
        raise XlingError(f"objective distill {direction}: {e}") from None
    n = ctx.data.max_len
    xs = [np.asarray(x[:n], dtype=np.int64) for x in ctx.vocab.encode_batch(a, lang=src)]
    ys = xs if src == pivot else [np.asarray(y[:n], dtype=np.int64) for y in ctx.vocab.encode_batch(b, lang=pivot)]
    return [(xs[i], ys[i], (pivot, b[i])) for i in range(len(xs)) if len(xs[i]) and len(ys[i])], ids


def teacher_rows(ctx: BuildContext, examples: list) -> list:
    """The kept examples with their pivot text replaced by its row in the teacher's cache (the
    teacher encodes only the texts it has not seen, of the examples kept after max_examples / limits)."""
    if not examples:
        return examples
    pivot = examples[0][2][0]
    rows = teacher_store(ctx).rows([text for _, _, (_, text) in examples], pivot)
    return [(x, y, int(r)) for (x, y, _), r in zip(examples, rows)]


DISTILL = register_objective(ObjectiveKind(
    name="distill", langs="lang", model_types=("sentence",), read=read_distill,
    build=lambda ctx: DistillObjective(teacher_store(ctx), ctx.vocab.bos_id, ctx.vocab.eos_id,
                                       ctx.section("distill").loss, ctx.section("distill").temperature),
    padded_len=lambda ex: len(ex[0]) + 2, section=("distill", DistillConfig), expand=distill_directions,
    finish=teacher_rows, ranking=True))
