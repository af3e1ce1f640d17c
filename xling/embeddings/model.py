"""LASER-style sentence embedders: an encoder pooled into one vector per sentence, trained
through a decoder that sees nothing of the source but that vector.

- **Encoder**, on ``<s> x </s>`` (no language id): LASER's stacked BiLSTM (packed, so padding
  never enters a state), or an XLM-style :class:`~xling.models.encoder.TransformerEncoder`
  (which can start from a pretrained XLM; its language embedding is off unless
  ``src_lang_embedding``). Its states are pooled over the real tokens only (max, mean, or the
  ``<s>`` state): the sentence embedding ``e`` (B, D).
- **Decoder** (both encoders): LASER's LSTM. Its initial state is ``tanh(W e)``, and every
  step's input is ``[token embedding; e; target-language embedding (32-d)]``, so all it knows
  of the source is ``e``. The output layer is tied to the decoder's token embeddings.

Options for LASER's published encoders (``xling convert laser``): ``source_bos: false`` (the
encoder reads ``x </s>``: the ``<s>`` column callers put first is dropped here, so data
pipelines keep one layout), ``final_norm`` (a LayerNorm after post-norm transformer layers)
and ``decoder: false`` (an encoder alone: embeddings only).

The forward follows the model contract of the objectives (``xling.objectives.base``)::

    e = model(tokens)                                   # (B, S) -> (B, D) sentence embeddings
    h = model(tokens, dec_tokens=y, dec_langs=l)        # (B, T, E) decoder states; model.lm_logits(h)
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from xling.embeddings.config import SentenceEmbedderConfig
from xling.errors import XlingError
from xling.models.encoder import TransformerEncoder
from xling.models.io import load_model_dir, save_model_dir
from xling.models.pooling import pool
from xling.tokenization.vocab import BOS

LSTMState = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (layers, B, H)


def _init_embedding(emb: nn.Embedding, pad_id: int) -> None:
    nn.init.uniform_(emb.weight, -0.1, 0.1)  # fairseq's LSTM embeddings
    with torch.no_grad():
        emb.weight[pad_id].zero_()


class BiLSTMEncoder(nn.Module):
    """Token embeddings -> stacked bidirectional LSTM (LASER). No language input."""

    def __init__(self, c: SentenceEmbedderConfig) -> None:
        super().__init__()
        self.pad_id = c.pad_id
        self.tok_emb = nn.Embedding(c.vocab_size, c.emb_dim, padding_idx=c.pad_id)
        self.lstm = nn.LSTM(c.emb_dim, c.hidden, c.n_layers, batch_first=True, bidirectional=True,
                            dropout=c.dropout if c.n_layers > 1 else 0.0)
        self.drop = nn.Dropout(c.dropout)
        _init_embedding(self.tok_emb, c.pad_id)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, S), right-padded, every row non-empty -> states (B, S, 2H) (zeros at padding).

        Sequences are packed, so the backward direction starts at each row's last real token
        and the states do not depend on how much padding the batch adds."""
        lengths = (tokens != self.pad_id).sum(1)  # (B,)
        if bool((lengths == 0).any()):
            raise ValueError("BiLSTMEncoder: an empty row (encode at least <s> </s>)")
        x = self.drop(self.tok_emb(tokens))  # (B, S, E)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=tokens.shape[1])  # (B, S, 2H)
        return self.drop(out)


