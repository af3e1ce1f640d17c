"""Unsupervised machine translation (Lample et al. 2018; XLM; MASS): denoising auto-encoding and
online back-translation, on monolingual sentences only.

``denoise`` (``langs: [en, fr]``): the source is the sentence with word noise
(:mod:`xling.data.noise`: local shuffle, drop, blank, on whole words, source side only), the
target the clean sentence in the same language.

``backtranslation`` (``langs: [en-fr-en, fr-en-fr]``, XLM's notation): a sentence x in l1 is
translated into l2 by the model being trained (eval mode, no gradient, greedy by default, at
most ``max_len_a * |x| + max_len_b`` tokens), then the model learns l2 -> l1 on (x̂, x).

Both build their training pairs with the supervised objective of the model type (teacher
forcing on an encoder-decoder in its layout, UNILM's seq2seq mask on an encoder:
:mod:`xling.objectives.seq2seq`). Decoding is not imported here (generation is a higher
layer): the run gives it through ``BuildContext.generate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from xling.data.masking import pad_batch
from xling.data.noise import NoiseConfig, noise_words, word_starts
from xling.errors import XlingError
from xling.objectives.base import unwrap
from xling.objectives.readers import read_sentences
from xling.objectives.registry import BuildContext, ObjectiveKind, register_objective


@dataclass
class BacktranslationConfig:
    """The ``backtranslation`` section of a training config: how the model translates for itself."""

    sampling: bool = False  # False: greedy (XLM, MASS); True: sample each token at `temperature`
    temperature: float = 1.0  # sampling: log-probs divided by it
    max_len_a: float = 1.3  # the back-translation has at most max_len_a * |x| + max_len_b tokens (XLM: 1.3 |x| + 5)
    max_len_b: int = 5

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise XlingError(f"backtranslation temperature: must be > 0, got {self.temperature!r}")
        if not self.max_len_a >= 0 or not isinstance(self.max_len_b, int) or self.max_len_b < 0:
            raise XlingError("backtranslation max_len_a / max_len_b: must be >= 0")
        if self.max_len_a == 0 and self.max_len_b == 0:
            raise XlingError("backtranslation max_len_a / max_len_b: both 0 leaves no room for a translation")


def _supervised(ctx: BuildContext) -> Any:
    """The pair objective of the model type (what `translation` builds)."""
    from xling.objectives.registry import objective_kind

    return objective_kind("translation").build(ctx)


@dataclass
class DenoiseObjective:
    """Cross-entropy of the clean sentence given its noised copy (same language on both sides)."""

    inner: Any  # the supervised pair objective (make_batch(pairs, (src, tgt), rng) / loss)
    starts: np.ndarray  # (V,) bool: ids that start a word
    noise: NoiseConfig
    mask_id: int = 4  # <mask>: what a blanked word becomes
    name: str = "denoise"

    def make_batch(self, sentences: Sequence[Sequence[int]], lang_id: int, rng: np.random.Generator) -> dict[str, Any]:
        pairs = [(noise_words(x, self.starts, self.noise, self.mask_id, rng), np.asarray(x, dtype=np.int64))
                 for x in sentences]
        return self.inner.make_batch(pairs, (lang_id, lang_id), rng)

    def loss(self, model, batch):
        return self.inner.loss(model, batch)


Generate = Callable[..., list[list[int]]]  # (model, sources, src_id, tgt_id, **search) -> token ids per source


@dataclass
class BacktranslationObjective:
    """Translate l1 -> l2 with the current model (no gradient), train l2 -> l1 on (x̂, x)."""

    inner: Any  # the supervised pair objective
    generate: Generate  # BuildContext.generate
    config: BacktranslationConfig
    max_src_len: int = 256  # back-translations are cut to this (the run's data.max_len)
    name: str = "backtranslation"

    def make_batch(self, sentences: Sequence[Sequence[int]], langs: tuple[int, int], rng: np.random.Generator
                   ) -> dict[str, Any]:
        """The monolingual sentences, padded (``bt_tokens`` (B, S), ``bt_lens`` (B,)), the
        direction (``bt_langs``: l1, l2) and a seed for everything random in :meth:`loss`."""
        return {"bt_tokens": torch.from_numpy(pad_batch([np.asarray(x, dtype=np.int64) for x in sentences])),
                "bt_lens": torch.tensor([len(x) for x in sentences]),
                "bt_langs": torch.tensor(langs[:2]),
                "bt_seed": torch.tensor(int(rng.integers(2**31)))}

    def back_translate(self, model, batch: dict[str, Any]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(x̂ in l2, x in l1) pairs: the model's translations, decoded without gradient."""
        tokens, lens = batch["bt_tokens"].cpu().numpy(), batch["bt_lens"].tolist()
        src = [tokens[i, :n] for i, n in enumerate(lens)]
        l1, l2 = batch["bt_langs"].tolist()
        c = self.config
        search = dict(max_len_a=c.max_len_a, max_len_b=c.max_len_b, sampling=c.sampling,
                      seed=int(batch["bt_seed"]), **({"temperature": c.temperature} if c.sampling else {}))
        hyps = self.generate(unwrap(model), src, l1, l2, **search)
        return [(np.asarray(h[: self.max_src_len], dtype=np.int64), x) for h, x in zip(hyps, src)]

    def prepare(self, model, batch: dict[str, Any]) -> dict[str, Any]:
        """The model batch of the l2 -> l1 pairs (on the batch's device): what :meth:`loss` trains
        on, and what validation scores."""
        pairs = self.back_translate(model, batch)
        l1, l2 = batch["bt_langs"].tolist()
        device = batch["bt_tokens"].device
        inner = self.inner.make_batch(pairs, (l2, l1), np.random.default_rng(int(batch["bt_seed"])))
        inner = {k: v.to(device) if torch.is_tensor(v) else v for k, v in inner.items()}
        inner["task"] = batch.get("task", self.name)
        return inner

    def loss(self, model, batch):
        return self.inner.loss(model, self.prepare(model, batch))


