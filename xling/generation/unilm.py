"""Incremental decoding for a :class:`TransformerEncoder` trained the UNILM seq2seq way.

The model saw ``<s> x </s> y </s>`` under the seq2seq mask with ``<mask>`` at the
target positions it had to predict (:class:`xling.objectives.unilm.UnilmSeq2SeqObjective`).
Decoding mirrors that:

- construction encodes every source ``<s> x </s>`` once into a :class:`KVCache`
  (bidirectional among the source, source language id, positions 0..len-1);
- step 0 feeds only ``<mask>`` at position ``src_len`` and predicts there (the ``prev``
  given at step 0, BOS by the StepDecoder protocol, is ignored: UNILM's target starts
  right after the source's ``</s>``, with no BOS of its own);
- step t >= 1 feeds ``[y_{t-1}, <mask>]`` at positions ``src_len + t - 1, src_len + t``
  with ``masks.causal(2, past=L)``: ``y_{t-1}`` sees the cache and itself, ``<mask>``
  sees the cache, ``y_{t-1}`` and itself; the log-probs are read at ``<mask>``, then
  ``cache.truncate`` drops the ``<mask>``'s keys/values and keeps ``y_{t-1}``'s.
Target tokens carry the target language id.

With ``causal=True`` (a model fine-tuned with ``seq2seq.corruption: causal``, whose target
segment is ``<s> y </s>`` and each of whose target rows predicts the next token) there is no
``<mask>``: step t feeds ``prev`` (``<s>`` at step 0) at position ``src_len + t`` and reads the
log-probs at that token, which stays in the cache, as in an encoder-decoder's decoder.

Ragged sources are **right-padded**; each row keeps its own position offset
(``src_len`` of that row), so real tokens always sit at positions 0..len-1 and the
target follows the row's own source. The padding columns stay in the cache as keys
masked out by ``cache.key_pad``; attention does not depend on where a key sits in the
cache, only on its position embedding, so a row decodes exactly as it would alone.
"""

from __future__ import annotations

from typing import Sequence

import torch

from xling.data.span_masking import with_bos_eos
from xling.errors import XlingError
from xling.models import masks
from xling.models.encoder import TransformerEncoder
from xling.tokenization.vocab import BOS, EOS, MASK


class UnilmStepDecoder:
    """StepDecoder over N sources (see module doc); owns its KV cache.

    step(prev (N,)) -> log-probs (N, V) float32; reorder(index (N',)) keeps those rows.
    Attributes read by search: ``max_target_len`` (one int per source, in construction
    order: the position budget, EOS excluded) and ``device``.
    """

    def __init__(
        self,
        model: TransformerEncoder,
        src: Sequence[Sequence[int]],
        src_lang: int,
        tgt_lang: int,
        bos_id: int = BOS,
        eos_id: int = EOS,
        mask_id: int = MASK,
        causal: bool = False,
    ) -> None:
        if not len(src):
            raise XlingError("UNILM decoding: no source to decode")
        c = model.config
        self.model = model
        self.tgt_lang = tgt_lang
        self.mask_id = mask_id
        self.causal = causal
        self.device = next(model.parameters()).device
        rows = [with_bos_eos(x, bos_id, eos_id) for x in src]  # each (len(x) + 2,)
        self.src_lens = torch.tensor([len(r) for r in rows], device=self.device)  # (N,) source segment lengths
        S = int(self.src_lens.max())
        if S >= c.max_positions:
            raise XlingError(f"UNILM decoding: a source of {S} tokens (with <s> </s>) leaves no target position "
                             f"within max_positions={c.max_positions}; truncate the sources")
        tokens = torch.full((len(rows), S), c.pad_id, dtype=torch.long)  # (N, S) right-padded
        for i, r in enumerate(rows):
            tokens[i, : len(r)] = torch.from_numpy(r)
        tokens = tokens.to(self.device)
        # most target tokens, EOS excluded, per source (construction order): step L predicts at len(x) + 2 + L
        self.max_target_len = [c.max_positions - len(r) - 1 for r in rows]
        self.cache = model.new_cache()
        self.t = 0  # target tokens predicted so far (= step index)
        with torch.inference_mode():
            model(
                tokens,
                langs=torch.full_like(tokens, src_lang),
                positions=torch.arange(S, device=self.device).expand_as(tokens),
                attn_mask=masks.bidirectional(S, device=self.device),
                cache=self.cache,
            )

    def step(self, prev: torch.Tensor) -> torch.Tensor:
        """prev (N,) previous target tokens (ignored at step 0 unless causal) -> log-probs (N, V) float32."""
        N = self.src_lens.shape[0]
        prev = prev.to(self.device, torch.long).view(N, 1)  # (N, 1)
        if self.causal:
            new = prev  # (N, 1), <s> at step 0
        else:
            mask_tok = torch.full((N, 1), self.mask_id, dtype=torch.long, device=self.device)
            new = mask_tok if self.t == 0 else torch.cat([prev, mask_tok], dim=1)  # (N, 1) or (N, 2)
        k = new.shape[1]
        positions = self.src_lens[:, None] + self.t - (k - 1) + torch.arange(k, device=self.device)  # (N, k)
        limit = self.model.config.max_positions
        if int(positions.max()) >= limit:
            raise XlingError(f"UNILM decoding: target position {int(positions.max())} exceeds "
                             f"max_positions={limit}; lower the maximum output length")
        L = len(self.cache)
        with torch.inference_mode():
            h = self.model(
                new,
                langs=torch.full_like(new, self.tgt_lang),
                positions=positions,
                attn_mask=masks.causal(k, past=L, device=self.device),
                cache=self.cache,
            )  # (N, k, D)
            logits = self.model.lm_logits(h[:, -1])  # (N, V) at <mask> (causal: at the token fed)
        if not self.causal:
            self.cache.truncate(L + k - 1)  # keep y_{t-1}, drop <mask>
        self.t += 1
        return torch.log_softmax(logits.float(), dim=-1)

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` (N',) in that order (beam expansion, finished rows dropped)."""
        index = index.to(self.device, torch.long)
        self.cache.reorder(index)
        self.src_lens = self.src_lens.index_select(0, index)


def unilm_step_decoder(
    model: TransformerEncoder,
    src: Sequence[Sequence[int]],
    src_lang: int,
    tgt_lang: int,
    bos_id: int = BOS,
    eos_id: int = EOS,
    mask_id: int = MASK,
    causal: bool = False,
) -> UnilmStepDecoder:
    """A StepDecoder for ``src`` (token ids without <s>/</s>), translating/summarizing
    from language id ``src_lang`` into ``tgt_lang``; ``causal``: the model was fine-tuned with
    ``seq2seq.corruption: causal`` (see the module doc). Put the model in eval mode first
    (dropout would make every step random); the decoder runs under ``torch.inference_mode``."""
    return UnilmStepDecoder(model, src, src_lang, tgt_lang, bos_id, eos_id, mask_id, causal)
