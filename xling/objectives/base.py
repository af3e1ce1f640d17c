"""What every objective shares: the contract and the masked cross-entropy.

An objective turns raw token-id examples into model inputs + targets
(``make_batch``) and computes its loss (``loss``). It reaches the network only
through the encoder contract ``model(tokens, langs=, positions=, attn_mask=)``
and ``lm_logits(hidden)``; the network knows nothing of objectives.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from xling.data.masking import IGNORE


class Objective(Protocol):
    name: str

    def make_batch(self, examples: list, langs: Any, rng: np.random.Generator) -> dict[str, Any]:
        ...

    def loss(self, model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        ...


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The network inside a DistributedDataParallel (or similar) wrapper."""
    return getattr(model, "module", model)


def predict_masked(model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the encoder and the LM head on target positions only.

    Returns ``(logits (N, V), targets (N,))`` for the N positions whose target is
    not IGNORE (computing logits only there saves most of the output softmax).
    """
    hidden = model(
        batch["tokens"],
        langs=batch.get("langs"),
        positions=batch.get("positions"),
        attn_mask=batch.get("attn_mask"),
    )  # (B, T, D)
    targets = batch["targets"]  # (B, T)
    sel = targets != IGNORE
    logits = unwrap(model).lm_logits(hidden[sel])  # (N, V)
    return logits, targets[sel]


def masked_lm_loss(
    model: torch.nn.Module, batch: dict[str, Any], name: str
) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean cross-entropy over target positions, with accuracy and counts as stats."""
    logits, targets = predict_masked(model, batch)
    loss = F.cross_entropy(logits.float(), targets)
    with torch.no_grad():
        correct = (logits.argmax(-1) == targets).sum().item()
    n = int(targets.numel())
    stats = {
        f"loss/{name}": float(loss.detach()),
        f"acc/{name}": correct / max(n, 1),
        "tokens": float((batch["tokens"] != 0).sum()),
        "targets": float(n),
    }
    return loss, stats
