"""One recipe per model type that ``xling train`` trains: how the model is built or initialised,
what it adds to validation, what it records, and what it needs under DDP.

==========  ========================  ==============================================================
model_type  model                     recipe
==========  ========================  ==============================================================
encoder     TransformerEncoder        XLM / UNILM; examples must fit max_positions; MLM perplexity per
                                      language in validation; records how a UNILM decodes
seq2seq     TransformerSeq2Seq        MASS / translation; from an encoder = XLM initialisation;
                                      encoder-only batches (MLM) leave the decoder unused under DDP
sentence    SentenceEmbedder          LASER-style (:mod:`xling.tasks.sentence`); retrieval P@1 in
                                      validation; records its languages; hard-negative batches
==========  ========================  ==============================================================

The driver (:func:`xling.tasks.train.run_training`) calls the recipe and knows no model type.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xling.config import from_dict
from xling.embeddings.model import SentenceEmbedder
from xling.errors import XlingError, unknown
from xling.models.config import EncoderConfig, Seq2SeqConfig
from xling.models.encoder import TransformerEncoder
from xling.models.io import read_model_config
from xling.models.record import SentenceRecord, TrainingRecord
from xling.models.seq2seq import TransformerSeq2Seq
from xling.objectives.registry import objective_kind
from xling.tasks import sentence as ts
from xling.tokenization.vocab import Vocab

INIT_OVERRIDABLE = ("dropout", "attn_dropout", "n_dec_layers")  # model keys allowed next to init


@dataclass(frozen=True)
class ModelRecipe:
    name: str  # the config's model_type
    model_class: type  # what it trains
    init: Callable[[Any, Vocab], Any]  # (train config, vocab) -> the model: fresh, or from cfg.init
    check: Callable[[Any, list], None] = lambda model, tasks: None  # refuses examples the model cannot take
    unused_in_ddp: Callable[[list], bool] = lambda tasks: False  # some batches leave parameters without gradient
    valid_parts: Callable[[Any, Vocab, list], list[Callable]] = lambda cfg, vocab, tasks: []  # extra metrics
    record: Callable[[Any, TrainingRecord], None] = lambda cfg, rec: None  # adds what loading it needs
    prepare: Callable[[Any, Any, list, Vocab], None] = lambda cfg, model, tasks, vocab: None  # before training


# ---------------------------------------------------------------- transformers (encoder, seq2seq)


def model_config(cfg: Any, vocab: Vocab) -> EncoderConfig:
    """EncoderConfig / Seq2SeqConfig from the config's model section plus the vocabulary's sizes."""
    for k in ("vocab_size", "n_langs"):
        if k in cfg.model:
            raise XlingError(f"config model.{k}: set by the vocabulary, remove it")
    sizes = {"vocab_size": len(vocab), "n_langs": len(vocab.languages)}
    cls = Seq2SeqConfig if cfg.model_type == "seq2seq" else EncoderConfig
    return from_dict(cls, {**cfg.model, **sizes}, "model.")


def init_transformer(cfg: Any, vocab: Vocab):
    """A TransformerEncoder / TransformerSeq2Seq: fresh from ``cfg.model``, or loaded from ``cfg.init``.

    From a directory of the same model type the weights are loaded as they are; an encoder
    directory into ``model_type: seq2seq`` initialises encoder and decoder from it (XLM). With
    ``init``, ``model`` may only change dropout (and n_dec_layers); other keys must equal the
    init model's."""
    cls = RECIPES[cfg.model_type].model_class
    if not cfg.init:
        return cls(model_config(cfg, vocab))
    meta = read_model_config(cfg.init)
    have = meta["config"]
    changed = sorted(k for k, v in cfg.model.items() if k not in INIT_OVERRIDABLE and have.get(k) != v)
    if changed:
        k = changed[0]
        raise XlingError(f"config model.{k}={cfg.model[k]!r}: the architecture comes from init={cfg.init} "
                         f"({k}={have.get(k)!r}); only {', '.join(INIT_OVERRIDABLE)} may change")
    src_cls = {c.model_type: c for c in (TransformerEncoder, TransformerSeq2Seq)}.get(meta["model_type"])
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


def _fits_positions(model, tasks: list) -> None:
    longest = max(int(t.lengths.max()) for t in tasks)
    if longest > model.config.max_positions:
        raise XlingError(f"examples of up to {longest} tokens exceed model max_positions={model.config.max_positions}: "
                         f"lower data.max_len / max_tgt_len / stream_len")


