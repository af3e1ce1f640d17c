"""MASS (Song et al. 2019): masked sequence-to-sequence pretraining on monolingual
sentences for an encoder-decoder (:class:`xling.models.seq2seq.TransformerSeq2Seq`).

The encoder sees ``<s> x </s>`` with one contiguous span of about half of the
sentence masked; the decoder is fed the span shifted right by one, at the original
positions, and predicts the span (:mod:`xling.data.span_masking`). Encoder and
decoder tokens carry the sentence's language id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from xling.data.masking import MaskingConfig
from xling.data.span_masking import mass_mask
from xling.errors import XlingError
from xling.objectives.base import masked_lm_loss
from xling.objectives.readers import read_sentences
from xling.objectives.registry import BuildContext, ObjectiveKind, register_objective


@dataclass
class MassConfig:
    """The ``mass`` section of a training config."""

    span_ratio: float = 0.5  # masked span / sentence length (MASS: 0.5)

    def __post_init__(self) -> None:
        if not 0.0 < self.span_ratio <= 1.0:
            raise XlingError(f"mass span_ratio: must be in (0, 1], got {self.span_ratio!r}")


@dataclass
class MASSObjective:
    """MASS on sentences (token ids without BOS/EOS) of one language."""

    vocab_size: int  # vocabulary size (random replacements are drawn below it)
    bos_id: int = 2  # <s>: starts the encoder input, and the decoder input of a span at the start
    eos_id: int = 3  # </s>: ends the encoder input
    masking: MaskingConfig = field(default_factory=MaskingConfig)  # 80/10/10 inside the span (mask_prob unused)
    span_ratio: float = 0.5  # span length / sentence length (MASS: 0.5)
    name: str = "mass"  # stats prefix when the batch names no task

    def __post_init__(self) -> None:
        MassConfig(self.span_ratio)  # validates

    def make_batch(self, sentences: Sequence[Sequence[int]], lang_id: int, rng: np.random.Generator) -> dict[str, Any]:
        """Encoder ``tokens, langs`` (B, S); decoder ``dec_tokens, dec_langs, dec_positions``
        and ``targets`` (B, L), L = longest span."""
        m = mass_mask(sentences, self.vocab_size, rng, self.span_ratio, self.masking, self.bos_id, self.eos_id)
        if not m.lengths.any():
            raise XlingError("mass: every sentence of the batch is empty (filter empty lines out)")
        return {
            "tokens": torch.from_numpy(m.enc_tokens),
            "langs": torch.full(m.enc_tokens.shape, lang_id, dtype=torch.long),
            "dec_tokens": torch.from_numpy(m.dec_tokens),
            "dec_langs": torch.full(m.dec_tokens.shape, lang_id, dtype=torch.long),
            "dec_positions": torch.from_numpy(m.dec_positions),
            "targets": torch.from_numpy(m.targets),
        }

    def loss(self, model, batch):
        return masked_lm_loss(model, batch, batch.get("task", self.name))


def _build(ctx: BuildContext) -> MASSObjective:
    v = ctx.vocab
    ctx.require_xling_layout("mass")
    return MASSObjective(len(v), v.bos_id, v.eos_id, ctx.section("masking"), ctx.section("mass").span_ratio)


MASS = register_objective(ObjectiveKind(
    name="mass", langs="lang", model_types=("seq2seq",), build=_build, read=read_sentences,
    padded_len=lambda x: len(x) + 2, section=("mass", MassConfig), source_len=True))  # <s> x </s>