class BottleneckDecoder(nn.Module):
    """LASER's decoder: an LSTM that sees only the sentence embedding and a target language."""

    def __init__(self, c: SentenceEmbedderConfig, sent_dim: int) -> None:
        super().__init__()
        self.layers, self.hidden = c.dec_layers, c.dec_hidden
        self.tok_emb = nn.Embedding(c.vocab_size, c.dec_emb_dim, padding_idx=c.pad_id)
        self.lang_emb = nn.Embedding(c.n_langs, c.lang_dim)
        self.init_state = nn.Linear(sent_dim, 2 * c.dec_layers * c.dec_hidden)  # h0 and c0 of every layer
        self.lstm = nn.LSTM(c.dec_emb_dim + sent_dim + c.lang_dim, c.dec_hidden, c.dec_layers, batch_first=True,
                            dropout=c.dropout if c.dec_layers > 1 else 0.0)
        self.out_proj = nn.Linear(c.dec_hidden, c.dec_emb_dim)  # then tied to tok_emb: logits = h @ E^T + b
        self.out_bias = nn.Parameter(torch.zeros(c.vocab_size))
        self.drop = nn.Dropout(c.dropout)
        _init_embedding(self.tok_emb, c.pad_id)
        nn.init.normal_(self.lang_emb.weight, std=0.1)

    def initial_state(self, sent: torch.Tensor) -> LSTMState:
        """sent (B, D) -> (h0, c0), each (layers, B, H): ``tanh`` of a projection of the embedding."""
        B = sent.shape[0]
        hc = torch.tanh(self.init_state(sent)).view(B, 2, self.layers, self.hidden)  # (B, 2, L, H)
        return hc[:, 0].transpose(0, 1).contiguous(), hc[:, 1].transpose(0, 1).contiguous()

    def forward(self, dec_tokens: torch.Tensor, sent: torch.Tensor, lang: torch.Tensor,
                state: LSTMState | None = None) -> tuple[torch.Tensor, LSTMState]:
        """dec_tokens (B, T), sent (B, D), lang (B,) target-language ids; ``state`` from an earlier
        call continues a sequence (None: start from :meth:`initial_state`).
        Returns (output states (B, T, E) for :meth:`logits`, new state)."""
        B, T = dec_tokens.shape
        x = torch.cat([self.drop(self.tok_emb(dec_tokens)),  # (B, T, E)
                       sent[:, None, :].expand(B, T, sent.shape[1]),  # (B, T, D)
                       self.lang_emb(lang)[:, None, :].expand(B, T, self.lang_emb.embedding_dim)], dim=-1)
        out, state = self.lstm(x, state if state is not None else self.initial_state(sent))  # (B, T, H)
        return self.out_proj(self.drop(out)), state

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """(..., E) -> (..., V), tied to the decoder's token embeddings."""
        return F.linear(h, self.tok_emb.weight, self.out_bias)