def _build_denoise(ctx: BuildContext) -> DenoiseObjective:
    v = ctx.vocab
    pieces = [v.id_to_piece(i) for i in range(len(v))]
    return DenoiseObjective(_supervised(ctx), word_starts(pieces), ctx.section("denoise"), v.mask_id)


def _build_backtranslation(ctx: BuildContext) -> BacktranslationObjective:
    if ctx.generate is None:
        raise XlingError("objective backtranslation: this run gives objectives no decoder (BuildContext.generate)")
    return BacktranslationObjective(_supervised(ctx), ctx.generate, ctx.section("backtranslation"),
                                    ctx.data.max_len)


def _read_cycle(ctx: BuildContext, direction: str, corpus: str, split: str, cache: dict) -> tuple[list, tuple]:
    """``en-fr-en``: the sentences of en, with the (en, fr) ids of the round trip."""
    l1, l2, _ = direction.split("-")
    known = ctx.vocab.languages
    missing = [code for code in (l1, l2) if code not in known]
    if missing:
        raise XlingError(f"objective backtranslation {direction}: the model does not know "
                         f"{' or '.join(map(repr, missing))} (its vocabulary's languages: {', '.join(known)})")
    sents, l1_id = read_sentences(ctx, l1, corpus, split, cache)
    return sents, (l1_id, ctx.vocab.lang_id(l2))


def _padded(x) -> int:
    return int(2.3 * len(x)) + 8  # the pair trained on: x̂ (<= 1.3 |x| + 5, with <s> </s>) and x


register_objective(ObjectiveKind(
    name="denoise", langs="lang", model_types=("seq2seq", "encoder"), build=_build_denoise, read=read_sentences,
    padded_len=lambda x: 2 * len(x) + 3, section=("denoise", NoiseConfig), decodes=True, source_len=True))
register_objective(ObjectiveKind(
    name="backtranslation", langs="cycle", model_types=("seq2seq", "encoder"), build=_build_backtranslation,
    read=_read_cycle, padded_len=_padded, section=("backtranslation", BacktranslationConfig), decodes=True,
    source_len=True))
