"""From a training config's objective list to mixture tasks with tokenized data.

One :class:`~xling.objectives.mixture.Task` per (objective, language or pair). What each
objective type reads from a corpus (Moses layout, see ARCHITECTURE.md):

==============  ======================  ====================================================
type            ``langs`` entries       data (``{split}`` = train / valid)
==============  ======================  ====================================================
mlm, clm        ``en``                  ``{split}.en`` as 256-token streams (XLM)
unilm           ``en``                  the same streams, UNILM's four-mask mixture
tlm             ``de-en`` (unordered)   ``{split}.de-en.{de,en}``, concatenated pairs
mass            ``en``                  ``{split}.en`` sentences, one span masked
translation     ``en-de`` (src-tgt)     ``{split}.de-en.{en,de}`` read as en -> de
summarization   ``en``                  ``{split}.en.desc`` -> ``{split}.en.syn``
laser_translat. ``de``                  ``{split}.de-en.*`` for each pivot (``sentence.pivots``)
translation_r.  ``de``                  the same pairs, contrastive (:mod:`xling.tasks.sentence`)
==============  ======================  ====================================================

``translation`` and ``summarization`` are supervised seq2seq objectives: teacher-forced
cross-entropy on a ``TransformerSeq2Seq``, UNILM's masked-target fine-tuning on a
``TransformerEncoder``. ``mass`` needs an encoder-decoder, ``unilm`` an encoder.
``laser_translation`` and ``translation_ranking`` train a sentence embedder (``model_type:
sentence``) and only that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xling.data.batching import make_stream
from xling.data.masking import MaskingConfig
from xling.data.readers import load_corpus_split, load_parallel_split, mono_file, read_parallel
from xling.errors import XlingError, unknown
from xling.objectives.clm import CLMObjective
from xling.objectives.mass import MASSObjective
from xling.objectives.mixture import Task
from xling.objectives.mlm import MLMObjective, TLMObjective
from xling.objectives.sentence import TranslationRankingObjective
from xling.objectives.seq2seq import Seq2SeqObjective
from xling.objectives.unilm import UnilmConfig, UnilmObjective, UnilmSeq2SeqConfig, UnilmSeq2SeqObjective
from xling.tasks.sentence import SENTENCE_TYPES, SentenceSpec, directions
from xling.tokenization.langs import LangOrPair
from xling.tokenization.vocab import Vocab

STREAM_TYPES = ("mlm", "clm", "unilm")  # stream rows of one language
PAIR_TYPES = ("tlm", "translation")  # langs entries are pairs
SEQ2SEQ_TYPES = ("translation", "summarization")  # supervised source -> target
OBJECTIVES = ("mlm", "tlm", "clm", "mass", "unilm", "translation", "summarization", *SENTENCE_TYPES)
ENCODER_ONLY = ("unilm",)  # need a TransformerEncoder
SEQ2SEQ_ONLY = ("mass",)  # need a TransformerSeq2Seq


@dataclass
class ObjectiveSpec:
    type: str = "mlm"  # mlm | tlm | clm | mass | unilm | translation | summarization
    #   | laser_translation | translation_ranking (model_type: sentence, xling.tasks.sentence)
    langs: list[LangOrPair] = field(default_factory=list)  # languages, or pairs: "de-en" (tlm), "en-de" = en->de (translation)
    weight: float = 1.0  # weight of this objective in the mixture (XLM's lambda)
    corpus: str = ""  # this objective's corpus directory (default: data.corpus)
    max_examples: int = 0  # train on a random subset of this many examples per language/pair (0 = all)


@dataclass
class MassSpec:
    span_ratio: float = 0.5  # masked span / sentence length (MASS: 0.5)


@dataclass
class UnilmSpec:
    p_bidirectional: float = 1 / 3  # share of UNILM batches with the bidirectional mask
    p_seq2seq: float = 1 / 3  # ... with the sequence-to-sequence mask
    p_left_to_right: float = 1 / 6  # ... with the left-to-right mask
    p_right_to_left: float = 1 / 6  # ... with the right-to-left mask
    split: str = "sentence"  # seq2seq split of a stream row: "sentence" (</s> nearest the middle) | "random"


@dataclass
class Seq2SeqSpec:
    label_smoothing: float = 0.1  # encoder-decoder: label smoothing of the teacher-forced loss
    tgt_mask_prob: float = 0.7  # UNILM fine-tuning: fraction of target tokens masked and predicted
    corruption: str = "bert"  # UNILM fine-tuning: masked targets 80/10/10 ("bert"), all <mask> ("mask"),
    #   UNILMv2 pseudo-masks ("pseudo") or a prefix LM predicting each next token ("causal")
    valid_generate: int = 0  # validation: greedy-decode the first N (<= data.valid_examples) valid pairs of each
    #   translation / summarization task, reporting bleu/<task>, chrf/<task>, bleu/avg (best_metric: bleu/avg); 0 = off


def check_objectives(objectives: list[ObjectiveSpec], model_type: str) -> None:
    """One-line XlingError for an unknown type, a misshapen langs entry, or an objective
    the model type cannot train."""
    if not objectives:
        raise XlingError("config objectives: give at least one")
    for i, o in enumerate(objectives):
        where = f"config objectives[{i}] ({o.type})"
        if o.type not in OBJECTIVES:
            raise unknown(f"objective type in objectives[{i}]:", o.type, OBJECTIVES)
        if o.type in ENCODER_ONLY and model_type != "encoder":
            raise XlingError(f"{where}: needs model_type: encoder (got {model_type})")
        if o.type in SEQ2SEQ_ONLY and model_type != "seq2seq":
            raise XlingError(f"{where}: needs model_type: seq2seq (got {model_type})")
        if (o.type in SENTENCE_TYPES) != (model_type == "sentence"):  # sentence embedders: their objectives only
            need = "needs model_type: sentence" if o.type in SENTENCE_TYPES else "cannot train model_type: sentence"
            raise XlingError(f"{where}: {need} (got {model_type})")
        if not o.langs:
            raise XlingError(f"{where}: langs is empty")
        if o.max_examples < 0:
            raise XlingError(f"{where}: max_examples must be >= 0, got {o.max_examples}")
        for lang in o.langs:
            if (o.type in PAIR_TYPES) != ("-" in lang):
                want = "a pair like de-en" if o.type in PAIR_TYPES else "a language, not a pair"
                raise XlingError(f"{where}: {lang!r} should be {want}")


# ---------------------------------------------------------------- data


def stream_rows(vocab: Vocab, corpus: str, split: str, lang: str, stream_len: int) -> np.ndarray:
    """(N, stream_len) XLM stream rows of ``{split}.{lang}``."""
    return make_stream(vocab.encode_batch(load_corpus_split(corpus, split, lang)), stream_len, vocab.eos_id)


def _arrays(ids: list[list[int]], max_len: int) -> list[np.ndarray]:
    return [np.asarray(x[:max_len], dtype=np.int64) for x in ids]


def sentences(vocab: Vocab, corpus: str, split: str, lang: str, max_len: int) -> list[np.ndarray]:
    """Tokenized sentences of ``{split}.{lang}``, each cut to ``max_len`` tokens."""
    return _arrays(vocab.encode_batch(load_corpus_split(corpus, split, lang)), max_len)


def pairs(vocab: Vocab, corpus: str, split: str, src: str, tgt: str, max_len: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Aligned (src, tgt) token pairs of a parallel split, in the asked direction."""
    a, b = load_parallel_split(corpus, split, src, tgt)
    return list(zip(_arrays(vocab.encode_batch(a), max_len), _arrays(vocab.encode_batch(b), max_len)))


