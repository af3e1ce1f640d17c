"""Running a trained classifier: logits in input order, for either model kind.

    from xling.classification.predict import Predictor
    clf = Predictor.load("RUN/model")
    clf.predict(["text", ...], lang="de")                  # ["law", ...], input order kept
    clf.predict([("premise", "hypothesis"), ...], lang="fr")
    clf.probabilities(items, lang)                         # (N, C) float32, columns = clf.labels

A language the model does not know is an XlingError naming the known ones. Sentences longer
than the model's ``max_len`` (fine-tuned) or its sentence encoder's are cut: counted into a
``truncation`` counter when the caller passes one (:mod:`xling.utils.truncation`), else one
warning per call.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xling.classification.data import Example
from xling.classification.frozen import (check_language, embed_examples, encoder_languages, load_sentence_encoder,
                                         named_encoder)
from xling.classification.model import ClassificationObjective, EmbeddingClassifier, SequenceClassifier, token_example
from xling.data.batching import token_budget_batches
from xling.errors import XlingError
from xling.models.io import read_model_config
from xling.tokenization.vocab import Vocab
from xling.utils.truncation import Truncation, counting

log = logging.getLogger(__name__)

MODEL_KINDS = {c.model_type: c for c in (SequenceClassifier, EmbeddingClassifier)}


def encode_examples(vocab: Vocab, examples: list[Example], lang_id: int, max_len: int, labels: dict[str, int] | None,
                    truncation: Truncation | None = None) -> tuple[list, np.ndarray]:
    """Token examples ``(token_example(...), label id)`` (label -1 without ``labels``) and
    their lengths (N,); ``truncation`` counts the sentences (both of a pair) cut to ``max_len``."""
    lang = vocab.lang_code(lang_id)  # the text's language, for a vocabulary's language-dependent steps (Moses)
    a = vocab.encode_batch([x.text for x in examples], lang=lang)
    pairs = bool(examples) and examples[0].text_b is not None
    b = vocab.encode_batch([x.text_b for x in examples], lang=lang) if pairs else None
    if truncation is not None:
        truncation.add([len(x) for x in a + (b or [])], max_len)
    out = []
    for i, x in enumerate(examples):
        t = token_example(a[i], b[i] if b is not None else None, lang_id, max_len, vocab.bos_id, vocab.eos_id)
        out.append((t, labels[x.label] if labels is not None else -1))
    return out, np.array([len(t[0]) for t, _ in out], dtype=np.int64)


@torch.no_grad()
def batched_logits(model: torch.nn.Module, examples: list, lengths: np.ndarray, max_tokens: int) -> np.ndarray:
    """Logits (N, C) of encoded examples, in their order (batched by length, then put back)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    objective = ClassificationObjective()
    out = np.zeros((len(examples), len(model.config.labels)), dtype=np.float32)
    for idx in token_budget_batches(lengths, max_tokens):
        batch = objective.make_batch([examples[j] for j in idx], None)
        inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
        out[idx] = model(**inputs).float().cpu().numpy()  # (b, C)
    model.train(was_training)
    return out


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(-1) == labels).mean()) if len(labels) else 0.0


class Predictor:
    """A loaded classifier (either kind) with its vocabulary or sentence encoder."""

    def __init__(self, model: torch.nn.Module, vocab: Vocab | None = None, encoder: Any = None,
                 max_tokens: int = 4096, batch_size: int = 64) -> None:
        self.model = model.eval()
        self.vocab, self.encoder = vocab, encoder
        self.max_tokens, self.batch_size = max_tokens, batch_size
        self.labels: list[str] = list(model.config.labels)
        self.pair: bool = model.config.pair
        if vocab is not None:
            self.languages = vocab.languages
        else:
            self.languages = list(model.config.languages) or encoder_languages(encoder)

    @classmethod
    def load(cls, dir: str | Path, device: str = "cpu", **kw: Any) -> "Predictor":
        """Load a classifier directory written by ``xling classify train`` (or a checkpoint)."""
        meta = read_model_config(dir)
        kind = MODEL_KINDS.get(meta["model_type"])
        if kind is None:
            raise XlingError(f"{dir}: a {meta['model_type']} model, not a classifier (expected one of "
                             f"{', '.join(MODEL_KINDS)}; train one with `xling classify train`)")
        model = kind.from_pretrained(dir, device=device)
        if kind is SequenceClassifier:
            return cls(model, vocab=Vocab.load(dir), **kw)
        enc_dir = Path(model.config.encoder)
        enc_dir = enc_dir if enc_dir.is_absolute() else Path(dir) / enc_dir
        if not enc_dir.is_dir() and named_encoder(model.config.encoder):
            enc_dir = model.config.encoder  # a named encoder (use-multilingual): recorded by name
        return cls(model, encoder=load_sentence_encoder(enc_dir), **kw)

    def _examples(self, items: list, lang: str) -> list[Example]:
        out = []
        for i, item in enumerate(items, 1):
            is_pair = isinstance(item, (tuple, list))
            if is_pair != self.pair:
                want = "(premise, hypothesis) pairs" if self.pair else "single sentences"
                raise XlingError(f"input {i}: this classifier takes {want}")
            out.append(Example(item[0], "", lang, item[1]) if is_pair else Example(item, "", lang))
        return out

    def check_language(self, lang: str) -> None:
        """An XlingError naming the known languages when the model does not know ``lang``."""
        if self.vocab is not None:
            self.vocab.lang_id(lang)
        else:
            check_language(lang, self.languages)

    @property
    def unit(self) -> str:
        """What a truncation count counts: input lines, or the sentences of pairs."""
        return "sentences" if self.pair else "lines"

    def logits_of(self, examples: list[Example], lang: str, truncation: Truncation | None = None) -> np.ndarray:
        """Logits (N, C) of examples in language ``lang`` (their own labels are ignored);
        sentences cut to the model's length are counted into ``truncation`` (else one warning)."""
        self.check_language(lang)
        if not examples:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        with counting(truncation, log, self.unit, prefix=f"{lang}: ") as cut:  # said before the model runs
            if self.vocab is not None:
                enc, lengths = encode_examples(self.vocab, examples, self.vocab.lang_id(lang),
                                               self.model.config.max_len, None, cut)
            else:
                feats = embed_examples(self.encoder, examples, lang, self.batch_size, self.model.config.normalize,
                                       self.languages, cut)
                enc, lengths = [(f, -1) for f in feats], np.ones(len(feats), dtype=np.int64)
        budget = self.max_tokens if self.vocab is not None else self.batch_size  # tokens, or feature rows
        return batched_logits(self.model, enc, lengths, budget)

    def probabilities(self, items: list, lang: str, truncation: Truncation | None = None) -> np.ndarray:
        """Class probabilities (N, C) of texts (or (premise, hypothesis) pairs) in ``lang``."""
        logits = self.logits_of(self._examples(items, lang), lang, truncation)
        return torch.softmax(torch.from_numpy(logits), -1).numpy()

    def predict(self, items: list, lang: str, truncation: Truncation | None = None) -> list[str]:
        """The predicted label of every item, in input order."""
        return [self.labels[i] for i in self.logits_of(self._examples(items, lang), lang, truncation).argmax(-1)]
