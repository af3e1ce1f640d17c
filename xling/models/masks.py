"""Attention-mask builders: pure functions returning bool tensors, True = may attend.

Shapes: a query axis of length ``Tq`` and a key axis of length ``Tk``. In self-attention
with an incremental cache, the queries are the *last* ``Tq`` of the ``Tk`` keys
(the first ``Tk - Tq`` keys come from the cache), so query ``i`` is key ``Tk - Tq + i``.

The four UNILM masks (bidirectional, left-to-right, right-to-left, sequence-to-sequence)
select the objective of one shared transformer; ``combine`` applies key padding on top
and makes sure every query row can attend somewhere, so softmax never sees an empty row
and attention never returns NaN.
"""

from __future__ import annotations

import torch


def key_padding(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """(B, T) token ids -> (B, T) bool, True for real (non-padding) tokens."""
    return tokens != pad_id


def bidirectional(T: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(T, T) all True: every token sees every token (BERT/XLM MLM)."""
    return torch.ones(T, T, dtype=torch.bool, device=device)


def causal(T: int, past: int = 0, device: torch.device | str | None = None) -> torch.Tensor:
    """(T, past + T) left-to-right mask: query ``i`` sees keys ``0 .. past + i``.

    ``past`` is the number of positions already in a key/value cache (0 without a cache).
    """
    q = torch.arange(T, device=device)[:, None] + past  # (T, 1) absolute query positions
    k = torch.arange(past + T, device=device)[None, :]  # (1, past + T)
    return k <= q


def right_to_left(T: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(T, T) right-to-left mask: query ``i`` sees keys ``i .. T-1``."""
    return causal(T, device=device).transpose(0, 1).contiguous()


def seq2seq(src_lens: torch.Tensor, T: int) -> torch.Tensor:
    """(B,) source lengths -> (B, T, T) UNILM sequence-to-sequence mask.

    Source tokens (positions < src_len) see the whole source and nothing else; target
    tokens see the whole source and the target tokens up to and including themselves.
    """
    src_lens = src_lens.to(torch.long)
    pos = torch.arange(T, device=src_lens.device)
    q = pos[None, :, None]  # (1, T, 1)
    k = pos[None, None, :]  # (1, 1, T)
    n = src_lens[:, None, None]  # (B, 1, 1)
    key_in_src = k < n  # (B, 1, T)
    query_in_tgt = q >= n  # (B, T, 1)
    return key_in_src | (query_in_tgt & (k <= q))  # (B, T, T)


def seq2seq_pseudo(src_lens: torch.Tensor, tgt_lens: torch.Tensor, T: int) -> torch.Tensor:
    """(B,) source lengths n, (B,) target lengths m -> (B, T, T) mask of UNILMv2's
    pseudo-masked layout ``[source: n] [target: m] [m pseudo <mask> tokens] [padding]``.

    Source rows see the source. Target token j sees the source and target tokens 0..j.
    Pseudo token j (it predicts target token j, at target token j's position) sees the
    source, target tokens 0..j-1 and itself: exactly what the ``<mask>`` appended at step
    j sees in incremental decoding, so training and decoding match. Padding rows see
    the source only.
    """
    pos = torch.arange(T, device=src_lens.device)
    q = pos[None, :, None]  # (1, T, 1)
    k = pos[None, None, :]  # (1, 1, T)
    n = src_lens.to(torch.long)[:, None, None]  # (B, 1, 1)
    m = tgt_lens.to(torch.long).to(src_lens.device)[:, None, None]  # (B, 1, 1)
    key_src = k < n  # (B, 1, T)
    key_tgt = (k >= n) & (k < n + m)  # (B, 1, T)
    query_tgt = (q >= n) & (q < n + m)  # (B, T, 1)
    query_pseudo = (q >= n + m) & (q < n + 2 * m)  # (B, T, 1)
    tgt_rows = query_tgt & key_tgt & (k <= q)  # (B, T, T)
    pseudo_rows = query_pseudo & ((key_tgt & (k - n < q - n - m)) | (k == q))  # (B, T, T)
    return key_src | tgt_rows | pseudo_rows


def _ensure_nonempty(mask: torch.Tensor) -> torch.Tensor:
    """Let every query row with no True attend to its own key (the diagonal, offset)."""
    Tq, Tk = mask.shape[-2], mask.shape[-1]
    q = torch.arange(Tq, device=mask.device)[:, None] + (Tk - Tq)  # (Tq, 1) own key index
    own = torch.arange(Tk, device=mask.device)[None, :] == q  # (Tq, Tk) one True per row
    empty = ~mask.any(dim=-1, keepdim=True)  # (B, Tq, 1)
    return mask | (empty & own)


def combine(attn_mask: torch.Tensor | None, key_pad: torch.Tensor) -> torch.Tensor:
    """Apply key padding on top of an attention mask.

    attn_mask: (Tq, Tk) or (B, Tq, Tk) bool, or None (bidirectional).
    key_pad: (B, Tk) bool, True for real tokens; queries are its last Tq positions.
    Returns (B, Tq, Tk) bool. Padded keys are never attended; a padded query attends
    only to itself, and any query whose row would be empty attends to itself, so the
    result has at least one True per row.
    """
    B, Tk = key_pad.shape
    if attn_mask is None:
        attn_mask = torch.ones(Tk, Tk, dtype=torch.bool, device=key_pad.device)
    Tq = attn_mask.shape[-2]
    if attn_mask.shape[-1] != Tk or Tq > Tk:
        raise ValueError(f"attention mask {tuple(attn_mask.shape)} does not fit key padding {tuple(key_pad.shape)}")
    query_real = key_pad[:, Tk - Tq :, None]  # (B, Tq, 1)
    mask = attn_mask & key_pad[:, None, :] & query_real  # (B, Tq, Tk)
    return _ensure_nonempty(mask)


def cross(tgt_len: int, src_key_pad: torch.Tensor) -> torch.Tensor:
    """(B, Ts) source padding (True = real) -> (B, Tt, Ts) cross-attention mask.

    Every target position sees every real source token. A source with no real token at
    all lets its queries attend to source position 0, so attention stays finite.
    """
    B, Ts = src_key_pad.shape
    mask = src_key_pad[:, None, :].expand(B, tgt_len, Ts).clone()  # (B, Tt, Ts)
    empty = ~src_key_pad.any(dim=-1)  # (B,)
    mask[empty, :, 0] = True
    return mask