def summary_pairs(vocab: Vocab, corpus: str, split: str, lang: str, max_src: int, max_tgt: int):
    """(document, summary) token pairs from ``{split}.{lang}.desc`` / ``.syn``."""
    doc, syn = mono_file(corpus, split, lang, ".desc"), mono_file(corpus, split, lang, ".syn")
    if not (doc.is_file() and syn.is_file()):
        raise XlingError(f"{corpus}: no {split} summarization data for {lang!r} ({doc.name}, {syn.name}); "
                         f"build it with `xling corpus debian-descriptions`")
    texts = read_parallel(doc, syn)
    d = _arrays(vocab.encode_batch([t for t, _ in texts]), max_src)
    s = _arrays(vocab.encode_batch([t for _, t in texts]), max_tgt)
    return list(zip(d, s))


# ---------------------------------------------------------------- objectives


@dataclass
class BuildSettings:
    """Everything task building needs besides the objective list."""

    corpus: str  # default corpus directory
    model_type: str  # encoder | seq2seq
    stream_len: int  # tokens per MLM/CLM/UNILM stream row
    max_pair_len: int  # TLM: tokens kept per side
    max_len: int  # MASS sentences, seq2seq sources: tokens kept
    max_tgt_len: int  # seq2seq targets: tokens kept
    masking: MaskingConfig  # MLM/TLM/UNILM masking (mask_id from the vocabulary)
    mass: MassSpec = field(default_factory=MassSpec)
    unilm: UnilmSpec = field(default_factory=UnilmSpec)
    seq2seq: Seq2SeqSpec = field(default_factory=Seq2SeqSpec)
    sentence: SentenceSpec = field(default_factory=SentenceSpec)


