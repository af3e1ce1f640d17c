"""``xling train``: corpus + vocabulary -> mixture tasks -> model -> trainer.

One config covers pretraining and fine-tuning of every model type: XLM (mlm / tlm / clm),
MASS, UNILM, supervised translation / summarization and LASER-style sentence embedders,
mixed with weights; within an objective, languages (pairs) are sampled with XLM's
alpha-smoothed proportions. ``model_type`` picks a recipe (:mod:`xling.tasks.recipes`: the
model, its initialisation from ``init``, its validation extras, its record); the objective
kinds come from the registry (:mod:`xling.objectives.registry`, built by :mod:`xling.tasks.build`).
This module knows neither model types nor objective kinds by name.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xling.config import to_dict
from xling.data.batching import token_budget_batches
from xling.data.examples import DataConfig
from xling.data.masking import MaskingConfig
from xling.data.noise import NoiseConfig
from xling.errors import XlingError
from xling.models.io import write_model_meta
from xling.models.record import TrainingRecord, read_record
from xling.objectives.distill import DistillConfig
from xling.objectives.mass import MassConfig
from xling.objectives.mixture import MixtureBatches
from xling.objectives.registry import BuildContext, objective_kind
from xling.objectives.sentence import SentenceConfig
from xling.objectives.seq2seq import SupervisedConfig
from xling.objectives.unilm import UnilmConfig
from xling.objectives.unmt import BacktranslationConfig
from xling.tasks.build import ObjectiveSpec, build_tasks, check_objectives, check_weights
from xling.tasks.recipes import recipe
from xling.tasks.unsupervised import check_no_parallel_overlap, check_unsupervised_config
from xling.tokenization.vocab import Vocab
from xling.training import distributed
from xling.training.preemption import raise_if_stopped
from xling.training.config import TrainerConfig
from xling.training.trainer import Trainer
from xling.utils.io import write_text_atomic

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    model_type: str = "encoder"  # a recipe: encoder (XLM, UNILM) | seq2seq (MASS, translation) | sentence (LASER)
    init: str = ""  # model directory to start from ("" = random init)
    data: DataConfig = field(default_factory=DataConfig)  # corpus, vocabulary, lengths, batches
    objectives: list[ObjectiveSpec] = field(default_factory=lambda: [ObjectiveSpec()])  # the mixture
    masking: MaskingConfig = field(default_factory=MaskingConfig)  # MLM / TLM / MASS / UNILM masking rates
    mass: MassConfig = field(default_factory=MassConfig)  # mass objectives
    unilm: UnilmConfig = field(default_factory=UnilmConfig)  # unilm objectives (mask mixture, n-grams, split)
    seq2seq: SupervisedConfig = field(default_factory=SupervisedConfig)  # translation / summarization
    sentence: SentenceConfig = field(default_factory=SentenceConfig)  # model_type: sentence (pivots, ranking loss)
    distill: DistillConfig = field(default_factory=DistillConfig)  # objective distill: the teacher, loss, vector cache
    denoise: NoiseConfig = field(default_factory=NoiseConfig)  # denoise objectives: the source's word noise
    backtranslation: BacktranslationConfig = field(default_factory=BacktranslationConfig)  # how it translates
    unsupervised: bool = False  # no parallel data (unsupervised MT): pair objectives only with weight 0 (validation),
    #   no reference-based best_metric, disjoint monolingual train sets (xling.tasks.unsupervised)
    model: dict[str, Any] = field(default_factory=dict)  # EncoderConfig / Seq2SeqConfig / SentenceEmbedderConfig fields
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


def build_context(cfg: TrainConfig, vocab: Vocab, model_config: Any = None) -> BuildContext:
    """What the objective kinds see of the run: the vocabulary, the model type, the data section,
    every other section by name (the masking section with the vocabulary's <mask> id) and the
    config of the model being trained (its layout)."""
    sections = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    sections["masking"] = dataclasses.replace(cfg.masking, mask_id=vocab.mask_id)
    decoding = TrainingRecord(seq2seq_corruption=cfg.seq2seq.corruption).decoding()  # a UNILM encoder's
    return BuildContext(vocab, cfg.model_type, cfg.data, sections, model_config,
                        generate=functools.partial(decode_ids, vocab=vocab, decoding=decoding))


def decode_ids(model, sources: list, src_id: int, tgt_id: int, *, vocab: Vocab, decoding: str = "mask",
               **search) -> list[list[int]]:
    """The best translation (token ids) of each source by ``model`` in eval mode without gradient:
    what the objectives that decode during training (back-translation) are given."""
    from xling.generation.api import generate_ids
    from xling.generation.base import GenerationConfig

    hyps = generate_ids(model, vocab, sources, src_id, tgt_id, GenerationConfig(**search),
                        batch_size=max(len(sources), 1), decoding=decoding)
    return [h[0].tokens for h in hyps]


def check_config(cfg: TrainConfig) -> None:
    recipe(cfg.model_type)  # an unknown model_type names the valid ones
    if not cfg.data.corpus and not all(o.corpus for o in cfg.objectives):
        raise XlingError("config data.corpus is required (or a corpus on every objective)")
    if not cfg.data.vocab and not cfg.init:
        raise XlingError("config data.vocab is required (or init, a model directory holding its vocabulary)")
    check_objectives(cfg.objectives, cfg.model_type)
    check_weights(cfg.objectives, cfg.trainer.max_steps)
    if cfg.unsupervised:
        check_unsupervised_config(cfg)


def init_model(cfg: TrainConfig, vocab: Vocab):
    """The model to train (its recipe's rules: fresh, or from ``cfg.init``)."""
    return recipe(cfg.model_type).init(cfg, vocab)


def training_record(cfg: TrainConfig) -> TrainingRecord:
    """What the trained model directory records (:mod:`xling.models.record`)."""
    d = cfg.data
    rec = TrainingRecord(objectives=[to_dict(o) for o in cfg.objectives], stream_len=d.stream_len,
                         max_pair_len=d.max_pair_len, max_len=d.max_len, max_tgt_len=d.max_tgt_len,
                         init=cfg.init or None)
    if cfg.init:
        rec.init_record = read_record(cfg.init)
        rec.init_record.init_record = None  # one level of history
    recipe(cfg.model_type).record(cfg, rec)
    return rec


def make_valid_fn(cfg: TrainConfig, vocab: Vocab, decoding: str = "mask", model_config: Any = None):
    """Validation: the loss of every task on its valid split (fixed masks and batches), what
    the model type's recipe adds (MLM perplexity, retrieval P@1) and, with
    ``seq2seq.valid_generate``, BLEU / chrF of greedy outputs (decoded as ``decoding`` says)."""
    import torch
    import torch.nn.functional as F

    from xling.objectives.base import predict_masked
    from xling.tasks.valid_generation import generation_valid_fn

    ctx = build_context(cfg, vocab, model_config)
    d = cfg.data
    tasks = [t for spec in cfg.objectives for t in build_tasks(
        [spec], ctx, split="valid", limit=d.valid_rows if objective_kind(spec.type).stream else d.valid_examples)]
    parts = recipe(cfg.model_type).valid_parts(cfg, vocab, tasks)
    generation = generation_valid_fn(tasks, vocab, cfg.seq2seq.valid_generate, d.max_tgt_len, decoding=decoding)

    def valid_fn(model) -> dict[str, float]:
        out: dict[str, float] = {}
        dev = next(model.parameters()).device
        for t in tasks:
            if objective_kind(t.group).ranking:  # no LM targets: scored by retrieval (the sentence recipe)
                continue
            rng = np.random.default_rng(0)
            ce, n = 0.0, 0
            for idx in token_budget_batches(t.lengths, d.max_tokens):
                batch = t.objective.make_batch([t.examples[j] for j in idx], t.lang, rng)
                batch = {k: v.to(dev) if torch.is_tensor(v) else v for k, v in batch.items()}
                if hasattr(t.objective, "prepare"):  # inputs made by the model (back-translation)
                    batch = t.objective.prepare(model, batch)
                logits, targets = predict_masked(model, batch)
                ce += F.cross_entropy(logits.float(), targets, reduction="sum").item()
                n += int(targets.numel())
            out[f"ce/{t.name}"] = ce / max(n, 1)
        ces = [out[f"ce/{t.name}"] for t in tasks if f"ce/{t.name}" in out]
        if ces:
            out["ce/avg"] = float(np.mean(ces))
            out["ppl/tasks"] = math.exp(min(out["ce/avg"], 50.0))  # exp of the mean task cross-entropy
        for part in parts:
            out.update(part(model))
        if generation is not None:
            out.update(generation(model))
        return out

    return valid_fn


def run_training(cfg: TrainConfig, out_dir: str | Path, resume: bool = False, stop_after: int | None = None) -> dict:
    """Train as configured; the final model lands in ``out_dir/model``.

    Everything the config can get wrong (data, tasks, model, trainer settings) is built and
    checked before anything is written, so a config error leaves no file behind. Stopped by
    SIGTERM / SIGINT, it saves a checkpoint (no final model) and raises
    :class:`xling.training.preemption.Stopped` (exit status 128 + the signal number)."""
    check_config(cfg)
    if cfg.unsupervised:
        check_no_parallel_overlap(cfg)
    out_dir = Path(out_dir)
    run_config = to_dict(cfg)  # as given
    distributed.init_distributed()
    vocab = Vocab.load(cfg.data.vocab or cfg.init)
    import torch
    import yaml

    rcp = recipe(cfg.model_type)
    torch.manual_seed(cfg.trainer.seed)
    model = init_model(cfg, vocab)  # first: the objectives build the model's layout
    tasks = build_tasks(cfg.objectives, build_context(cfg, vocab, model.config))
    loss_by_task = {t.name: t.objective for t in tasks}
    batches = MixtureBatches(tasks, max_tokens=cfg.data.max_tokens, alpha=cfg.data.alpha, seed=cfg.trainer.seed,
                             rank=distributed.rank(), world_size=distributed.world_size())
    rcp.prepare(cfg, model, tasks, vocab)
    rcp.check(model, tasks)
    trainer_cfg = cfg.trainer
    if distributed.world_size() > 1 and rcp.unused_in_ddp(tasks):  # the user's config stays as given
        trainer_cfg = dataclasses.replace(cfg.trainer, find_unused_parameters=True)

    def loss_fn(m, batch):
        return loss_by_task[batch["task"]].loss(m, batch)

    record = training_record(cfg)
    extra = record.to_extra()

    def save_extra(d: Path) -> None:  # every checkpoint is also a loadable model directory
        write_model_meta(type(model), model.config, d, extra_json=extra, vocab=vocab)

    trainer = Trainer(model, loss_fn, batches, trainer_cfg, out_dir, save_extra=save_extra, resume=resume,
                      valid_fn=make_valid_fn(cfg, vocab, record.decoding(), model.config), run_config=run_config)
    if distributed.is_main():  # only now that every check passed
        write_text_atomic(out_dir / "config.yaml", yaml.safe_dump(run_config, sort_keys=False, allow_unicode=True))
    summary = trainer.train(stop_after=stop_after)
    raise_if_stopped(summary)  # SIGTERM / SIGINT: checkpoint saved, no final model, exit 128 + signal
    if distributed.is_main():
        model.save_pretrained(out_dir / "model", vocab=vocab, extra=extra)
    return summary
