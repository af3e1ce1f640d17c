"""XLM pretraining as a task: corpus + vocabulary -> tasks -> encoder -> trainer.

The config names objectives as step lists, the way XLM does (``mlm`` on
languages, ``tlm`` on pairs, ``clm`` on languages), each with a weight; within an
objective, languages (pairs) are sampled with XLM's alpha-smoothed proportions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xling.config import from_dict, to_dict
from xling.data.batching import make_stream
from xling.data.masking import MaskingConfig
from xling.data.readers import load_corpus_split, load_parallel_split
from xling.errors import XlingError, unknown
from xling.evaluation.xlm import mlm_scores
from xling.models.config import EncoderConfig
from xling.models.encoder import TransformerEncoder
from xling.models.io import write_model_meta
from xling.objectives.clm import CLMObjective
from xling.objectives.mixture import MixtureBatches, Task
from xling.objectives.mlm import MLMObjective, TLMObjective
from xling.tokenization.vocab import Vocab
from xling.training import distributed
from xling.training.trainer import Trainer, TrainerConfig
from xling.utils.io import write_text_atomic

log = logging.getLogger(__name__)

OBJECTIVES = ("mlm", "tlm", "clm")


@dataclass
class DataConfig:
    corpus: str = ""  # corpus directory in the Moses layout (`xling corpus ...`)
    vocab: str = ""  # vocabulary directory (`xling vocab ...`)
    stream_len: int = 256  # tokens per MLM/CLM stream row (XLM: 256)
    max_pair_len: int = 126  # TLM: each side truncated to this many tokens
    max_tokens: int = 4096  # padded tokens per micro-batch
    alpha: float = 0.5  # language sampling smoothing within an objective (XLM: 0.5)
    valid_rows: int = 64  # stream rows per language used for validation perplexity


@dataclass
class ObjectiveSpec:
    type: str = "mlm"  # "mlm" | "tlm" | "clm"
    langs: list[str] = field(default_factory=list)  # languages (mlm, clm) or pairs "de-en" (tlm)
    weight: float = 1.0  # weight of this objective in the mixture (XLM's lambda)


@dataclass
class MaskingSpec:
    mask_prob: float = 0.15  # fraction of tokens chosen for prediction
    p_mask: float = 0.8  # chosen -> <mask>
    p_random: float = 0.1  # chosen -> random token (the rest are kept)


@dataclass
class PretrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    objectives: list[ObjectiveSpec] = field(default_factory=lambda: [ObjectiveSpec()])
    masking: MaskingSpec = field(default_factory=MaskingSpec)
    model: dict[str, Any] = field(default_factory=dict)  # EncoderConfig fields (vocab_size, n_langs are filled in)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


def model_config(cfg: PretrainConfig, vocab: Vocab) -> EncoderConfig:
    """EncoderConfig from the config's model section plus the vocabulary's sizes."""
    for k in ("vocab_size", "n_langs"):
        if k in cfg.model:
            raise XlingError(f"config model.{k}: set by the vocabulary, remove it")
    return from_dict(EncoderConfig, {**cfg.model, "vocab_size": len(vocab), "n_langs": len(vocab.languages)}, "model.")


def check_config(cfg: PretrainConfig) -> None:
    if not cfg.data.corpus or not cfg.data.vocab:
        raise XlingError("config data.corpus and data.vocab are required")
    if not cfg.objectives:
        raise XlingError("config objectives: give at least one")
    for i, o in enumerate(cfg.objectives):
        if o.type not in OBJECTIVES:
            raise unknown(f"objective type in objectives[{i}]:", o.type, OBJECTIVES)
        if not o.langs:
            raise XlingError(f"config objectives[{i}] ({o.type}): langs is empty")
        for lang in o.langs:
            if (o.type == "tlm") != ("-" in lang):
                want = "a pair like de-en" if o.type == "tlm" else "a language, not a pair"
                raise XlingError(f"config objectives[{i}] ({o.type}): {lang!r} should be {want}")


def _rows(vocab: Vocab, corpus: str, split: str, lang: str, stream_len: int) -> np.ndarray:
    ids = vocab.encode_batch(load_corpus_split(corpus, split, lang))
    return make_stream(ids, stream_len, vocab.eos_id)


def _pairs(vocab: Vocab, corpus: str, split: str, pair: str, max_len: int):
    l1, l2 = pair.split("-", 1)
    a, b = load_parallel_split(corpus, split, l1, l2)
    xa, xb = vocab.encode_batch(a), vocab.encode_batch(b)
    return [(np.asarray(x[:max_len], dtype=np.int64), np.asarray(y[:max_len], dtype=np.int64)) for x, y in zip(xa, xb)]


def build_tasks(cfg: PretrainConfig, vocab: Vocab) -> list[Task]:
    """One task per (objective, language or pair), with its tokenized train data."""
    masking = MaskingConfig(cfg.masking.mask_prob, cfg.masking.p_mask, cfg.masking.p_random, mask_id=vocab.mask_id)
    v = len(vocab)
    tasks: list[Task] = []
    rows_cache: dict[str, np.ndarray] = {}
    for spec in cfg.objectives:
        for lang in spec.langs:
            if spec.type == "tlm":
                l1, l2 = lang.split("-", 1)
                ids = (vocab.lang_id(l1), vocab.lang_id(l2))
                ex = _pairs(vocab, cfg.data.corpus, "train", lang, cfg.data.max_pair_len)
                obj = TLMObjective(v, vocab.bos_id, vocab.eos_id, masking)
                lengths = np.array([len(x) + len(y) + 4 for x, y in ex])
            else:
                ids = vocab.lang_id(lang)
                if lang not in rows_cache:
                    rows_cache[lang] = _rows(vocab, cfg.data.corpus, "train", lang, cfg.data.stream_len)
                rows = rows_cache[lang]
                ex = list(rows)
                obj = MLMObjective(v, masking) if spec.type == "mlm" else CLMObjective()
                lengths = np.full(len(ex), rows.shape[1])
            tasks.append(Task(f"{spec.type}-{lang}", obj, ex, lengths, ids, spec.type, spec.weight))
    return tasks


def make_valid_fn(cfg: PretrainConfig, vocab: Vocab):
    """Per-language validation MLM perplexity (fixed masks) on the valid split."""
    langs = sorted({lang for o in cfg.objectives if o.type != "tlm" for lang in o.langs})
    langs += sorted({p for o in cfg.objectives if o.type == "tlm" for p in "-".join(o.langs).split("-")} - set(langs))
    data = {
        lang: _rows(vocab, cfg.data.corpus, "valid", lang, cfg.data.stream_len)[: cfg.data.valid_rows] for lang in langs
    }

    def valid_fn(model) -> dict[str, float]:
        out = {}
        for lang, rows in data.items():
            s = mlm_scores(model, rows, vocab.lang_id(lang), len(vocab), seed=0)
            out[f"ppl/{lang}"] = s["ppl"]
            out[f"acc/{lang}"] = s["acc"]
        out["ppl/avg"] = float(np.mean([out[f"ppl/{lang}"] for lang in langs]))
        return out

    return valid_fn


def run_pretraining(
    cfg: PretrainConfig, out_dir: str | Path, resume: bool = False, stop_after: int | None = None
) -> dict:
    """Train an XLM encoder as configured; the final model lands in ``out_dir/model``."""
    check_config(cfg)
    out_dir = Path(out_dir)
    distributed.init_distributed()
    vocab = Vocab.load(cfg.data.vocab)
    mcfg = model_config(cfg, vocab)
    import yaml

    if distributed.is_main():
        write_text_atomic(out_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True))
    tasks = build_tasks(cfg, vocab)
    loss_by_task = {t.name: t.objective for t in tasks}
    batches = MixtureBatches(
        tasks,
        max_tokens=cfg.data.max_tokens,
        alpha=cfg.data.alpha,
        seed=cfg.trainer.seed,
        rank=distributed.rank(),
        world_size=distributed.world_size(),
    )

    import torch

    torch.manual_seed(cfg.trainer.seed)
    model = TransformerEncoder(mcfg)

    def loss_fn(m, batch):
        return loss_by_task[batch["task"]].loss(m, batch)

    extra = {"pretrain": {"objectives": [to_dict(o) for o in cfg.objectives], "stream_len": cfg.data.stream_len,
                          "max_pair_len": cfg.data.max_pair_len}}

    def save_extra(d: Path) -> None:  # every checkpoint is also a loadable model directory
        write_model_meta(TransformerEncoder, mcfg, d, extra_json=extra, vocab=vocab)

    trainer = Trainer(
        model, loss_fn, batches, cfg.trainer, out_dir, valid_fn=make_valid_fn(cfg, vocab), save_extra=save_extra, resume=resume
    )
    summary = trainer.train(stop_after=stop_after)
    if distributed.is_main():
        model.save_pretrained(out_dir / "model", vocab=vocab, extra=extra)
    return summary
