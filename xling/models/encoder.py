"""XLM-style transformer encoder: token + position + language embeddings, a stack of
transformer layers, and a masked/causal LM head tied to the token embeddings.

The same module serves MLM/TLM (bidirectional mask), CLM (causal mask) and UNILM
(any of the masks in :mod:`xling.models.masks`); with a :class:`KVCache` it decodes
step by step.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xling.errors import XlingError
from xling.models import masks
from xling.models.config import EncoderConfig
from xling.models.io import load_model_dir, save_model_dir
from xling.models.layers import KVCache, TransformerLayer


def _check_ids(kind: str, ids: torch.Tensor, limit: int) -> None:
    """Raise XlingError when ``ids`` falls outside [0, limit) (an embedding-table size)."""
    if ids.numel():
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= limit:
            raise XlingError(f"{kind} {hi if hi >= limit else lo} outside [0, {limit})")


def attention_mask(
    attn_mask: torch.Tensor | None, key_pad: torch.Tensor, n_queries: int, cached: bool
) -> tuple[torch.Tensor | None, bool]:
    """Self-attention mask for SDPA, (B, 1, Tq, Tk) or None, and whether to use the causal fast path.

    attn_mask: bool (Tq, Tk) or (B, Tq, Tk), True = may attend; None = every key.
    key_pad: (B, Tk) True for real tokens, the queries being its last n_queries.
    cached: keys come partly from a KV cache (the causal fast path needs Tq == Tk).
    """
    Tk = key_pad.shape[1]
    if attn_mask is not None and attn_mask.dtype != torch.bool:
        raise TypeError(f"attention mask must be bool (True = may attend), got {attn_mask.dtype}")
    if attn_mask is not None and attn_mask.shape[-2:] != (n_queries, Tk):
        raise XlingError(
            f"attention mask of shape {tuple(attn_mask.shape)} does not fit {n_queries} queries and {Tk} keys"
        )
    if bool(key_pad.all()):  # no padding: dense masks only when needed
        if attn_mask is None:
            return None, False
        if not cached and attn_mask.dim() == 2 and torch.equal(attn_mask, masks.causal(Tk, device=attn_mask.device)):
            return None, True
    elif attn_mask is None and bool(key_pad.any(dim=1).all()):
        return key_pad[:, None, None, :], False  # (B, 1, 1, Tk) key padding only
    if attn_mask is None:
        attn_mask = torch.ones(n_queries, Tk, dtype=torch.bool, device=key_pad.device)
    return masks.combine(attn_mask, key_pad)[:, None], False  # (B, 1, Tq, Tk)


def init_weights(module: nn.Module, layers: nn.ModuleList, std: float) -> None:
    """Normal(0, std) weights of every Linear / Embedding in ``module``, zero biases; then
    the residual output projections of ``layers`` get std / sqrt(number of residual
    sub-layers in the stack) (GPT-2's scaled init)."""

    def init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=std)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    module.apply(init)
    projs = [
        p
        for layer in layers
        for p in (layer.self_attn.out_proj, layer.cross_attn.out_proj if layer.cross_attn else None, layer.ff.fc2)
        if p is not None
    ]
    for proj in projs:
        nn.init.normal_(proj.weight, std=std / math.sqrt(len(projs)))


def sinusoidal_table(n: int, dim: int, zero_row: int | None = None) -> torch.Tensor:
    """(n, dim) fixed position embeddings in fairseq's layout: row p is ``[sin(p w), cos(p w)]``
    with ``w_i = exp(-i log(10000) / (dim/2 - 1))`` (the two halves side by side, not
    interleaved as in XLM); an odd ``dim`` gets a zero last column, and ``zero_row`` (fairseq's
    padding position, just below the first real one) is zero."""
    half = dim // 2
    step = math.log(10000) / (half - 1) if half > 1 else 0.0
    freqs = torch.exp(torch.arange(half, dtype=torch.float) * -step)  # (half,)
    angles = torch.arange(n, dtype=torch.float)[:, None] * freqs[None, :]  # (n, half)
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)  # (n, 2 half)
    if dim % 2:
        table = torch.cat([table, torch.zeros(n, 1)], dim=1)
    if zero_row is not None:
        table[zero_row] = 0.0
    return table


def layer_flops(c: EncoderConfig, n_keys: int) -> float:
    """Forward FLOPs per query token of one self-attention + feed-forward layer:
    QKV and output projections, feed-forward, scores and weighted sum over ``n_keys``."""
    return 2 * (4 * c.d_model * c.d_model + 2 * c.d_model * c.d_ff) + 4 * n_keys * c.d_model


def head_flops(c: EncoderConfig) -> float:
    """Forward FLOPs of the LM head (transform + vocabulary projection) per predicted token."""
    return 2 * ((c.d_model * c.d_model if c.lm_transform else 0) + c.d_model * c.vocab_size)


