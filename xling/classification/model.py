"""Classification models and how examples become their inputs.

- :class:`SequenceClassifier`: an XLM :class:`~xling.models.encoder.TransformerEncoder`
  fine-tuned end to end, a pooled vector (the first token ``<s>``, or the mean over
  real tokens) and a linear head. A pair is one sequence ``<s> a </s> <s> b </s>`` built
  as TLM builds it (:func:`xling.objectives.mlm.concat_pair`): positions restart at 0 for
  the second segment and each segment carries its language id (the same language here).
- :class:`EmbeddingClassifier`: a light head (logistic regression, or an MLP with one
  hidden layer) on frozen sentence embeddings; a pair is ``[u, v, |u - v|, u * v]``
  (InferSent / LASER's XNLI features).

Both are saved as model directories (:mod:`xling.models.io`); the label names travel in
the config. :class:`ClassificationObjective` makes batches and the loss for the generic
trainer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xling.data.masking import pad_batch
from xling.errors import XlingError, unknown
from xling.models.config import EncoderConfig
from xling.models.encoder import TransformerEncoder
from xling.models.io import load_model_dir
from xling.models.pooling import pool
from xling.objectives.mlm import concat_pair
from xling.tokenization.langs import Lang

POOLINGS = ("first", "mean")
INPUT_KEYS = ("tokens", "langs", "positions", "features")  # batch keys that go to the model


def _check_head(labels: list[str], dropout: float) -> None:
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise XlingError(f"a classifier needs at least two distinct labels, got {labels}")
    if not 0.0 <= dropout < 1.0:
        raise XlingError(f"classifier dropout must be in [0, 1), got {dropout}")


@dataclass
class ClassifierConfig:
    """A :class:`SequenceClassifier`: its encoder and its head."""

    encoder: EncoderConfig  # the transformer encoder (from the pretrained model)
    labels: list[str]  # class names; class id = index
    pair: bool = False  # inputs are sentence pairs (premise, hypothesis)
    pooling: str = "first"  # first (the <s> token) | mean (over real tokens)
    dropout: float = 0.1  # dropout on the pooled vector
    max_len: int = 128  # tokens kept per sentence (segment)

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise unknown("pooling", self.pooling, POOLINGS)
        _check_head(self.labels, self.dropout)
        need = self.max_len + 2
        if self.max_len < 1 or need > self.encoder.max_positions:
            raise XlingError(f"classifier max_len={self.max_len}: a segment of max_len + 2 tokens must fit the "
                             f"encoder's max_positions={self.encoder.max_positions}")


class SequenceClassifier(nn.Module):
    """TransformerEncoder + pooling + linear head: tokens (B, T) -> logits (B, C)."""

    model_type = "sequence_classifier"

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = TransformerEncoder(config.encoder)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.encoder.d_model, len(config.labels))
        nn.init.normal_(self.head.weight, std=config.encoder.init_std)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_encoder(cls, encoder: TransformerEncoder, labels: list[str], pair: bool = False, pooling: str = "first",
                     dropout: float = 0.1, max_len: int = 128, encoder_dropout: float | None = None
                     ) -> "SequenceClassifier":
        """A classifier on a pretrained encoder (weights copied); ``encoder_dropout`` sets
        the encoder's dropout and attention dropout for fine-tuning (None: keep them)."""
        enc_cfg = encoder.config
        if encoder_dropout is not None:
            enc_cfg = dataclasses.replace(enc_cfg, dropout=encoder_dropout, attn_dropout=encoder_dropout)
        model = cls(ClassifierConfig(enc_cfg, list(labels), pair, pooling, dropout, max_len))
        model.encoder.load_state_dict(encoder.state_dict())
        return model

    def freeze(self, n_layers: int) -> None:
        """Fine-tune only the top of the encoder: ``n_layers`` = -1 trains everything; 0 freezes
        the embeddings (token, position, language, their norm); N > 0 freezes the embeddings
        and the N lowest layers. Keeping the bottom fixed keeps what pretraining aligned across
        languages, which can narrow the zero-shot transfer gap."""
        n_total = len(self.encoder.layers)
        if not -1 <= n_layers <= n_total:
            raise XlingError(f"freeze_layers={n_layers}: must be -1 (none), 0 (embeddings) or up to the "
                             f"encoder's {n_total} layers")
        if n_layers < 0:
            return
        enc = self.encoder
        for module in [enc.tok_emb, enc.pos_emb, enc.lang_emb, enc.emb_norm, *enc.layers[:n_layers]]:
            if module is not None:  # lang_emb: None without language embeddings
                module.requires_grad_(False)

    def forward(self, tokens: torch.Tensor, langs: torch.Tensor | None = None,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        h = self.encoder(tokens, langs=langs, positions=positions)  # (B, T, D)
        real = tokens != self.config.encoder.pad_id  # (B, T); every row starts with <s>
        pooled = pool(h, real, "cls" if self.config.pooling == "first" else "mean")  # (B, D)
        return self.head(self.drop(pooled))  # (B, C)

    @classmethod
    def from_pretrained(cls, dir, device: str = "cpu") -> "SequenceClassifier":
        return load_model_dir(cls, ClassifierConfig, dir, device=device)


@dataclass
class EmbeddingHeadConfig:
    """An :class:`EmbeddingClassifier` on frozen sentence embeddings."""

    dim: int  # sentence embedding size d
    labels: list[str]  # class names; class id = index
    pair: bool = False  # features of a pair: [u, v, |u - v|, u * v] (4 d)
    hidden: int = 0  # hidden units of the MLP; 0 = logistic regression
    dropout: float = 0.1  # dropout on the features
    normalize: bool = True  # L2-normalised embeddings
    encoder: str = "encoder"  # the SentenceEncoder directory (relative to this model's directory, or absolute), or a backend name (use-multilingual)
    languages: list[Lang] = field(default_factory=list)  # languages the encoder knows ([] = not recorded)

    def __post_init__(self) -> None:
        _check_head(self.labels, self.dropout)
        if self.dim < 1 or self.hidden < 0:
            raise XlingError(f"embedding head: dim must be >= 1 and hidden >= 0, got {self.dim}, {self.hidden}")

    @property
    def n_features(self) -> int:
        return 4 * self.dim if self.pair else self.dim


class EmbeddingClassifier(nn.Module):
    """Features (B, F) -> logits (B, C): dropout, then linear (or linear-ReLU-linear)."""

    model_type = "embedding_classifier"

    def __init__(self, config: EmbeddingHeadConfig) -> None:
        super().__init__()
        self.config = c = config
        n = len(c.labels)
        layers: list[nn.Module] = [nn.Dropout(c.dropout)]
        if c.hidden:
            layers += [nn.Linear(c.n_features, c.hidden), nn.ReLU(), nn.Linear(c.hidden, n)]
        else:
            layers.append(nn.Linear(c.n_features, n))
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)  # (B, C)

    @classmethod
    def from_pretrained(cls, dir, device: str = "cpu") -> "EmbeddingClassifier":
        return load_model_dir(cls, EmbeddingHeadConfig, dir, device=device)