def make_objective(kind: str, vocab: Vocab, s: BuildSettings) -> Any:
    """The objective object of one type for this model type."""
    v, bos, eos = len(vocab), vocab.bos_id, vocab.eos_id
    if kind == "mlm":
        return MLMObjective(v, s.masking)
    if kind == "tlm":
        return TLMObjective(v, bos, eos, s.masking)
    if kind == "clm":
        return CLMObjective()
    if kind == "mass":
        return MASSObjective(v, bos, eos, s.masking, s.mass.span_ratio)
    if kind == "unilm":
        u = s.unilm
        cfg = UnilmConfig(u.p_bidirectional, u.p_seq2seq, u.p_left_to_right, u.p_right_to_left, masking=s.masking,
                          split=u.split)
        return UnilmObjective(v, cfg, eos)
    if kind == "laser_translation":  # through the bottleneck decoder: the seq2seq batch layout
        return Seq2SeqObjective(bos, eos, s.sentence.label_smoothing)
    if kind == "translation_ranking":
        return TranslationRankingObjective(bos, eos, s.sentence.scale, s.sentence.margin)
    if kind in SEQ2SEQ_TYPES:
        if s.model_type == "seq2seq":
            return Seq2SeqObjective(bos, eos, s.seq2seq.label_smoothing)
        cfg = UnilmSeq2SeqConfig(s.seq2seq.tgt_mask_prob, s.seq2seq.corruption, s.masking, s.max_len, s.max_tgt_len)
        return UnilmSeq2SeqObjective(v, cfg, bos, eos)
    raise unknown("objective type", kind, OBJECTIVES)


