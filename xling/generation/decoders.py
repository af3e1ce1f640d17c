"""Step decoders for xling models, and which saved models can generate at all.

- :class:`TransformerSeq2Seq`: :class:`Seq2SeqStepDecoder` (encoder once, decoder one
  token per step with a KV cache), the layout of :mod:`xling.objectives.seq2seq`.
- :class:`TransformerEncoder` trained the UNILM seq2seq way:
  :func:`xling.generation.unilm.unilm_step_decoder`.

**Which models can translate** (:func:`check_decodable`, read from config.json): every
``transformer_seq2seq``; a ``transformer_encoder`` only when its ``extra`` records an
objective that teaches it to generate after a source: ``unilm`` (UNILM pretraining, whose
mask mixture includes the seq2seq mask) or a supervised seq2seq type (``translation``,
``summarization``: UNILM seq2seq fine-tuning on an encoder), among the objectives of its
training record or of its init model's (:class:`xling.models.record.TrainingRecord`), so
training history counts. An XLM encoder trained with MLM/TLM/CLM only has no decoder:
decoding it would produce noise, so it is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from xling.data.masking import pad_batch
from xling.data.span_masking import with_bos_eos
from xling.errors import XlingError
from xling.generation.base import StepDecoder
from xling.models.encoder import TransformerEncoder
from xling.models.seq2seq import TransformerSeq2Seq
from xling.models.record import TrainingRecord
from xling.objectives.registry import known_kinds
from xling.tokenization.vocab import BOS, EOS


def check_decodable(model_dir_meta: Mapping[str, Any], where: str = "model") -> None:
    """Raise a one-line XlingError unless the model described by ``model_dir_meta`` (the
    parsed config.json: model_type, config, extra) can generate (see the module doc)."""
    model_type = model_dir_meta.get("model_type")
    if model_type == TransformerSeq2Seq.model_type:
        return
    if model_type != TransformerEncoder.model_type:
        raise XlingError(f"{where}: model_type {model_type!r} cannot generate text")
    types = TrainingRecord.from_extra(model_dir_meta.get("extra")).objective_types()
    if not any(k.generates for k in known_kinds(types)):  # e.g. unilm, translation, summarization
        trained = "+".join(dict.fromkeys(types)) or "no recorded objective"
        raise XlingError(f"{where}: encoder trained with {trained} has no decoder; fine-tune it for "
                         f"translation first (UNILM seq2seq, or TransformerSeq2Seq.from_encoder)")


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


class Seq2SeqStepDecoder:
    """StepDecoder of a :class:`TransformerSeq2Seq` over N sources.

    The sources ``<s> x </s>`` (source language id, right-padded) are encoded once; each
    step feeds one decoder token with the target language id at the next position
    (``<s>`` at 0, as in training), the decoder's KV cache holding the earlier ones and
    the projected encoder memory. ``reorder`` reorders the cache and the source padding.
    """

    def __init__(self, model: TransformerSeq2Seq, src: Sequence[Sequence[int]], src_lang: int, tgt_lang: int,
                 bos_id: int = BOS, eos_id: int = EOS) -> None:
        if not len(src):
            raise XlingError("seq2seq decoding: no source to decode")
        c = model.config
        self.model = model
        self.device = _device(model)
        self.tgt_lang = tgt_lang
        if c.source_bos:  # <s> x </s>, as xling trains
            rows = [with_bos_eos(x, bos_id, eos_id) for x in src]
        else:  # x </s> (fairseq's translation layout)
            rows = [np.concatenate([np.asarray(x, dtype=np.int64), [eos_id]]).astype(np.int64) for x in src]
        self.start_id = eos_id if c.decoder_start == "eos" else None  # replaces the BOS search feeds first
        longest = max(len(r) for r in rows)
        if longest > c.max_positions:
            raise XlingError(f"seq2seq decoding: a source of {longest} tokens (with <s> </s>) exceeds "
                             f"max_positions={c.max_positions}; truncate the sources")
        tokens = torch.from_numpy(pad_batch(rows, c.pad_id)).to(self.device)  # (N, S)
        self.max_target_len = c.max_positions - 1  # positions 0..L: <s> and L tokens; EOS is predicted at L
        self.mem_pad = tokens != c.pad_id  # (N, S) True = real source token
        with torch.inference_mode():
            langs = torch.full_like(tokens, src_lang)
            self.memory: torch.Tensor | None = model.encode(tokens, langs=langs)  # (N, S, D)
        self.cache = model.new_cache()
        self.t = 0  # decoder tokens fed so far = position of the next one

    def step(self, prev: torch.Tensor) -> torch.Tensor:
        """prev (N,) last tokens (BOS at step 0) -> log-probs (N, V) float32."""
        tok = prev.to(self.device, torch.long).view(-1, 1)  # (N, 1)
        if self.t == 0 and self.start_id is not None:
            tok = torch.full_like(tok, self.start_id)
        with torch.inference_mode():
            h = self.model.decode(tok, self.memory, self.mem_pad, langs=torch.full_like(tok, self.tgt_lang),
                                  positions=torch.full_like(tok, self.t), cache=self.cache)  # (N, 1, D)
            logits = self.model.lm_logits(h[:, -1])  # (N, V)
        self.memory = None  # projected into the cache's cross-attention keys/values
        self.t += 1
        return torch.log_softmax(logits.float(), dim=-1)

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` (N',) in that order (beam expansion, reordering, dropping)."""
        index = index.to(self.device, torch.long)
        self.cache.reorder(index)
        self.mem_pad = self.mem_pad.index_select(0, index)
        if self.memory is not None:
            self.memory = self.memory.index_select(0, index)


def max_source_len(model: torch.nn.Module, trained: int | None = None) -> int:
    """Most source tokens (without <s> </s>) a model takes for generation: ``trained``
    (the source length it was trained with) when given, within what its positions allow:
    all but <s> </s> for an encoder-decoder; for a UNILM encoder, whose source and target
    share the positions, all but <s> </s> and one target position, and half of them when
    the trained length is unknown."""
    P = model.config.max_positions
    if isinstance(model, TransformerSeq2Seq):
        return min(trained, P - 2) if trained else P - 2
    return max(min(trained, P - 3) if trained else P // 2 - 2, 1)


def step_decoder(model: torch.nn.Module, src: Sequence[Sequence[int]], src_lang: int, tgt_lang: int,
                 bos_id: int = BOS, eos_id: int = EOS, decoding: str = "mask") -> StepDecoder:
    """A StepDecoder decoding ``src`` (token ids without <s>/</s>) from language id
    ``src_lang`` into ``tgt_lang``. Put the model in eval mode first; steps run without grad.
    A UNILM encoder decodes as ``decoding`` says: ``"mask"`` (a ``<mask>`` after the prefix
    predicts) or ``"causal"`` (each fed token's row predicts the next), which a saved model's
    record gives (:meth:`xling.models.record.TrainingRecord.decoding`).

    Whether an encoder was trained to decode is not checked here (an in-memory model has
    no record of its training): :func:`check_decodable` does it when a model is loaded.
    """
    if isinstance(model, TransformerSeq2Seq):
        return Seq2SeqStepDecoder(model, src, src_lang, tgt_lang, bos_id, eos_id)
    if isinstance(model, TransformerEncoder):
        from xling.generation.unilm import unilm_step_decoder

        return unilm_step_decoder(model, src, src_lang, tgt_lang, bos_id=bos_id, eos_id=eos_id,
                                  causal=decoding == "causal")
    raise XlingError(f"{type(model).__name__}: no step decoder for this model type")