def pair_features(u: np.ndarray, v: np.ndarray | None) -> np.ndarray:
    """Sentence embeddings (N, d) -> features: u alone, or [u, v, |u - v|, u * v] (N, 4d)."""
    if v is None:
        return u.astype(np.float32)
    return np.concatenate([u, v, np.abs(u - v), u * v], axis=1).astype(np.float32)


def token_example(a: list[int], b: list[int] | None, lang_id: int, max_len: int,
                  bos_id: int, eos_id: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """``<s> a </s>`` or the TLM-style pair ``<s> a </s> <s> b </s>`` (each sentence cut to
    ``max_len`` tokens): (tokens, positions or None for 0..T-1, langs), each (T,)."""
    a = np.asarray(a[:max_len], dtype=np.int64)
    if b is None:
        tokens = np.concatenate([[bos_id], a, [eos_id]]).astype(np.int64)
        return tokens, None, np.full(len(tokens), lang_id, dtype=np.int64)
    b = np.asarray(b[:max_len], dtype=np.int64)
    return concat_pair(a, b, lang_id, lang_id, bos_id, eos_id)


@dataclass
class ClassificationObjective:
    """Batches and loss of classification. An example is ``(token_example(...), label id)``
    for a :class:`SequenceClassifier`, or ``(features (F,), label id)`` for an
    :class:`EmbeddingClassifier`."""

    name: str = "cls"

    def make_batch(self, examples: list, lang: Any = None, rng: np.random.Generator | None = None) -> dict[str, Any]:
        labels = torch.tensor([y for _, y in examples], dtype=torch.long)  # (B,)
        first = examples[0][0]
        if isinstance(first, np.ndarray):  # frozen features
            return {"features": torch.from_numpy(np.stack([x for x, _ in examples])), "labels": labels}  # (B, F)
        batch = {
            "tokens": torch.from_numpy(pad_batch([t for (t, _, _), _ in examples])),  # (B, T)
            "langs": torch.from_numpy(pad_batch([g for (_, _, g), _ in examples])),  # (B, T)
            "labels": labels,
        }
        if first[1] is not None:  # pairs: positions restart in the second segment
            batch["positions"] = torch.from_numpy(pad_batch([p for (_, p, _), _ in examples]))  # (B, T)
        return batch

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        logits = model(**{k: batch[k] for k in INPUT_KEYS if k in batch}).float()  # (B, C)
        labels = batch["labels"]
        loss = F.cross_entropy(logits, labels)
        with torch.no_grad():  # stats stay tensors on the device: no host sync
            acc = (logits.argmax(-1) == labels).float().mean()
            n_tok = (batch["tokens"] != 0).sum() if "tokens" in batch else float(len(labels))
        name = batch.get("task", self.name)
        return loss, {f"loss/{name}": loss.detach(), f"acc/{name}": acc, "tokens": n_tok}
