"""Step decoder of a sentence embedder's bottleneck decoder: text back from embeddings.

The decoder (:class:`xling.embeddings.model.BottleneckDecoder`) is an LSTM whose only view of
the source is the sentence embedding; its "cache" is the LSTM state (h, c), so one step is
one LSTM step and ``reorder`` selects rows of the state, the embeddings and the languages.
"""

from __future__ import annotations

import torch

from xling.embeddings.model import SentenceEmbedder
from xling.errors import XlingError


class EmbeddingStepDecoder:
    """StepDecoder (``xling.generation.base``) over N sentence embeddings into one language.

    No position budget (an LSTM): search's ``max_len_a * 0 + max_len_b`` bounds the length."""

    def __init__(self, model: SentenceEmbedder, embeddings: torch.Tensor, tgt_lang: int) -> None:
        if embeddings.ndim != 2 or embeddings.shape[0] == 0 or embeddings.shape[1] != model.dim:
            raise XlingError(f"embedding decoding: embeddings of shape {tuple(embeddings.shape)}, "
                             f"expected (N > 0, {model.dim})")
        if not 0 <= tgt_lang < model.config.n_langs:
            raise XlingError(f"embedding decoding: language id {tgt_lang} outside [0, {model.config.n_langs})")
        self.model = model
        self.device = next(model.parameters()).device
        self.sent = embeddings.to(self.device, torch.float32)  # (N, D)
        self.lang = torch.full((self.sent.shape[0],), tgt_lang, dtype=torch.long, device=self.device)  # (N,)
        with torch.inference_mode():
            self.state = model.need_decoder().initial_state(self.sent)  # (h, c) each (L, N, H)

    @property
    def n(self) -> int:
        """Live rows."""
        return self.sent.shape[0]

    def step(self, prev: torch.Tensor) -> torch.Tensor:
        """prev (N,) last tokens (BOS at step 0) -> log-probs (N, V) float32."""
        tok = prev.to(self.device, torch.long).view(-1, 1)  # (N, 1)
        with torch.inference_mode():
            h, self.state = self.model.decoder(tok, self.sent, self.lang, self.state)  # (N, 1, E)
            logits = self.model.lm_logits(h[:, -1])  # (N, V)
        return torch.log_softmax(logits.float(), dim=-1)

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` (N',) in that order."""
        index = index.to(self.device, torch.long)
        self.sent = self.sent.index_select(0, index)
        self.lang = self.lang.index_select(0, index)
        self.state = tuple(s.index_select(1, index) for s in self.state)
