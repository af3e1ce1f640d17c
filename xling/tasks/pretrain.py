"""Training as a task: corpus + vocabulary -> mixture tasks -> model -> trainer.

One config (``xling train``) covers pretraining and fine-tuning: XLM (mlm / tlm / clm),
MASS, UNILM and supervised translation / summarization, mixed with weights; within an
objective, languages (pairs) are sampled with XLM's alpha-smoothed proportions. The
model is a ``TransformerEncoder`` (``model_type: encoder``: XLM, UNILM) or a
``TransformerSeq2Seq`` (``model_type: seq2seq``: MASS, translation) or a LASER-style
``SentenceEmbedder`` (``model_type: sentence``, :mod:`xling.tasks.sentence`); ``init`` starts
from a saved model (an encoder into a seq2seq model is XLM initialisation of both sides).
What each objective reads: :mod:`xling.tasks.build`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xling.config import from_dict, to_dict
from xling.data.batching import token_budget_batches
from xling.data.examples import DataConfig, stream_rows
from xling.data.masking import MaskingConfig
from xling.embeddings.model import SentenceEmbedder
from xling.errors import XlingError, unknown
from xling.evaluation.xlm import mlm_scores
from xling.generation.decoders import unilm_decoding
from xling.models.config import EncoderConfig, Seq2SeqConfig
from xling.models.encoder import TransformerEncoder
from xling.models.io import read_model_config, write_model_meta
from xling.models.seq2seq import TransformerSeq2Seq
from xling.objectives.mixture import MixtureBatches
from xling.objectives.mass import MassConfig
from xling.objectives.registry import BuildContext, objective_kind
from xling.objectives.sentence import SentenceConfig
from xling.objectives.seq2seq import SupervisedConfig
from xling.objectives.unilm import UnilmConfig
from xling.tasks import sentence as ts
from xling.tasks.build import ObjectiveSpec, build_tasks, check_objectives
from xling.tokenization.vocab import Vocab
from xling.training import distributed
from xling.training.preemption import raise_if_stopped
from xling.training.trainer import Trainer, TrainerConfig
from xling.utils.io import write_text_atomic

log = logging.getLogger(__name__)

MODEL_TYPES = {"encoder": TransformerEncoder, "seq2seq": TransformerSeq2Seq, "sentence": SentenceEmbedder}
INIT_OVERRIDABLE = ("dropout", "attn_dropout", "n_dec_layers")  # model keys allowed next to init


@dataclass
class PretrainConfig:
    model_type: str = "encoder"  # encoder (XLM, UNILM) | seq2seq (MASS, translation, summarization) | sentence (LASER)
    init: str = ""  # model directory to start from ("" = random init)
    data: DataConfig = field(default_factory=DataConfig)  # corpus, vocabulary, lengths, batches
    objectives: list[ObjectiveSpec] = field(default_factory=lambda: [ObjectiveSpec()])  # the mixture
    masking: MaskingConfig = field(default_factory=MaskingConfig)  # MLM / TLM / MASS / UNILM masking rates
    mass: MassConfig = field(default_factory=MassConfig)  # mass objectives
    unilm: UnilmConfig = field(default_factory=UnilmConfig)  # unilm objectives (mask mixture, n-grams, split)
    seq2seq: SupervisedConfig = field(default_factory=SupervisedConfig)  # translation / summarization
    sentence: SentenceConfig = field(default_factory=SentenceConfig)  # model_type: sentence (pivots, ranking loss)
    model: dict[str, Any] = field(default_factory=dict)  # EncoderConfig / Seq2SeqConfig / SentenceEmbedderConfig fields
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


def build_context(cfg: PretrainConfig, vocab: Vocab) -> BuildContext:
    """What the objective kinds see of the run: the vocabulary, the model type, the data section
    and every other section by name (the masking section with the vocabulary's <mask> id)."""
    sections = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    sections["masking"] = dataclasses.replace(cfg.masking, mask_id=vocab.mask_id)
    return BuildContext(vocab, cfg.model_type, cfg.data, sections)


def check_config(cfg: PretrainConfig) -> None:
    if cfg.model_type not in MODEL_TYPES:
        raise unknown("model_type", cfg.model_type, MODEL_TYPES)
    if not cfg.data.corpus and not all(o.corpus for o in cfg.objectives):
        raise XlingError("config data.corpus is required (or a corpus on every objective)")
    if not cfg.data.vocab and not cfg.init:
        raise XlingError("config data.vocab is required (or init, a model directory holding its vocabulary)")
    check_objectives(cfg.objectives, cfg.model_type)


def _config_cls(model_type: str) -> type:
    return Seq2SeqConfig if model_type == "seq2seq" else EncoderConfig


def model_config(cfg: PretrainConfig, vocab: Vocab) -> EncoderConfig:
    """EncoderConfig / Seq2SeqConfig from the config's model section plus the vocabulary's sizes."""
    for k in ("vocab_size", "n_langs"):
        if k in cfg.model:
            raise XlingError(f"config model.{k}: set by the vocabulary, remove it")
    sizes = {"vocab_size": len(vocab), "n_langs": len(vocab.languages)}
    return from_dict(_config_cls(cfg.model_type), {**cfg.model, **sizes}, "model.")


def init_model(cfg: PretrainConfig, vocab: Vocab):
    """The model to train: fresh from ``cfg.model``, or loaded from ``cfg.init``.

    From a directory of the same model type the weights are loaded as they are; an
    encoder directory into ``model_type: seq2seq`` initialises encoder and decoder from
    it (XLM). With ``init``, ``model`` may only change dropout (and n_dec_layers); other keys
    must equal the init model's.
    """
    if cfg.model_type == "sentence":  # its own init rules: xling.tasks.sentence
        return ts.init_sentence_model(cfg.model, vocab, cfg.init, cfg.data.max_len)
    cls = MODEL_TYPES[cfg.model_type]
    if not cfg.init:
        return cls(model_config(cfg, vocab))
    meta = read_model_config(cfg.init)
    have = meta["config"]
    changed = sorted(k for k, v in cfg.model.items() if k not in INIT_OVERRIDABLE and have.get(k) != v)
    if changed:
        k = changed[0]
        raise XlingError(f"config model.{k}={cfg.model[k]!r}: the architecture comes from init={cfg.init} "
                         f"({k}={have.get(k)!r}); only {', '.join(INIT_OVERRIDABLE)} may change")
    src_cls = {c.model_type: c for c in MODEL_TYPES.values()}.get(meta["model_type"])
    if src_cls is None or (src_cls is TransformerSeq2Seq and cls is TransformerEncoder):
        raise XlingError(f"init {cfg.init}: a {meta['model_type']} cannot initialise model_type {cfg.model_type}")
    src = src_cls.from_pretrained(cfg.init)
    if src.config.vocab_size != len(vocab) or src.config.n_langs != len(vocab.languages):
        raise XlingError(f"init {cfg.init}: its vocabulary ({src.config.vocab_size} pieces, {src.config.n_langs} "
                         f"languages) differs from data.vocab ({len(vocab)}, {len(vocab.languages)})")
    model = cls.from_encoder(src, cfg.model.get("n_dec_layers")) if src_cls is not cls else src
    over = {k: float(cfg.model[k]) for k in ("dropout", "attn_dropout") if k in cfg.model}
    if over:  # same weights, new dropout: rebuild from the changed config
        rebuilt = type(model)(dataclasses.replace(model.config, **over))
        rebuilt.load_state_dict(model.state_dict())
        model = rebuilt
    return model


def make_valid_fn(cfg: PretrainConfig, vocab: Vocab, model_type: str):
    """Validation: the loss of every task on its valid split (fixed masks and batches),
    and per-language MLM perplexity when the model is an encoder trained with MLM-like
    objectives."""
    import torch
    import torch.nn.functional as F

    from xling.objectives.base import predict_masked

    ctx = build_context(cfg, vocab)
    d = cfg.data
    tasks = [t for spec in cfg.objectives for t in build_tasks(
        [spec], ctx, split="valid", limit=d.valid_rows if objective_kind(spec.type).stream else d.valid_examples)]
    corpus_of: dict[str, str] = {}  # language -> the corpus of the first MLM-like objective naming it
    if model_type == "encoder":
        for o in cfg.objectives:
            if objective_kind(o.type).lm_probe:
                for x in (x for lang in o.langs for x in lang.split("-")):
                    corpus_of.setdefault(x, o.corpus or d.corpus)
    rows = {lang: stream_rows(vocab, corpus_of[lang], "valid", lang, d.stream_len)[: d.valid_rows]
            for lang in sorted(corpus_of)}

    retrieval = ts.retrieval_valid_fn(tasks, vocab) if model_type == "sentence" else None
    from xling.tasks.valid_generation import generation_valid_fn

    generation = generation_valid_fn(tasks, vocab, cfg.seq2seq.valid_generate, d.max_tgt_len)

    def valid_fn(model) -> dict[str, float]:
        out: dict[str, float] = {}
        dev = next(model.parameters()).device
        for t in tasks:
            if objective_kind(t.group).ranking:  # no LM targets: scored by retrieval below
                continue
            rng = np.random.default_rng(0)
            ce, n = 0.0, 0
            for idx in token_budget_batches(t.lengths, d.max_tokens):
                batch = t.objective.make_batch([t.examples[j] for j in idx], t.lang, rng)
                batch = {k: v.to(dev) if torch.is_tensor(v) else v for k, v in batch.items()}
                logits, targets = predict_masked(model, batch)
                ce += F.cross_entropy(logits.float(), targets, reduction="sum").item()
                n += int(targets.numel())
            out[f"ce/{t.name}"] = ce / max(n, 1)
        for lang, r in rows.items():
            sc = mlm_scores(model, r, vocab.lang_id(lang), len(vocab), seed=0)
            out[f"ppl/{lang}"] = sc["ppl"]
            out[f"acc/{lang}"] = sc["acc"]
        if rows:
            out["ppl/avg"] = float(np.mean([out[f"ppl/{lang}"] for lang in rows]))
        ces = [out[f"ce/{t.name}"] for t in tasks if f"ce/{t.name}" in out]
        if ces:
            out["ce/avg"] = float(np.mean(ces))
            out["ppl/tasks"] = math.exp(min(out["ce/avg"], 50.0))  # exp of the mean task cross-entropy
        if retrieval is not None:
            out.update(retrieval(model))
        if generation is not None:
            out.update(generation(model))
        return out

    return valid_fn


def run_pretraining(
    cfg: PretrainConfig, out_dir: str | Path, resume: bool = False, stop_after: int | None = None
) -> dict:
    """Train as configured; the final model lands in ``out_dir/model``.

    Everything the config can get wrong (data, tasks, model, trainer settings) is built and
    checked before anything is written, so a config error leaves no file behind. Stopped by
    SIGTERM / SIGINT, it saves a checkpoint (no final model) and raises
    :class:`xling.training.preemption.Stopped` (exit status 128 + the signal number)."""
    check_config(cfg)
    out_dir = Path(out_dir)
    run_config = to_dict(cfg)  # as given (the trainer settings below may be adjusted for DDP)
    distributed.init_distributed()
    vocab = Vocab.load(cfg.data.vocab or cfg.init)
    import torch
    import yaml

    tasks = build_tasks(cfg.objectives, build_context(cfg, vocab))
    loss_by_task = {t.name: t.objective for t in tasks}
    batches = MixtureBatches(
        tasks,
        max_tokens=cfg.data.max_tokens,
        alpha=cfg.data.alpha,
        seed=cfg.trainer.seed,
        rank=distributed.rank(),
        world_size=distributed.world_size(),
    )
    torch.manual_seed(cfg.trainer.seed)
    model = init_model(cfg, vocab)
    if cfg.model_type == "sentence" and cfg.sentence.hard_negatives:  # clusters from the starting weights
        k = ts.cluster_ranking_tasks(tasks, model, vocab, cfg.data.max_tokens, cfg.trainer.seed)
        log.info("hard negatives: %d clusters of similar pivot sentences", k)
    longest = max(int(t.lengths.max()) for t in tasks)
    if cfg.model_type == "encoder" and longest > model.config.max_positions:
        raise XlingError(f"examples of up to {longest} tokens exceed model max_positions={model.config.max_positions}: "
                         f"lower data.max_len / max_tgt_len / stream_len")
    if cfg.model_type == "seq2seq" and any(objective_kind(t.group).stream for t in tasks) and distributed.world_size() > 1:
        cfg.trainer.find_unused_parameters = True  # encoder-only batches leave the decoder without gradients
    if cfg.model_type == "sentence" and distributed.world_size() > 1:
        cfg.trainer.find_unused_parameters = True  # ranking batches leave the decoder without gradients

    def loss_fn(m, batch):
        return loss_by_task[batch["task"]].loss(m, batch)

    extra = {"pretrain": {"objectives": [to_dict(o) for o in cfg.objectives], "stream_len": cfg.data.stream_len,
                          "max_pair_len": cfg.data.max_pair_len, "max_len": cfg.data.max_len,
                          "max_tgt_len": cfg.data.max_tgt_len, "init": cfg.init or None}}
    if cfg.model_type == "encoder" and any(objective_kind(o.type).supervised for o in cfg.objectives):
        extra["pretrain"]["seq2seq_corruption"] = cfg.seq2seq.corruption  # how it decodes (generation.unilm)
        model.seq2seq_decoding = unilm_decoding({"extra": extra})  # validation by generation decodes the same way
    if cfg.init:
        prev = read_model_config(cfg.init).get("extra") or {}
        extra["init_extra"] = {k: v for k, v in prev.items() if k != "init_extra"}
    if cfg.model_type == "sentence":  # the languages SentenceEncoder accepts
        langs = ts.trained_languages(cfg.objectives, cfg.sentence)
        extra["sentence"] = ts.merged_record(langs, extra.get("init_extra"))

    def save_extra(d: Path) -> None:  # every checkpoint is also a loadable model directory
        write_model_meta(type(model), model.config, d, extra_json=extra, vocab=vocab)

    trainer = Trainer(model, loss_fn, batches, cfg.trainer, out_dir, valid_fn=make_valid_fn(cfg, vocab, cfg.model_type),
                      save_extra=save_extra, resume=resume, run_config=run_config)
    if distributed.is_main():  # only now that every check passed
        write_text_atomic(out_dir / "config.yaml", yaml.safe_dump(run_config, sort_keys=False, allow_unicode=True))
    summary = trainer.train(stop_after=stop_after)
    raise_if_stopped(summary)  # SIGTERM / SIGINT: checkpoint saved, no final model, exit 128 + signal
    if distributed.is_main():
        model.save_pretrained(out_dir / "model", vocab=vocab, extra=extra)
    return summary
