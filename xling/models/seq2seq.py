"""Transformer encoder-decoder (MASS / translation / summarization).

:class:`TransformerSeq2Seq` owns a :class:`TransformerEncoder` (``.encoder``): its
token, position and language embeddings, embedding LayerNorm and tied LM head are
shared by the decoder, a stack of layers with causal self-attention and
cross-attention to the encoder output. ``forward`` without decoder tokens is the
encoder alone, so MLM/TLM objectives train the encoder of a seq2seq model unchanged;
with decoder tokens it returns decoder hidden states (everything goes through
``forward``, as DistributedDataParallel wants).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xling.errors import XlingError
from xling.models import masks
from xling.models.config import EncoderConfig, Seq2SeqConfig
from xling.models.encoder import (
    DecoderEmbeddings,
    TransformerEncoder,
    _check_ids,
    attention_mask,
    head_flops,
    init_weights,
    layer_flops,
)
from xling.models.io import load_model_dir, save_model_dir
from xling.models.layers import KVCache, TransformerLayer


class TransformerSeq2Seq(nn.Module):
    """Encoder-decoder transformer with embeddings and LM head shared by both sides."""

    model_type = "transformer_seq2seq"

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.config = c = config
        self.encoder = TransformerEncoder(c.encoder_config())
        self.dec_layers = nn.ModuleList(
            TransformerLayer(
                c.d_model,
                c.n_heads,
                c.d_ff,
                c.dropout,
                c.attn_dropout,
                c.activation,
                c.pre_norm,
                c.layer_norm_eps,
                cross_attention=True,
                cross_out_langs=c.n_langs if c.cross_out_per_lang else 0,
            )
            for _ in range(c.n_dec_layers)
        )
        self.dec_final_norm = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps) if c.pre_norm else None
        init_weights(self.dec_layers, self.dec_layers, c.init_std)
        self.dec_embed = self.dec_head = None  # default: the decoder shares the encoder's tables and head
        if c.separate_decoder_embeddings:
            self.dec_embed = DecoderEmbeddings(c.encoder_config())
            self.dec_head = nn.Linear(c.d_model, c.vocab_size, bias=c.lm_bias)
            init_weights(self.dec_embed, nn.ModuleList(), c.init_std)
            init_weights(self.dec_head, nn.ModuleList(), c.init_std)
            if not c.untied_output:
                self.dec_head.weight = self.dec_embed.tok_emb.weight

    def new_cache(self) -> KVCache:
        """An empty key/value cache for incremental decoding with :meth:`decode`."""
        return KVCache(self.config.n_dec_layers)

    def encode(
        self, tokens: torch.Tensor, langs: torch.Tensor | None = None, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Source tokens (B, S) -> memory (B, S, D) (bidirectional; padding never attended).

        The matching ``mem_pad`` for :meth:`decode` is ``tokens != config.pad_id``.
        """
        return self.encoder(tokens, langs=langs, positions=positions)

    def decode(
        self,
        dec_tokens: torch.Tensor,
        memory: torch.Tensor | None,
        mem_pad: torch.Tensor,
        langs: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Decoder tokens (B, T) -> decoder hidden states (B, T, D).

        memory: (B, S, D) encoder output. With a cache it is projected to keys/values on
            the first call only and may be None afterwards.
        mem_pad: (B, S) bool, True = real source token (needed at every step; reorder it
            with the cache in beam search).
        langs / positions: (B, T) language and position ids of the decoder tokens;
            positions default to ``len(cache) .. len(cache) + T - 1``. With
            ``cross_out_per_lang`` the languages are required: a row's largest id (its target
            language, as MASS takes it) picks its cross-attention output projection.
        attn_mask: self-attention mask, bool (T, L + T) or (B, T, L + T) with L cached
            positions; None = causal (left-to-right; one new token sees every cached one).
        cache: a :meth:`new_cache` object; self-attention keys/values are appended to it.
        Key padding (dec_tokens == pad_id) is applied on top; outputs at padded decoder
        positions are finite but meaningless.
        """
        T = dec_tokens.shape[1]
        past = len(cache) if cache is not None else 0
        if memory is None and (cache is None or not len(cache.cross_attn[0])):
            raise ValueError("decode: memory is needed unless the cache already holds it")
        row_langs = None
        if self.config.cross_out_per_lang:
            if langs is None:
                raise XlingError("decode: this model's cross-attention depends on the target language; pass langs")
            _check_ids("language id", langs, self.config.n_langs)
            row_langs = langs.amax(dim=1)  # (B,)
        embedder = self.dec_embed if self.dec_embed is not None else self.encoder
        x = embedder.embed(dec_tokens, langs, positions, past)  # (B, T, D)
        key_pad = masks.key_padding(dec_tokens, self.config.pad_id)  # (B, T)
        if cache is not None:
            key_pad = cache.extend_key_pad(key_pad)  # (B, L + T)
        if attn_mask is None and (cache is None or T > 1):
            attn_mask = masks.causal(T, past=past, device=dec_tokens.device)  # (T, L + T)
        self_mask, is_causal = attention_mask(attn_mask, key_pad, T, cache is not None)
        mem_mask = None if bool(mem_pad.all()) else masks.cross(T, mem_pad)[:, None]  # (B, 1, T, S)
        for i, layer in enumerate(self.dec_layers):
            x = layer(
                x,
                self_mask,
                is_causal,
                memory=memory,
                memory_mask=mem_mask,
                cache=cache.self_attn[i] if cache is not None else None,
                cross_cache=cache.cross_attn[i] if cache is not None else None,
                langs=row_langs,
            )
        if self.dec_final_norm is not None:
            x = self.dec_final_norm(x)
        return x

    def forward(
        self,
        tokens: torch.Tensor,
        langs: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        dec_tokens: torch.Tensor | None = None,
        dec_langs: torch.Tensor | None = None,
        dec_positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Encoder hidden states (B, S, D) of ``tokens`` (B, S) when ``dec_tokens`` is None
        (MLM/TLM/CLM on the encoder); otherwise decoder hidden states (B, T, D) of
        ``dec_tokens`` (B, T), decoded causally against the encoding of ``tokens``.
        ``attn_mask`` is the encoder's self-attention mask, as in
        :meth:`TransformerEncoder.forward` (None = bidirectional)."""
        memory = self.encoder(tokens, langs=langs, positions=positions, attn_mask=attn_mask)  # (B, S, D)
        if dec_tokens is None:
            return memory
        mem_pad = masks.key_padding(tokens, self.config.pad_id)  # (B, S)
        return self.decode(dec_tokens, memory, mem_pad, dec_langs, dec_positions)

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., D) encoder or decoder hidden states -> (..., V) logits: the shared LM head, or the
        decoder's own projection when it has separate embeddings (its outputs are what it predicts)."""
        if self.dec_head is not None:
            return self.dec_head(hidden)
        return self.encoder.lm_logits(hidden)

    def num_parameters(self) -> int:
        """Number of distinct parameters (tied and shared weights counted once)."""
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int, lm_fraction: float = 1.0, tgt_len: int | None = None) -> float:
        """Training FLOPs (forward + backward = 3x forward) per input token of a pair with
        ``seq_len`` source and ``tgt_len`` (default ``seq_len``) decoder tokens, the LM head
        running on ``lm_fraction`` of the decoder tokens.

        Counts encoder layers over S keys; per decoder layer, self-attention over T keys
        (full, as the FLOP counter sees it), the cross-attention query/output projections
        and scores over S keys per decoder token, and its key/value projection per source
        token. Embeddings, norms and activations are ignored.
        """
        c = self.config
        S, T = seq_len, tgt_len if tgt_len is not None else seq_len
        D = c.d_model
        enc = S * c.n_layers * layer_flops(c, S)
        dec = T * c.n_dec_layers * (layer_flops(c, T) + 2 * 2 * D * D + 4 * S * D)
        cross_kv = S * c.n_dec_layers * 2 * 2 * D * D
        return 3.0 * (enc + dec + cross_kv + lm_fraction * T * head_flops(c)) / (S + T)

    def save_pretrained(self, dir: str | os.PathLike, vocab: Any = None, extra: dict | None = None) -> Path:
        """Write config.json, model.safetensors, checksums.json (and the vocabulary)."""
        return save_model_dir(self, self.config, dir, extra_json=extra, vocab=vocab)

    @classmethod
    def from_pretrained(cls, dir: str | os.PathLike, device: str = "cpu") -> "TransformerSeq2Seq":
        """Load a model saved with :meth:`save_pretrained` (checksums verified)."""
        return load_model_dir(cls, Seq2SeqConfig, dir, device=device)

    @classmethod
    def from_encoder(cls, encoder: TransformerEncoder, n_dec_layers: int | None = None) -> "TransformerSeq2Seq":
        """XLM initialisation of an encoder-decoder from a pretrained encoder.

        Embeddings, LM head and encoder layers are copied; decoder layer i copies the
        self-attention, feed-forward and their LayerNorms of encoder layer i (cycling when
        the decoder is deeper), the decoder's final norm copies the encoder's; the
        cross-attention and its LayerNorm keep their fresh initialisation.
        ``n_dec_layers`` defaults to the encoder's depth.
        """
        ec: EncoderConfig = encoder.config
        fields = {f.name: getattr(ec, f.name) for f in dataclasses.fields(EncoderConfig)}
        cfg = Seq2SeqConfig(**fields, n_dec_layers=n_dec_layers if n_dec_layers is not None else ec.n_layers)
        param = next(encoder.parameters())
        model = cls(cfg).to(device=param.device, dtype=param.dtype)
        with torch.no_grad():
            model.encoder.load_state_dict(encoder.state_dict())
            for i, layer in enumerate(model.dec_layers):
                src = encoder.layers[i % ec.n_layers]
                for name in ("self_attn", "norm_attn", "ff", "norm_ff"):
                    getattr(layer, name).load_state_dict(getattr(src, name).state_dict())
            if model.dec_final_norm is not None:
                model.dec_final_norm.load_state_dict(encoder.final_norm.state_dict())
        return model.train(encoder.training)
