"""Sentence embeddings from a trained model: texts in, float32 vectors out (and back).

    enc = SentenceEncoder.from_pretrained("runs/laser/model")
    X = enc.encode(["Hello world.", "Bonjour."], lang="en", normalize=True)   # (2, D) float32
    enc.decode(enc.encode(["Guten Tag."], "de"), tgt_lang="en", beam=4)        # ["Good day."]

- Inputs are tokenized as in training (``<s> x </s>``), cut to the trained ``max_len``
  (one warning counting cut lines, or counted into the caller's ``truncation``
  counter: :mod:`xling.utils.truncation`), sorted by length into batches, and returned in input
  order. Each sentence's vector does not depend on the rest of its batch: padding never
  enters a pooled state (BiLSTM packed, transformer key-masked, pooling over real tokens).
- Empty or whitespace-only texts get a zero vector (they keep their row, so row i is always
  line i; a zero vector has cosine 0 with everything), with one warning counting them.
- ``lang`` must be one of the languages the encoder was trained on (``extra.sentence``,
  recorded by ``xling train``), although the encoder itself takes no language id: another
  code is an XlingError naming the known ones.
- ``decode`` runs the bottleneck decoder (greedy or beam, :mod:`xling.generation.search`)
  from raw, unnormalised embeddings into one of the trained target languages.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from xling.data.masking import pad_batch
from xling.data.span_masking import with_bos_eos
from xling.embeddings.backends.base import check_batch_size, encode_rows
from xling.embeddings.model import SentenceEmbedder
from xling.errors import XlingError
from xling.models.io import read_model_config
from xling.models.record import SentenceRecord, TrainingRecord
from xling.tokenization.vocab import Vocab
from xling.utils.truncation import Truncation, counting

log = logging.getLogger(__name__)

DEFAULT_MAX_LEN = 126  # tokens kept per sentence when the model does not record its training length


def embed_ids(model: SentenceEmbedder, ids: Sequence[Sequence[int]], bos_id: int, eos_id: int,
              batch_size: int = 64, lang_id: int | None = None) -> torch.Tensor:
    """Embeddings (N, D) float32 on the CPU of token-id sentences (without <s> </s>), in order.

    Batches are made of sentences of similar length; eval mode and no grad for the call.
    ``lang_id``: the sentences' language, given to a transformer embedder trained with
    ``src_lang_embedding`` (as in training); other embedders take no language id."""
    if not len(ids):
        return torch.zeros(0, model.dim)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out = torch.empty(len(ids), model.dim)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for a in range(0, len(order), batch_size):
                idx = order[a : a + batch_size]
                tokens = pad_batch([with_bos_eos(ids[i], bos_id, eos_id) for i in idx], model.config.pad_id)
                t = torch.from_numpy(tokens).to(device)  # (b, S)
                langs = (torch.full_like(t, lang_id) if lang_id is not None and model.config.src_lang_embedding
                         else None)
                out[idx] = model.embed(t, langs).float().cpu()  # (b, D)
    finally:
        model.train(was_training)
    return out


class SentenceEncoder:
    """A trained :class:`SentenceEmbedder`, its vocabulary and its recorded languages."""

    def __init__(self, model: SentenceEmbedder, vocab: Vocab, languages: Sequence[str],
                 target_languages: Sequence[str] = (), max_len: int = DEFAULT_MAX_LEN) -> None:
        for code in [*languages, *target_languages]:
            vocab.lang_id(code)  # every recorded language is one of the vocabulary's
        if not languages:
            raise XlingError("sentence encoder: no training languages recorded")
        self.model = model.eval()
        self.vocab = vocab
        self.name = "xling sentence encoder"  # the backend protocol's name: its directory once loaded
        self.languages = sorted(languages)
        self.target_languages = sorted(target_languages)
        limit = model.max_positions - 2 if model.max_positions is not None else max_len
        self.max_len = max(1, min(max_len, limit))

    @classmethod
    def from_pretrained(cls, dir: str | os.PathLike, device: str = "cpu") -> "SentenceEncoder":
        """Load a model directory written by ``xling train`` (model_type: sentence) or
        :meth:`save_pretrained`; it must record its training languages."""
        meta = read_model_config(dir)
        if meta["model_type"] != SentenceEmbedder.model_type:
            raise XlingError(f"{dir}: a {meta['model_type']}, not a sentence embedder "
                             f"(train one with model_type: sentence)")
        rec = TrainingRecord.from_extra(meta.get("extra"))
        if rec.sentence is None or not rec.sentence.languages:
            raise XlingError(f"{Path(dir) / 'config.json'}: records no training languages (extra.sentence.languages)")
        model = SentenceEmbedder.from_pretrained(dir, device=device)
        enc = cls(model, Vocab.load(dir), rec.sentence.languages, rec.sentence.target_languages,
                  int(rec.max_len or DEFAULT_MAX_LEN))
        enc.name = str(dir)
        return enc

    def save_pretrained(self, dir: str | os.PathLike, extra: dict | None = None) -> Path:
        """Model, vocabulary and the language record, loadable with :meth:`from_pretrained`."""
        rec = TrainingRecord.from_extra(extra)  # the caller's record (xling train's), if any
        rec.max_len = self.max_len
        rec.sentence = SentenceRecord(self.languages, self.target_languages)
        return self.model.save_pretrained(dir, vocab=self.vocab, extra={**(extra or {}), **rec.to_extra()})

    @property
    def dim(self) -> int:
        """Size of an embedding."""
        return self.model.dim

    def check_lang(self, lang: str, target: bool = False) -> None:
        """XlingError unless ``lang`` is a trained source (or, with ``target``, decoder) language."""
        known = self.target_languages if target else self.languages
        if lang not in known:
            what = "decode into" if target else "encode"
            raise XlingError(f"language {lang!r}: this sentence encoder was not trained to {what} it "
                             f"(known: {', '.join(known) or 'none'})")

    def encode(self, texts: Sequence[str], lang: str, batch_size: int = 64, normalize: bool = False,
               truncation: Truncation | None = None) -> np.ndarray:
        """(len(texts), D) float32 embeddings in input order (see the module doc);
        ``normalize``: unit L2 norm per row (zero rows stay zero); ``truncation``: a counter
        the texts cut to ``max_len`` are added to (the caller reports them), else one warning."""
        self.check_lang(lang)
        check_batch_size(batch_size)

        def embed(kept: list[str]) -> np.ndarray:  # (n', D)
            ids = self.vocab.encode_batch(kept, lang=lang)
            cut.add(map(len, ids), self.max_len, total=len(texts))
            ids = [x[: self.max_len] for x in ids]
            return embed_ids(self.model, ids, self.vocab.bos_id, self.vocab.eos_id, batch_size,
                             lang_id=self.vocab.lang_id(lang) if self.model.config.src_lang_embedding else None
                             ).numpy()

        with counting(truncation, log) as cut:
            return encode_rows(texts, self.dim, embed, normalize)

    def decode(self, embeddings: np.ndarray | torch.Tensor, tgt_lang: str, beam: int = 1, max_len: int = 100,
               batch_size: int = 64, cfg=None) -> list[str]:
        """Texts in ``tgt_lang`` decoded from raw embeddings (N, D), one per row, in order.

        ``cfg``: a :class:`xling.generation.base.GenerationConfig` (default: beam ``beam``,
        at most ``max_len`` tokens); its length bounds count from an empty source."""
        from xling.generation.base import GenerationConfig
        from xling.embeddings.decoding import EmbeddingStepDecoder
        from xling.generation.search import generate

        self.check_lang(tgt_lang, target=True)
        emb = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
        if emb.ndim != 2 or emb.shape[1] != self.dim:
            raise XlingError(f"decode: embeddings of shape {tuple(emb.shape)}, expected (N, {self.dim})")
        cfg = cfg or GenerationConfig(beam=beam, max_len_a=0.0, max_len_b=max_len)
        v, lang = self.vocab, self.vocab.lang_id(tgt_lang)
        texts: list[str] = []
        for a in range(0, emb.shape[0], batch_size):
            dec = EmbeddingStepDecoder(self.model, emb[a : a + batch_size], lang)
            hyps = generate(dec, [0] * dec.n, cfg, v.bos_id, v.eos_id, v.pad_id, banned_ids=(v.mask_id,))
            texts += [v.decode(h[0].tokens).replace("\n", " ") for h in hyps]
        return texts

    def translate(self, texts: Sequence[str], src_lang: str, tgt_lang: str, beam: int = 1,
                  max_len: int = 100) -> list[str]:
        """Decode the embeddings of ``texts`` into ``tgt_lang`` ("" for empty texts)."""
        out = self.decode(self.encode(texts, src_lang), tgt_lang, beam=beam, max_len=max_len)
        return [o if t.strip() else "" for t, o in zip(texts, out)]
