"""Generate text with a trained model: texts in, texts out, in input order.

    m = load_generation_model("runs/mt/model")      # model, vocab, decoding, source_len
    outs = generate_texts(m.model, m.vocab, ["Hello world.", ""], "en", "de", GenerationConfig(beam=5),
                          decoding=m.decoding, max_src_len=m.source_len)

Inputs are encoded, truncated to the model's source budget (one warning per call counting
the truncated lines, or counted into the caller's ``truncation``: :mod:`xling.utils.truncation`), sorted by length (longest first) into batches of at most
``batch_size`` sentences and ``max_tokens`` padded source tokens (each beam or sample
row counted), decoded, and put back in input order. Empty or whitespace-only lines give
"" without reaching the model. Outputs never contain line breaks (they become spaces),
so one output line per input line holds. Sampling uses one torch.Generator seeded with
``cfg.seed`` across the batches: the same inputs, seed and batching give the same samples.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import NamedTuple

import torch
from tqdm import tqdm

from xling.errors import XlingError, unknown
from xling.generation.base import GenerationConfig, Hypothesis
from xling.generation.decoders import (
    check_decodable,
    max_source_len,
    step_decoder,
)
from xling.generation.search import generate
from xling.models.encoder import TransformerEncoder
from xling.models.io import read_model_config
from xling.models.seq2seq import TransformerSeq2Seq
from xling.models.record import TrainingRecord
from xling.objectives.registry import known_kinds
from xling.tokenization.vocab import Vocab
from xling.utils.truncation import Truncation, counting

log = logging.getLogger(__name__)

MODEL_CLASSES = {cls.model_type: cls for cls in (TransformerEncoder, TransformerSeq2Seq)}
PROGRESS_MIN_LINES = 100  # no progress bar for fewer input lines


QUANTIZE = ("int8",)  # inference-only weight quantizations load_generation_model offers


def quantize_for_inference(model: torch.nn.Module, mode: str) -> torch.nn.Module:
    """``int8``: dynamic quantization of every Linear layer (the LM head included; weights
    int8 per tensor, activations quantized on the fly; embeddings stay float32). CPU only:
    about 1.4x faster beam search on AVX-512-VNNI; check BLEU on a dev set before relying on it."""
    if mode not in QUANTIZE:
        raise unknown("quantization", mode, QUANTIZE)
    if next(model.parameters()).device.type != "cpu":
        raise XlingError(f"--quantize {mode}: CPU only (dynamic int8 quantization has no GPU kernels)")
    import warnings

    with warnings.catch_warnings():  # torch.ao's notice that this API is moving to torchao
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


class GenerationModel(NamedTuple):
    """A loaded model ready to generate: pass ``decoding`` on to the generate functions."""

    model: torch.nn.Module  # eval mode
    vocab: Vocab
    decoding: str  # how a UNILM encoder decodes ("mask" | "causal", from its record); "mask" otherwise
    source_len: int | None  # the source length it was trained with (trained_source_len)


def load_generation_model(model_dir: str | os.PathLike, device: str = "cpu", quantize: str | None = None
                          ) -> GenerationModel:
    """The model (class from config.json's model_type, eval mode), vocabulary and decoding
    layout of a model directory; a model that cannot generate is refused before its weights
    are read. ``quantize``: None (as trained) or one of :data:`QUANTIZE`."""
    meta = read_model_config(model_dir)
    check_decodable(meta, where=str(model_dir))
    model = MODEL_CLASSES[meta["model_type"]].from_pretrained(model_dir, device=device).eval()
    if quantize:
        model = quantize_for_inference(model, quantize)
    decoding = TrainingRecord.from_extra(meta.get("extra")).decoding()
    return GenerationModel(model, Vocab.load(model_dir), decoding, trained_source_len(model_dir))


def trained_source_len(model_dir: str | os.PathLike) -> int | None:
    """The source length a model was trained with (``extra.pretrain.max_len``, written
    by ``xling train``, when that run cut sentences or sources at it: mass, translation,
    summarization); for a UNILM encoder at most what leaves room for the trained target
    length (``max_tgt_len``) within its positions. None when it does not say."""
    meta = read_model_config(model_dir)
    rec = TrainingRecord.from_extra(meta.get("extra"))
    n, tgt = rec.max_len, rec.max_tgt_len
    if not (n and n > 0) or not any(k.source_len for k in known_kinds([o["type"] for o in rec.objectives])):
        return None  # e.g. UNILM / MLM streams only: max_len is the unused default
    if meta.get("model_type") == TransformerEncoder.model_type and isinstance(tgt, int):
        n = min(n, int(meta["config"]["max_positions"]) - 3 - tgt)  # <s> x </s> y </s> fits the positions
    return n if n > 0 else None


def _batches(lengths: Sequence[int], order: Sequence[int], batch_size: int, max_tokens: int | None,
             rows_per_source: int) -> list[list[int]]:
    """Split ``order`` (indices, longest first) into batches within both budgets."""
    out: list[list[int]] = []
    cur: list[int] = []
    for j in order:
        longest = lengths[cur[0] if cur else j] + 2  # the batch's first is its longest; with <s> </s>
        too_many = max_tokens is not None and (len(cur) + 1) * rows_per_source * longest > max_tokens
        if cur and (len(cur) == batch_size or too_many):
            out.append(cur)
            cur = []
        cur.append(j)
    if cur:
        out.append(cur)
    return out


def _one_line(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")


def generate_nbest(model: torch.nn.Module, vocab: Vocab, texts: Sequence[str], src_lang: str, tgt_lang: str,
                   cfg: GenerationConfig | None = None, batch_size: int = 64, max_tokens: int | None = None,
                   progress: bool = True, max_src_len: int | None = None, truncation: Truncation | None = None,
                   decoding: str = "mask") -> list[list[tuple[str, float]]]:
    """Per input text, up to ``cfg.n_best`` ``(text, score)`` pairs, best first; an empty
    input gives ``[("", 0.0)]``. Languages are codes of ``vocab`` (unknown ones are
    XlingErrors naming the known ones). Sources are cut to ``max_src_len`` tokens (the length
    the model was trained with) within what the model's positions allow, or without it to
    :func:`max_source_len`'s default: counted into ``truncation``, else one warning for the
    whole call (never one per batch). ``decoding``: a UNILM encoder's layout
    (:attr:`GenerationModel.decoding`)."""
    cfg = cfg or GenerationConfig()
    src_id, tgt_id = vocab.lang_id(src_lang), vocab.lang_id(tgt_lang)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise XlingError(f"batch size: must be a positive integer, got {batch_size!r}")
    if max_tokens is not None and max_tokens < 1:
        raise XlingError(f"max tokens: must be a positive integer, got {max_tokens!r}")
    results: list[list[tuple[str, float]]] = [[("", 0.0)] for _ in texts]
    where = [i for i, t in enumerate(texts) if t.strip()]  # non-empty inputs
    ids = vocab.encode_batch([texts[i] for i in where], lang=src_lang) if where else []
    budget = max_source_len(model, max_src_len)
    with counting(truncation, log, "input lines") as cut:
        if cut.add(map(len, ids), budget, total=len(texts)):
            ids = [x[:budget] for x in ids]
    hyps = generate_ids(model, vocab, ids, src_id, tgt_id, cfg, batch_size, max_tokens,
                        progress=progress and len(texts) >= PROGRESS_MIN_LINES, decoding=decoding)
    for j, hs in enumerate(hyps):
        results[where[j]] = [(_one_line(vocab.decode(h.tokens)), h.score) for h in hs]
    return results


def generate_ids(model: torch.nn.Module, vocab: Vocab, ids: Sequence[Sequence[int]], src_id: int, tgt_id: int,
                 cfg: GenerationConfig, batch_size: int = 64, max_tokens: int | None = None,
                 progress: bool = False, decoding: str = "mask") -> list[list[Hypothesis]]:
    """The hypotheses (best first) of every non-empty token-id source ``ids`` (no <s>/</s>,
    already within the model's source budget), in input order: sorted by length into batches,
    decoded in eval mode, put back. ``generate_nbest`` is this plus text in and out."""
    lengths = [len(x) for x in ids]
    order = sorted(range(len(ids)), key=lambda j: -lengths[j])
    rows = cfg.n_best if cfg.sampling else cfg.beam
    batches = _batches(lengths, order, batch_size, max_tokens, rows)
    device = next(model.parameters()).device
    generator = None
    if cfg.sampling:
        generator = torch.Generator(device=device)
        generator.manual_seed(cfg.seed)
    results: list[list[Hypothesis]] = [[] for _ in ids]
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(ids), unit="line", file=sys.stderr, disable=not progress)
    try:
        for batch in batches:
            src = [ids[j] for j in batch]
            decoder = step_decoder(model, src, src_id, tgt_id, vocab.bos_id, vocab.eos_id, decoding)
            hyps = generate(decoder, [len(x) for x in src], cfg, vocab.bos_id, vocab.eos_id, vocab.pad_id,
                            banned_ids=(vocab.mask_id,), generator=generator)
            for j, hs in zip(batch, hyps):
                results[j] = hs
            bar.update(len(batch))
    finally:
        bar.close()
        model.train(was_training)
    return results


def generate_texts(model: torch.nn.Module, vocab: Vocab, texts: Sequence[str], src_lang: str, tgt_lang: str,
                   cfg: GenerationConfig | None = None, batch_size: int = 64, max_tokens: int | None = None,
                   progress: bool = True, max_src_len: int | None = None, truncation: Truncation | None = None,
                   decoding: str = "mask") -> list[str]:
    """The best output text per input text, in input order ("" for empty inputs)."""
    nbest = generate_nbest(model, vocab, texts, src_lang, tgt_lang, cfg, batch_size, max_tokens, progress, max_src_len,
                           truncation, decoding)
    return [hyps[0][0] for hyps in nbest]