class Embedder:
    """Token + position [+ language] embeddings, scaled, normalised and dropped out: the input
    side of :class:`TransformerEncoder`, and of a seq2seq decoder with its own tables
    (``Seq2SeqConfig.separate_decoder_embeddings``). Mixed into an ``nn.Module``."""

    config: EncoderConfig

    def _build_embeddings(self, c: EncoderConfig) -> None:
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        n_pos = c.max_positions + c.position_offset  # rows of the position table
        self.pos_emb = nn.Embedding(n_pos, c.d_model) if c.positions == "learned" else None
        if c.positions == "sinusoidal":  # fixed: not a parameter, not saved
            zero = c.position_offset - 1 if c.position_offset else None
            self.register_buffer("pos_table", sinusoidal_table(n_pos, c.d_model, zero), persistent=False)
        self.lang_emb = nn.Embedding(c.n_langs, c.d_model) if c.use_lang_embeddings else None
        self.emb_norm = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps) if c.emb_norm else None
        self.drop = nn.Dropout(c.dropout)

    def embed(
        self,
        tokens: torch.Tensor,
        langs: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        past: int = 0,
    ) -> torch.Tensor:
        """tokens (B, T) -> embeddings (B, T, D): token + position [+ language], LayerNorm, dropout.

        langs: (B, T) language ids or None (no language embedding added).
        positions: (B, T) position ids; default ``past .. past + T - 1`` (``past`` = number
        of positions already in a KV cache). Ids outside their tables are an XlingError.
        """
        c = self.config
        T = tokens.shape[1]
        if positions is None:
            if past + T > c.max_positions:
                raise XlingError(f"sequence length {past + T} exceeds max_positions={c.max_positions}")
            positions = torch.arange(past, past + T, device=tokens.device)[None, :]  # (1, T)
        else:
            _check_ids("position", positions, c.max_positions)
        x = self.tok_emb(tokens)  # (B, T, D)
        if c.embed_scale:
            x = x * math.sqrt(c.d_model)
        if c.position_offset:
            positions = positions + c.position_offset
        x = x + (self.pos_emb(positions) if self.pos_emb is not None else self.pos_table[positions])
        if langs is not None and self.lang_emb is not None:
            _check_ids("language id", langs, c.n_langs)
            x = x + self.lang_emb(langs)
        return self.drop(self.emb_norm(x) if self.emb_norm is not None else x)



class DecoderEmbeddings(Embedder, nn.Module):
    """A seq2seq decoder's own embedding tables (fairseq models without --share-all-embeddings)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self._build_embeddings(config)


class TransformerEncoder(Embedder, nn.Module):
    """Transformer encoder with XLM embeddings and a tied LM head."""

    model_type = "transformer_encoder"

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = c = config
        self._build_embeddings(c)
        self.layers = nn.ModuleList(
            TransformerLayer(
                c.d_model, c.n_heads, c.d_ff, c.dropout, c.attn_dropout, c.activation, c.pre_norm, c.layer_norm_eps
            )
            for _ in range(c.n_layers)
        )
        self.final_norm = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps) if c.pre_norm else None
        # LM head: dense + gelu + LayerNorm transform (BERT/XLM-R; lm_transform), then a projection to V.
        self.lm_transform = nn.Linear(c.d_model, c.d_model) if c.lm_transform else None
        self.lm_norm = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps) if c.lm_transform else None
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=c.lm_bias)
        init_weights(self, self.layers, c.init_std)
        if c.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight

    def new_cache(self) -> KVCache:
        """An empty key/value cache for incremental decoding with :meth:`forward`."""
        return KVCache(self.config.n_layers)

    def forward(
        self,
        tokens: torch.Tensor,
        langs: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """tokens (B, T) long -> hidden states (B, T, D).

        langs: (B, T) language ids, or None (no language embedding added).
        positions: (B, T) position ids; default 0..T-1, offset by len(cache).
        attn_mask: bool (T, T) or (B, T, T), True = may attend; None = bidirectional.
            With a cache holding L positions it is (T, L + T) or (B, T, L + T), and None
            lets the new tokens see every cached and new token (right for one-token steps;
            pass ``masks.causal(T, past=L)`` to feed several tokens left-to-right).
        cache: a :meth:`new_cache` object; the new keys/values are appended to it.
        Key padding (tokens == pad_id) is always applied on top; the outputs at padded
        positions are finite but meaningless.
        """
        past = len(cache) if cache is not None else 0
        x = self.embed(tokens, langs, positions, past)  # (B, T, D)
        key_pad = masks.key_padding(tokens, self.config.pad_id)  # (B, T)
        if cache is not None:
            key_pad = cache.extend_key_pad(key_pad)  # (B, L + T)
        mask, is_causal = attention_mask(attn_mask, key_pad, tokens.shape[1], cache is not None)
        for i, layer in enumerate(self.layers):
            x = layer(x, mask, is_causal, cache=cache.self_attn[i] if cache is not None else None)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return x

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., D) hidden states -> (..., V) vocabulary logits (tied to token embeddings)."""
        if self.lm_transform is not None:
            hidden = self.lm_norm(F.gelu(self.lm_transform(hidden)))
        return self.lm_head(hidden)

    def num_parameters(self) -> int:
        """Number of distinct parameters (tied weights counted once)."""
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int, lm_fraction: float = 1.0) -> float:
        """Training FLOPs per input token (forward + backward = 3x forward).

        Counts the matmuls of every layer (QKV, output, feed-forward), the attention
        scores and weighted sum over ``seq_len`` keys (full, bidirectional), and the
        LM head (transform + vocabulary projection) on ``lm_fraction`` of the positions.
        Embedding look-ups, norms and activations are ignored (negligible).
        """
        c = self.config
        return 3.0 * (c.n_layers * layer_flops(c, seq_len) + lm_fraction * head_flops(c))

    def save_pretrained(self, dir: str | os.PathLike, vocab: Any = None, extra: dict | None = None) -> Path:
        """Write config.json, model.safetensors, checksums.json (and the vocabulary);
        ``extra`` (JSON-able, e.g. how it was pretrained) goes under config.json's "extra"."""
        return save_model_dir(self, self.config, dir, extra_json=extra, vocab=vocab)

    @classmethod
    def from_pretrained(cls, dir: str | os.PathLike, device: str = "cpu") -> "TransformerEncoder":
        """Load a model saved with :meth:`save_pretrained` (checksums verified)."""
        return load_model_dir(cls, EncoderConfig, dir, device=device)