def task_data(kind: str, lang: str, vocab: Vocab, corpus: str, split: str, s: BuildSettings,
              cache: dict | None = None) -> tuple[list, np.ndarray, Any]:
    """(examples, padded lengths for token budgets, language id or (src, tgt) ids)."""
    cache = {} if cache is None else cache
    if kind in STREAM_TYPES:
        key = (corpus, split, lang)
        if key not in cache:
            cache[key] = stream_rows(vocab, corpus, split, lang, s.stream_len)
        rows = cache[key]
        return list(rows), np.full(len(rows), rows.shape[1]), vocab.lang_id(lang)
    if kind == "mass":
        ex = [x for x in sentences(vocab, corpus, split, lang, s.max_len) if len(x)]
        return ex, np.array([len(x) + 2 for x in ex]), vocab.lang_id(lang)
    if kind == "tlm":
        l1, l2 = lang.split("-", 1)
        ex = pairs(vocab, corpus, split, l1, l2, s.max_pair_len)
        return ex, np.array([len(x) + len(y) + 4 for x, y in ex]), (vocab.lang_id(l1), vocab.lang_id(l2))
    if kind in SENTENCE_TYPES:  # lang: a direction "de-en" (xling.tasks.sentence.directions); "en-en" = autoencoding
        src, tgt = lang.split("-", 1)
        ids = (vocab.lang_id(src), vocab.lang_id(tgt))
        if src == tgt:
            ex = [(x, x[: s.max_tgt_len]) for x in sentences(vocab, corpus, split, src, s.max_len)]
        else:
            ex = [(x[: s.max_len], y[: s.max_tgt_len])
                  for x, y in pairs(vocab, corpus, split, src, tgt, max(s.max_len, s.max_tgt_len))]
        ex = [(x, y) for x, y in ex if len(x) and len(y)]
        if kind == "translation_ranking":  # both sides through the encoder, as 2B rows
            return ex, np.array([2 * (max(len(x), len(y)) + 2) for x, y in ex]), ids
        return ex, np.array([len(x) + len(y) + 3 for x, y in ex]), ids
    if kind == "translation":
        src, tgt = lang.split("-", 1)
        ids = (vocab.lang_id(src), vocab.lang_id(tgt))
        ex = pairs(vocab, corpus, split, src, tgt, max(s.max_len, s.max_tgt_len))
        ex = [(x[: s.max_len], y[: s.max_tgt_len]) for x, y in ex]
    else:  # summarization
        ids = (vocab.lang_id(lang), vocab.lang_id(lang))
        ex = summary_pairs(vocab, corpus, split, lang, s.max_len, s.max_tgt_len)
    ex = [(x, y) for x, y in ex if len(x) and len(y)]
    return ex, np.array([len(x) + len(y) + 3 for x, y in ex]), ids


def build_tasks(objectives: list[ObjectiveSpec], vocab: Vocab, s: BuildSettings, split: str = "train",
                limit: int | None = None) -> list[Task]:
    """One task per (objective, language or pair) with its tokenized ``split`` data
    (the first ``limit`` examples when given, e.g. for validation)."""
    tasks: list[Task] = []
    cache: dict = {}
    objs: dict[str, Any] = {}
    for spec in objectives:
        corpus = spec.corpus or s.corpus
        if not Path(corpus).is_dir():
            raise XlingError(f"{corpus}: no such corpus directory")
        obj = objs.setdefault(spec.type, make_objective(spec.type, vocab, s))
        langs = directions(spec.type, spec.langs, s.sentence) if spec.type in SENTENCE_TYPES else spec.langs
        if not langs:
            raise XlingError(f"config objectives ({spec.type}): {spec.langs} give no direction with pivots "
                             f"{s.sentence.pivots}")
        for lang in langs:
            ex, lengths, ids = task_data(spec.type, lang, vocab, corpus, split, s, cache)
            if split == "train" and 0 < spec.max_examples < len(ex):  # e.g. a low-resource setting
                keep = np.sort(np.random.default_rng([0, len(ex)]).permutation(len(ex))[: spec.max_examples])
                ex, lengths = [ex[i] for i in keep], lengths[keep]
            if limit is not None:
                ex, lengths = ex[:limit], lengths[:limit]
            if not ex:
                raise XlingError(f"{corpus}: no usable {split} examples for {spec.type} {lang}")
            tasks.append(Task(f"{spec.type}-{lang}", obj, ex, lengths, ids, spec.type, spec.weight))
    return tasks
