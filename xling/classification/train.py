"""Classification as a training task: config -> examples -> model -> generic trainer.

Two methods, one config (``xling classify train``):

- ``finetune``: ``init`` is an XLM-pretrained encoder directory; the whole encoder and a
  linear head are trained (:class:`~xling.classification.model.SequenceClassifier`).
- ``frozen``: ``init`` is a sentence-encoder directory (:mod:`xling.embeddings`); its
  embeddings are computed once and only a light head is trained
  (:class:`~xling.classification.model.EmbeddingClassifier`).

Training examples in several languages are mixed with XLM's alpha-smoothed sampling
(:class:`xling.objectives.mixture.MixtureBatches`, one task per language); zero-shot
transfer trains on one language and evaluates (``test``) on the others. Validation
reports accuracy per language. Checkpoints are loadable classifier directories, and
``--resume`` continues exactly. The final model lands in ``out_dir/model``; with a
``test`` section, ``out_dir/eval.json`` + ``eval.png`` hold the per-language report.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xling.classification.data import DataSpec, Example, check_labels, is_pair, label_set, load_examples, spread
from xling.classification.frozen import (check_language, embed_examples, encoder_languages, load_sentence_encoder,
                                         named_encoder)
from xling.classification.model import (
    POOLINGS,
    ClassificationObjective,
    EmbeddingClassifier,
    EmbeddingHeadConfig,
    SequenceClassifier,
)
from xling.classification.predict import accuracy, batched_logits, encode_examples
from xling.config import to_dict
from xling.errors import XlingError, unknown
from xling.evaluation.signature import model_hash
from xling.models.encoder import TransformerEncoder
from xling.models.io import WEIGHTS_FILE, save_model_dir, save_weights, write_model_meta
from xling.objectives.mixture import MixtureBatches, Task
from xling.tokenization.vocab import Vocab
from xling.training import distributed
from xling.training.preemption import raise_if_stopped
from xling.training.config import TrainerConfig
from xling.training.trainer import Trainer
from xling.utils.io import atomic_dir, write_text_atomic

log = logging.getLogger(__name__)

METHODS = ("finetune", "frozen")


@dataclass
class HeadSpec:
    pooling: str = "first"  # finetune: first (<s>) | mean (over real tokens)
    dropout: float = 0.1  # dropout before the head (on the pooled vector / the features)
    hidden: int = 0  # frozen: hidden units of an MLP head; 0 = logistic regression


@dataclass
class BatchSpec:
    max_len: int = 128  # finetune: tokens kept per sentence (segment)
    max_tokens: int = 4096  # finetune: padded tokens per micro-batch
    batch_size: int = 64  # frozen: examples per micro-batch; also the sentence encoder's batch size
    alpha: float = 0.5  # sampling smoothing when training on several languages
    valid_limit: int = 500  # examples per language used for validation accuracy, evenly spread (0 = all)


@dataclass
class ClassifyConfig:
    method: str = "finetune"  # finetune (XLM encoder, end to end) | frozen (head on sentence embeddings)
    init: str = ""  # finetune: pretrained encoder directory; frozen: sentence-encoder directory
    train: DataSpec = field(default_factory=DataSpec)  # labelled training data (usually English only)
    valid: DataSpec | None = None  # validation data: accuracy per language during training
    test: DataSpec | None = None  # evaluated at the end: out_dir/eval.json + eval.png
    head: HeadSpec = field(default_factory=HeadSpec)
    data: BatchSpec = field(default_factory=BatchSpec)
    encoder_dropout: float | None = 0.1  # finetune: encoder dropout while fine-tuning (null: the pretrained one's)
    freeze_layers: int = -1  # finetune: -1 trains all; 0 freezes the embeddings; N the embeddings + N lowest layers
    normalize: bool = True  # frozen: L2-normalise the sentence embeddings
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


def check_config(cfg: ClassifyConfig) -> None:
    if cfg.method not in METHODS:
        raise unknown("method", cfg.method, METHODS)
    if not cfg.init:
        raise XlingError(f"config init: required (a pretrained {'encoder' if cfg.method == 'finetune' else 'sentence-encoder'} directory)")
    if cfg.head.pooling not in POOLINGS:
        raise unknown("head.pooling", cfg.head.pooling, POOLINGS)
    if cfg.data.max_len < 1 or cfg.data.max_tokens < 1 or cfg.data.batch_size < 1:
        raise XlingError("config data.max_len, max_tokens and batch_size: must be >= 1")
    if cfg.encoder_dropout is not None and not 0.0 <= cfg.encoder_dropout < 1.0:
        raise XlingError(f"config encoder_dropout: must be in [0, 1), got {cfg.encoder_dropout}")


def read_data(cfg: ClassifyConfig) -> tuple[dict, dict | None, dict | None, list[str]]:
    """Train / valid / test examples by language, and the labels (those of train). Valid and
    test labels the training data lacks, or pairs against single sentences, fail here, before
    any training."""
    train = load_examples(cfg.train, "train")
    labels = label_set(train)
    if len(labels) < 2:
        raise XlingError(f"{cfg.train.path}: the training data has a single label {labels}; a classifier needs two")
    others = {}
    for name in ("valid", "test"):
        spec = getattr(cfg, name)
        others[name] = load_examples(spec, name) if spec is not None else None
        if others[name] is not None:
            check_labels(others[name], labels, f"{name} data {spec.path}")
            if is_pair(others[name]) != is_pair(train):
                raise XlingError(f"{name} data {spec.path}: pairs and single sentences differ from the training data")
    return train, others["valid"], others["test"], labels


class _Setup:
    """What each method builds: the model, the training tasks, validation examples."""

    def __init__(self, cfg: ClassifyConfig, train: dict, valid: dict | None, labels: list[str],
                 test_langs: list[str]) -> None:
        self.cfg, self.labels = cfg, labels
        self.label_ids = {y: i for i, y in enumerate(labels)}
        self.vocab: Vocab | None = None
        self.objective = ClassificationObjective()
        pair = is_pair(train)
        if cfg.method == "finetune":
            self.vocab = Vocab.load(cfg.init)
            enc = TransformerEncoder.from_pretrained(cfg.init)
            self.model = SequenceClassifier.from_encoder(enc, labels, pair, cfg.head.pooling, cfg.head.dropout,
                                                         cfg.data.max_len, cfg.encoder_dropout)
            self.model.freeze(cfg.freeze_layers)
            self.max_tokens = cfg.data.max_tokens
        else:
            self.encoder = load_sentence_encoder(cfg.init)
            self.known = encoder_languages(self.encoder)
            self.max_tokens = cfg.data.batch_size
        for lang in [*train, *(valid or {}), *test_langs]:
            self.check_language(lang)  # an unknown language fails before any encoding or training
        self.tasks = [self._task(lang, xs) for lang, xs in train.items()]
        if cfg.method == "frozen":
            dim = self.tasks[0].examples[0][0].shape[0] // (4 if pair else 1)
            self.model = EmbeddingClassifier(EmbeddingHeadConfig(
                dim, labels, pair, cfg.head.hidden, cfg.head.dropout, cfg.normalize,
                str(Path(cfg.init).resolve()), self.known))
        limit = cfg.data.valid_limit
        self.valid = {lang: self._encode(lang, spread(xs, limit)) for lang, xs in (valid or {}).items()}

    def _encode(self, lang: str, xs: list[Example]) -> tuple[list, np.ndarray]:
        if self.vocab is not None:
            return encode_examples(self.vocab, xs, self.vocab.lang_id(lang), self.cfg.data.max_len, self.label_ids)
        feats = embed_examples(self.encoder, xs, lang, self.cfg.data.batch_size, self.cfg.normalize, self.known)
        return [(f, self.label_ids[x.label]) for f, x in zip(feats, xs)], np.ones(len(xs), dtype=np.int64)

    def check_language(self, lang: str) -> None:
        if self.vocab is not None:
            self.vocab.lang_id(lang)
        else:
            check_language(lang, self.known)

    def _task(self, lang: str, xs: list[Example]) -> Task:
        examples, lengths = self._encode(lang, xs)
        lang_id = self.vocab.lang_id(lang) if self.vocab is not None else lang
        return Task(f"cls-{lang}", self.objective, examples, lengths, lang_id, "cls")

    def valid_fn(self, model) -> dict[str, float]:
        out = {}
        for lang, (examples, lengths) in self.valid.items():
            logits = batched_logits(model, examples, lengths, self.max_tokens)
            out[f"acc/{lang}"] = accuracy(logits, np.array([y for _, y in examples]))
        if out:
            out["acc/avg"] = float(np.mean(list(out.values())))
        return out


def save_classifier(model, dir: Path, extra: dict, vocab: Vocab | None, encoder_dir: str | None = None) -> Path:
    """Write the final model directory; a frozen-embedding classifier gets a copy of its
    sentence encoder under ``encoder/`` (the directory is then self-contained), or the name
    of a named encoder (``use-multilingual``: it ships with its package)."""
    if encoder_dir is None:
        return save_model_dir(model, model.config, dir, extra_json=extra, vocab=vocab)
    import dataclasses

    named = named_encoder(encoder_dir)
    config = dataclasses.replace(model.config, encoder=str(encoder_dir) if named else "encoder")
    with atomic_dir(dir) as tmp:
        save_weights(model, tmp / WEIGHTS_FILE)
        write_model_meta(type(model), config, tmp, extra_json=extra)
        if not named:
            shutil.copytree(encoder_dir, tmp / "encoder")
    return dir


def run_classification(cfg: ClassifyConfig, out_dir: str | Path, resume: bool = False,
                       stop_after: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Train as configured; returns the trainer's summary (plus ``eval`` with a test section).

    The data, model and trainer are built and checked before anything is written, so a
    config error leaves no file behind. Stopped by SIGTERM / SIGINT, it saves a checkpoint
    (no final model, no evaluation) and raises :class:`xling.training.preemption.Stopped`."""
    check_config(cfg)
    out_dir = Path(out_dir)
    run_config = to_dict(cfg)  # as given (the trainer settings below may be adjusted for DDP)
    distributed.init_distributed()
    import torch
    import yaml

    train, valid, test, labels = read_data(cfg)
    torch.manual_seed(cfg.trainer.seed)
    s = _Setup(cfg, train, valid, labels, list(test or {}))
    if cfg.method == "finetune" and distributed.world_size() > 1:
        cfg.trainer.find_unused_parameters = True  # the encoder's LM head gets no gradient
    batches = MixtureBatches(s.tasks, max_tokens=s.max_tokens, alpha=cfg.data.alpha, seed=cfg.trainer.seed,
                             rank=distributed.rank(), world_size=distributed.world_size())
    extra = {"classify": {"method": cfg.method, "init": cfg.init, "init_model": model_hash(cfg.init),
                          "train": to_dict(cfg.train), "train_langs": list(train), "labels": labels,
                          "counts": {lang: len(xs) for lang, xs in train.items()}}}

    def save_extra(d: Path) -> None:  # every checkpoint is also a loadable classifier directory
        write_model_meta(type(s.model), s.model.config, d, extra_json=extra, vocab=s.vocab)

    trainer = Trainer(s.model, s.objective.loss, batches, cfg.trainer, out_dir,
                      valid_fn=s.valid_fn if s.valid else None, save_extra=save_extra, resume=resume,
                      run_config=run_config)
    if distributed.is_main():  # only now that every check passed
        write_text_atomic(out_dir / "config.yaml", yaml.safe_dump(run_config, sort_keys=False, allow_unicode=True))
    summary = trainer.train(stop_after=stop_after)
    raise_if_stopped(summary)  # SIGTERM / SIGINT: checkpoint saved, no final model, exit 128 + signal
    if distributed.is_main():
        save_classifier(s.model, out_dir / "model", extra, s.vocab,
                        cfg.init if cfg.method == "frozen" else None)
        if test is not None and summary["stopped"] != "stop_after":
            from xling.classification.report import evaluate_classification, write_report

            result = evaluate_classification(out_dir / "model", cfg.test, examples=test, progress=progress)
            write_report(result, out_dir / "eval.json")
            summary["eval"] = {k: result[k] for k in ("average", "transfer_gap", "signature")}
    return summary
