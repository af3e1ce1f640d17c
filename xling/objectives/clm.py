"""Causal (left-to-right) language modelling per language, on stream rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from xling.data.masking import IGNORE, pad_batch
from xling.models import masks
from xling.objectives.base import masked_lm_loss
from xling.objectives.readers import read_streams
from xling.objectives.registry import ObjectiveKind, register_objective


@dataclass
class CLMObjective:
    """Predict token t+1 from tokens <= t (causal self-attention mask)."""

    name: str = "clm"

    def make_batch(self, rows: list[np.ndarray], lang_id: int, rng: np.random.Generator) -> dict[str, Any]:
        tokens = pad_batch(rows)  # (B, T)
        inputs = tokens[:, :-1]  # (B, T-1)
        targets = tokens[:, 1:].copy()
        targets[targets == 0] = IGNORE  # no target at padding
        t = inputs.shape[1]
        return {
            "tokens": torch.from_numpy(np.ascontiguousarray(inputs)),
            "langs": torch.full(inputs.shape, lang_id, dtype=torch.long),
            "targets": torch.from_numpy(targets),
            "attn_mask": masks.causal(t),
        }

    def loss(self, model, batch):
        return masked_lm_loss(model, batch, batch.get("task", self.name))


CLM = register_objective(ObjectiveKind(
    name="clm", langs="lang", model_types=("encoder", "seq2seq"), build=lambda ctx: CLMObjective(),
    read=read_streams, padded_len=len, stream=True, lm_probe=True))
