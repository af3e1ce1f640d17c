"""Transformer building blocks: multi-head attention (with a key/value cache),
feed-forward, and a pre-/post-norm layer with optional cross-attention.

Attention runs through ``torch.nn.functional.scaled_dot_product_attention`` with a
fused QKV projection. Masks are bool, True = may attend, broadcastable to
``(B, H, Tq, Tk)``; ``None`` means no mask at all (the fast path).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


FEW_QUERIES = 8  # at most this many queries per row: few_query_attention (incremental decoding)


def few_query_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(hd), masked) v with plain matmuls: q (B, H, Tq, hd), k / v
    (B, H, Tk, hd), attn_mask bool broadcastable to (B, H, Tq, Tk), True = may attend
    -> (B, H, Tq, hd). For a few queries per row (a decoding step) this is 2-2.6x faster
    on CPU than SDPA's flash kernel, which tiles over queries (benchmarks/RESULTS.md)."""
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)  # (B, H, Tq, Tk)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    return scores.softmax(-1) @ v


class LayerKV:
    """Keys and values of one attention module, kept between decoding steps.

    ``group`` g (cross-attention only): the keys/values hold B / g rows and query row r
    reads row r // g, so the g beams of a source share one copy of its encoder memory.

    ``reorder`` is lazy: it records the row index, and the next ``append`` gathers the old
    rows straight into the grown buffer, so a beam-search step copies the cache once
    (gather + append fused) instead of twice (``index_select``, then ``cat``). Reading
    ``k`` / ``v`` applies a pending reorder.
    """

    def __init__(self) -> None:
        self._k: torch.Tensor | None = None  # (B0, H, L, hd), rows before the pending reorder
        self._v: torch.Tensor | None = None
        self._index: torch.Tensor | None = None  # (B,) pending row index into _k / _v, or None
        self.group = 1

    def __len__(self) -> int:
        return 0 if self._k is None else self._k.shape[2]

    def _apply(self) -> None:
        if self._index is not None:
            self._k = self._k.index_select(0, self._index)
            self._v = self._v.index_select(0, self._index)
            self._index = None

    @property
    def k(self) -> torch.Tensor | None:
        """(B / group, H, L, hd) cached keys."""
        self._apply()
        return self._k

    @property
    def v(self) -> torch.Tensor | None:
        """(B / group, H, L, hd) cached values."""
        self._apply()
        return self._v

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append (B, H, t, hd) keys/values; return all of them, (B, H, L + t, hd)."""
        if self._k is not None:
            k, v = self._grow(self._k, k), self._grow(self._v, v)
            self._index = None
        else:  # contiguous rows: matmul reads them without a copy at every later step
            k, v = k.contiguous(), v.contiguous()
        self._k, self._v = k, v
        return k, v

    def _grow(self, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """[old rows (reordered by the pending index) ; new] along the positions, one copy."""
        B, H, t, hd = new.shape
        L = old.shape[2]
        out = new.new_empty(B, H, L + t, hd)
        if self._index is None:
            out[:, :, :L] = old
        elif old.device.type != "cpu" or (torch.is_grad_enabled() and old.requires_grad):
            # out= records no autograd; a strided out= is only measured (and needed) on the CPU
            out[:, :, :L] = old.index_select(0, self._index)
        else:
            torch.index_select(old, 0, self._index, out=out[:, :, :L])
        out[:, :, L:] = new
        return out

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` (B',) in that order (beam search); applied lazily."""
        if self._k is not None:
            self._index = index if self._index is None else self._index.index_select(0, index)

    def truncate(self, length: int) -> None:
        """Keep only the first ``length`` cached positions (drop tentative ones)."""
        if self._k is not None:
            self._k = self._k[:, :, :length]
            self._v = self._v[:, :, :length]