class SentenceEmbedder(nn.Module):
    """Encoder + pooling (the sentence embedding) + bottleneck decoder; see the module doc."""

    model_type = "sentence_embedder"

    def __init__(self, config: SentenceEmbedderConfig) -> None:
        super().__init__()
        self.config = c = config
        self.encoder: nn.Module = BiLSTMEncoder(c) if c.encoder == "lstm" else TransformerEncoder(c.transformer)
        self.out_norm = nn.LayerNorm(c.dim, eps=c.transformer.layer_norm_eps) if c.final_norm else None
        self.decoder = BottleneckDecoder(c, c.dim) if c.decoder else None

    @property
    def dim(self) -> int:
        """Size of a sentence embedding."""
        return self.config.dim

    @property
    def max_positions(self) -> int | None:
        """Longest encoder input (with <s> </s>): the transformer's positions (one more when
        ``source_bos`` is off: the <s> is dropped); None = unbounded."""
        c = self.config
        return c.transformer.max_positions + (not c.source_bos) if c.encoder == "transformer" else None

    def embed(self, tokens: torch.Tensor, langs: torch.Tensor | None = None,
              positions: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, S) ``<s> x </s>`` right-padded -> sentence embeddings (B, D).

        langs (B, S): used only by a transformer with ``src_lang_embedding``; positions: transformer only.
        Without ``source_bos`` the first column (every row's <s>) is dropped before encoding."""
        if not self.config.source_bos:
            if not bool((tokens[:, 0] == BOS).all()):
                raise ValueError("SentenceEmbedder: source_bos is off, so rows must start with the <s> it drops")
            tokens = tokens[:, 1:]
            langs = langs[:, 1:] if langs is not None else None
            positions = positions[:, 1:] if positions is not None else None
        real = tokens != self.config.pad_id  # (B, S)
        if self.config.encoder == "lstm":
            h = self.encoder(tokens)  # (B, S, 2H)
        else:
            h = self.encoder(tokens, langs=langs if self.config.src_lang_embedding else None,
                             positions=positions)  # (B, S, D)
        if self.out_norm is not None:
            h = self.out_norm(h)
        return pool(h, real, self.config.pooling)

    def forward(self, tokens: torch.Tensor, langs: torch.Tensor | None = None,
                positions: torch.Tensor | None = None, attn_mask: torch.Tensor | None = None,
                dec_tokens: torch.Tensor | None = None, dec_langs: torch.Tensor | None = None,
                dec_positions: torch.Tensor | None = None) -> torch.Tensor:
        """Without ``dec_tokens``: sentence embeddings (B, D). With them (and ``dec_langs`` (B, T),
        the target language of each row, constant along T): decoder states (B, T, E) for
        :meth:`lm_logits`. ``attn_mask`` and ``dec_positions`` do not apply (the encoder is
        bidirectional, the decoder an LSTM) and must be None."""
        if attn_mask is not None or dec_positions is not None:
            raise ValueError("SentenceEmbedder takes no attn_mask / dec_positions")
        sent = self.embed(tokens, langs, positions)  # (B, D)
        if dec_tokens is None:
            return sent
        if dec_langs is None:
            raise ValueError("SentenceEmbedder: dec_tokens need dec_langs (the target language)")
        h, _ = self.need_decoder()(dec_tokens, sent, dec_langs[:, 0])
        return h

    def need_decoder(self) -> BottleneckDecoder:
        """The decoder; an XlingError for a model without one (``decoder: false``)."""
        if self.decoder is None:
            raise XlingError("this sentence embedder has no decoder (decoder: false, e.g. a converted LASER "
                             "encoder): it embeds only; it cannot decode nor train through a decoder")
        return self.decoder

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Decoder states (..., E) -> vocabulary logits (..., V)."""
        return self.need_decoder().logits(hidden)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save_pretrained(self, dir: str | os.PathLike, vocab: Any = None, extra: dict | None = None) -> Path:
        """config.json, model.safetensors (encoder and decoder), checksums.json, the vocabulary."""
        return save_model_dir(self, self.config, dir, extra_json=extra, vocab=vocab)

    @classmethod
    def from_pretrained(cls, dir: str | os.PathLike, device: str = "cpu") -> "SentenceEmbedder":
        """Load a model saved with :meth:`save_pretrained` (checksums verified)."""
        return load_model_dir(cls, SentenceEmbedderConfig, dir, device=device)

    @classmethod
    def from_encoder(cls, encoder: TransformerEncoder, config: SentenceEmbedderConfig) -> "SentenceEmbedder":
        """A transformer embedder whose encoder starts as a copy of ``encoder`` (e.g. XLM);
        ``config.transformer`` must equal ``encoder.config`` up to dropout. The decoder is fresh.
        (The encoder's LM head comes along unused: it keeps the XLM weights loadable as they are.)"""
        mine, theirs = config.transformer, encoder.config
        if config.encoder != "transformer" or mine is None:
            raise XlingError("init from a transformer encoder needs model.encoder: transformer")
        diff = [f.name for f in dataclasses.fields(theirs) if f.name not in ("dropout", "attn_dropout")
                and getattr(mine, f.name) != getattr(theirs, f.name)]
        if diff:
            raise XlingError(f"model.transformer.{diff[0]}={getattr(mine, diff[0])!r} differs from the init "
                             f"encoder's {getattr(theirs, diff[0])!r}; only dropout may change")
        model = cls(config)
        model.encoder.load_state_dict(encoder.state_dict())
        return model