def _fits_teacher(model, tasks: list) -> None:
    """A student's embeddings must have its teacher's size (objective distill)."""
    for t in tasks:
        need = getattr(t.objective, "target_dim", None)
        if need is not None and need != model.dim:
            raise XlingError(f"objective {t.group}: the teacher's vectors are {need}-d but the student's embeddings "
                             f"{model.dim}-d: set model.hidden to {need // 2} (lstm) or the transformer's d_model "
                             f"to {need}")


def _mlm_probe(cfg: Any, vocab: Vocab, tasks: list) -> list[Callable]:
    """Per-language MLM perplexity (``ppl/<lang>``, ``acc/<lang>``, ``ppl/avg``) for the languages of
    the MLM-like objectives, each on the valid split of the first such objective's corpus."""
    import numpy as np

    from xling.data.examples import stream_rows
    from xling.evaluation.xlm import mlm_scores

    d = cfg.data
    corpus_of: dict[str, str] = {}
    for o in cfg.objectives:
        if objective_kind(o.type).lm_probe:
            for x in (x for lang in o.langs for x in lang.split("-")):
                corpus_of.setdefault(x, o.corpus or d.corpus)
    rows = {lang: stream_rows(vocab, corpus_of[lang], "valid", lang, d.stream_len)[: d.valid_rows]
            for lang in sorted(corpus_of)}
    if not rows:
        return []

    def probe(model) -> dict[str, float]:
        out: dict[str, float] = {}
        for lang, r in rows.items():
            sc = mlm_scores(model, r, vocab.lang_id(lang), len(vocab), seed=0)
            out[f"ppl/{lang}"], out[f"acc/{lang}"] = sc["ppl"], sc["acc"]
        out["ppl/avg"] = float(np.mean([out[f"ppl/{lang}"] for lang in rows]))
        return out

    return [probe]


def _record_decoding(cfg: Any, rec: TrainingRecord) -> None:
    """An encoder fine-tuned on a supervised kind decodes as its layout says (generation.unilm)."""
    if any(objective_kind(o.type).generates for o in cfg.objectives):
        rec.seq2seq_corruption = cfg.seq2seq.corruption


def _streams_leave_decoder_unused(tasks: list) -> bool:
    return any(objective_kind(t.group).stream for t in tasks)  # encoder-only batches: no decoder gradient


# ---------------------------------------------------------------- sentence embedders


def _record_languages(cfg: Any, rec: TrainingRecord) -> None:
    """The languages SentenceEncoder accepts: this run's plus the init model's."""
    langs = SentenceRecord(**ts.trained_languages(cfg.objectives, cfg.sentence))
    rec.sentence = langs.merged(rec.init_record.sentence if rec.init_record is not None else None)


def _hard_negatives(cfg: Any, model, tasks: list, vocab: Vocab) -> None:
    if cfg.sentence.hard_negatives:  # clusters from the starting weights
        import logging

        k = ts.cluster_ranking_tasks(tasks, model, vocab, cfg.data.max_tokens, cfg.trainer.seed)
        logging.getLogger(__name__).info("hard negatives: %d clusters of similar pivot sentences", k)


RECIPES: dict[str, ModelRecipe] = {r.name: r for r in (
    ModelRecipe("encoder", TransformerEncoder, init_transformer, check=_fits_positions, valid_parts=_mlm_probe,
                record=_record_decoding),
    ModelRecipe("seq2seq", TransformerSeq2Seq, init_transformer,
                unused_in_ddp=_streams_leave_decoder_unused),
    ModelRecipe("sentence", SentenceEmbedder,
                lambda cfg, vocab: ts.init_sentence_model(cfg.model, vocab, cfg.init, cfg.data.max_len),
                unused_in_ddp=lambda tasks: True,  # ranking batches leave the decoder without gradients
                check=_fits_teacher,
                valid_parts=lambda cfg, vocab, tasks: [ts.retrieval_valid_fn(tasks, vocab)],
                record=_record_languages, prepare=_hard_negatives),
)}


def recipe(model_type: str) -> ModelRecipe:
    if model_type not in RECIPES:
        raise unknown("model_type", model_type, RECIPES)
    return RECIPES[model_type]