class KVCache:
    """Incremental-decoding state of a whole model.

    One :class:`LayerKV` per layer for self-attention (appended at every step) and one
    for cross-attention (the projected encoder memory, computed once). ``key_pad`` holds
    the (B, L) padding flags (True = real) of every cached position; the model appends to
    it, and ``len(cache)`` is the number of cached positions.
    """

    def __init__(self, n_layers: int) -> None:
        self.self_attn = [LayerKV() for _ in range(n_layers)]
        self.cross_attn = [LayerKV() for _ in range(n_layers)]
        self.key_pad: torch.Tensor | None = None  # (B, L) bool

    def __len__(self) -> int:
        return 0 if self.key_pad is None else self.key_pad.shape[1]

    def extend_key_pad(self, key_pad: torch.Tensor) -> torch.Tensor:
        """Append (B, t) padding flags of new positions; return all (B, L + t)."""
        if self.key_pad is not None:
            key_pad = torch.cat([self.key_pad, key_pad], dim=1)
        self.key_pad = key_pad
        return key_pad

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` (B',) in that order (beam search)."""
        for kv in self.self_attn:
            kv.reorder(index)
        if self.key_pad is not None:
            self.key_pad = self.key_pad.index_select(0, index)
        if len(self.cross_attn) and self.cross_attn[0].k is not None:
            self._reorder_cross(index // self.cross_attn[0].group)

    def _reorder_cross(self, rows: torch.Tensor) -> None:
        """Point the batch rows at memory rows ``rows`` (B',) without copying a source's
        memory per beam: when ``rows`` is g copies of each of n' memory rows in turn
        (beam search: the beams of a source are adjacent), the cross-attention caches keep
        those n' rows (copied only when a source was dropped) with ``group = g``;
        otherwise every row gets its own copy (``group = 1``)."""
        B = rows.numel()
        starts = (rows[1:] != rows[:-1]).nonzero()
        g = int(starts[0]) + 1 if starts.numel() else B
        mem = rows[::g]  # (B' / g,) memory row of each group
        if B % g or not torch.equal(rows, mem.repeat_interleave(g)):
            g, mem = 1, rows
        n_mem = self.cross_attn[0].k.shape[0]
        copy = mem.numel() != n_mem or not torch.equal(mem, torch.arange(n_mem, device=mem.device))
        for kv in self.cross_attn:
            if copy:
                kv.reorder(mem)
            kv.group = g

    def truncate(self, length: int) -> None:
        """Keep the first ``length`` self-attention positions, dropping later ones.

        UNILM decoding feeds ``[previous token, <mask>]`` at each step and keeps only
        the previous token's keys/values; cross-attention memory is untouched."""
        for kv in self.self_attn:
            kv.truncate(length)
        if self.key_pad is not None:
            self.key_pad = self.key_pad[:, :length]


class LangLinear(nn.Module):
    """One ``Linear(d_in, d_out)`` per language, chosen per batch row by its language id: MASS's
    cross-attention output projection (``encoder_attn.i.out_lin.{lang}``). ``weight`` is
    (n_langs, d_out, d_in), ``bias`` (n_langs, d_out)."""

    def __init__(self, n_langs: int, d_in: int, d_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_langs, d_out, d_in))
        self.bias = nn.Parameter(torch.zeros(n_langs, d_out))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor, langs: torch.Tensor | None) -> torch.Tensor:
        """x (B, T, d_in), langs (B,) language id of each row -> (B, T, d_out)."""
        if langs is None:
            raise ValueError("a per-language projection needs the language of each row")
        first = langs[:1]
        if bool((langs == first).all()):  # one language in the batch (translation): one matmul
            return F.linear(x, self.weight[first[0]], self.bias[first[0]])
        return torch.baddbmm(self.bias[langs][:, None, :], x, self.weight[langs].transpose(1, 2))


class MultiHeadAttention(nn.Module):
    """Multi-head attention; self-attention uses one fused (D, 3D) QKV projection.

    ``out_langs`` > 0 (cross-attention of a MASS decoder): one output projection per language
    (:class:`LangLinear`), chosen by the ``out_langs`` ids given to :meth:`forward`."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, cross: bool = False,
                 out_langs: int = 0) -> None:
        super().__init__()
        assert d_model % n_heads == 0, "d_model must be divisible by n_heads"
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.dropout = dropout
        self.cross = cross
        if cross:
            self.q_proj = nn.Linear(d_model, d_model)
            self.kv_proj = nn.Linear(d_model, 2 * d_model)
        else:
            self.qkv_proj = nn.Linear(d_model, 3 * d_model)
        self.out_proj = LangLinear(out_langs, d_model, d_model) if out_langs else nn.Linear(d_model, d_model)

    def _heads(self, x: torch.Tensor, n: int) -> tuple[torch.Tensor, ...]:
        """(B, T, n*D) -> n tensors (B, H, T, hd) (views, no copy)."""
        B, T, _ = x.shape
        x = x.view(B, T, n, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (n, B, H, T, hd)
        return tuple(x.unbind(0))

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        kv: torch.Tensor | None = None,
        cache: LayerKV | None = None,
        is_causal: bool = False,
        out_langs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend from ``x`` (B, Tq, D) to itself, or to ``kv`` (B, Tk, D) when cross.

        attn_mask: bool broadcastable to (B, H, Tq, Tk), True = may attend; None = all.
        cache: self-attention appends the new keys/values to it and attends to all of
        them; cross-attention projects ``kv`` once, stores it and reuses it afterwards
        (``kv`` may then be None). is_causal: use SDPA's causal fast path (no mask,
        Tq == Tk, no cache). out_langs: (B,) language ids choosing the output projection of
        each row (only with per-language projections).
        Returns (B, Tq, D).
        """
        B, T, D = x.shape
        g = 1
        if self.cross:
            (q,) = self._heads(self.q_proj(x), 1)
            if cache is not None and len(cache):
                k, v, g = cache.k, cache.v, cache.group  # (B / g, H, Tk, hd)
            else:
                k, v = self._heads(self.kv_proj(kv), 2)  # (B, H, Tk, hd)
                if cache is not None:
                    cache.append(k, v)
            if g > 1:  # the g rows of a group query their shared memory together
                q, attn_mask = self._group_queries(q, attn_mask, g)  # (B / g, H, g * T, hd)
        else:
            q, k, v = self._heads(self.qkv_proj(x), 3)  # (B, H, T, hd) each
            if cache is not None:
                k, v = cache.append(k, v)  # (B, H, L + T, hd)
        if cache is not None and q.shape[2] <= FEW_QUERIES and not is_causal and not (self.training and self.dropout):
            y = few_query_attention(q, k, v, attn_mask)  # decoding steps: faster than SDPA's kernel
        else:
            y = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=attn_mask,
                dropout_p=self.dropout if self.training else 0.0,
                is_causal=is_causal and attn_mask is None,
            )  # (B, H, Tq, hd), or (B / g, H, g * Tq, hd)
        if g > 1:
            y = y.view(B // g, self.n_heads, g, T, self.head_dim).transpose(1, 2)  # (B / g, g, H, T, hd)
        y = y.reshape(B, self.n_heads, T, self.head_dim).transpose(1, 2).reshape(B, T, D)
        if isinstance(self.out_proj, LangLinear):
            return self.out_proj(y, out_langs)
        return self.out_proj(y)

    def _group_queries(self, q: torch.Tensor, attn_mask: torch.Tensor | None, g: int
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """q (B, H, T, hd) -> (B / g, H, g * T, hd), query j * T + t of group i being row
        i * g + j's query t; a per-row mask (B, 1|H, T, Tk) becomes its group's first
        row's (the rows of a group share their memory and its padding)."""
        B, H, T, hd = q.shape
        q = q.reshape(B // g, g, H, T, hd).transpose(1, 2).reshape(B // g, H, g * T, hd)
        if attn_mask is not None and attn_mask.dim() == 4 and attn_mask.shape[0] == B:
            attn_mask = attn_mask[::g]  # (B / g, 1|H, T, Tk)
            if T > 1:
                attn_mask = attn_mask.repeat(1, 1, g, 1)  # (B / g, 1|H, g * T, Tk)
        return q, attn_mask


class FeedForward(nn.Module):
    """Position-wise Linear(D, d_ff) -> activation -> Linear(d_ff, D)."""

    def __init__(self, d_model: int, d_ff: int, activation: str = "gelu") -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_ff)
        self.fc2 = nn.Linear(d_ff, d_model)
        self.act = nn.GELU() if activation == "gelu" else nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., D)."""
        return self.fc2(self.act(self.fc1(x)))


class TransformerLayer(nn.Module):
    """Self-attention [+ cross-attention] + feed-forward, each with a residual.

    pre_norm=True: ``x + drop(f(LN(x)))`` (stable, needs a final LayerNorm in the model);
    pre_norm=False: ``LN(x + drop(f(x)))`` (post-norm, the original transformer / XLM).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.1,
        attn_dropout: float = 0.1,
        activation: str = "gelu",
        pre_norm: bool = True,
        layer_norm_eps: float = 1e-5,
        cross_attention: bool = False,
        cross_out_langs: int = 0,
    ) -> None:
        super().__init__()
        self.pre_norm = pre_norm
        self.self_attn = MultiHeadAttention(d_model, n_heads, attn_dropout)
        self.norm_attn = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.cross_attn = (MultiHeadAttention(d_model, n_heads, attn_dropout, cross=True, out_langs=cross_out_langs)
                           if cross_attention else None)
        self.norm_cross = nn.LayerNorm(d_model, eps=layer_norm_eps) if cross_attention else None
        self.ff = FeedForward(d_model, d_ff, activation)
        self.norm_ff = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.drop = nn.Dropout(dropout)

    def _residual(self, x: torch.Tensor, norm: nn.LayerNorm, f) -> torch.Tensor:
        if self.pre_norm:
            return x + self.drop(f(norm(x)))
        return norm(x + self.drop(f(x)))

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        memory: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        cache: LayerKV | None = None,
        cross_cache: LayerKV | None = None,
        langs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (B, T, D) -> (B, T, D).

        attn_mask / is_causal: self-attention mask (see MultiHeadAttention).
        memory (B, Ts, D) and memory_mask (broadcastable to (B, H, T, Ts)): encoder output
        for the cross-attention sub-layer (only in layers built with cross_attention).
        cache / cross_cache: per-layer key/value caches for incremental decoding.
        langs: (B,) language id of each row, choosing the cross-attention's output projection
        (layers built with ``cross_out_langs``).
        """
        x = self._residual(x, self.norm_attn, lambda h: self.self_attn(h, attn_mask, cache=cache, is_causal=is_causal))
        if self.cross_attn is not None:
            x = self._residual(
                x, self.norm_cross,
                lambda h: self.cross_attn(h, memory_mask, kv=memory, cache=cross_cache, out_langs=langs),
            )
        return self._residual(x, self.norm_ff, self.ff)
