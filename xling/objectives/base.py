"""What every objective shares: the contract and the masked cross-entropy.

An objective turns raw token-id examples into model inputs + targets
(``make_batch``) and computes its loss (``loss``). It reaches the network only
through the model contract ``model(tokens, langs=, positions=, attn_mask=)``
(plus ``dec_tokens=, dec_langs=, dec_positions=`` for an encoder-decoder) and
``lm_logits(hidden)``; the network knows nothing of objectives.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from xling.data.masking import IGNORE

DECODER_KEYS = ("dec_tokens", "dec_langs", "dec_positions")  # forwarded to the model when present


class Objective(Protocol):
    name: str

    def make_batch(self, examples: list, langs: Any, rng: np.random.Generator) -> dict[str, Any]:
        ...

    def loss(self, model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        ...

    # Optional: ``prepare(model, batch) -> batch``, for an objective whose model inputs need the model
    # itself (back-translation decodes them): validation calls it before scoring the batch.


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The network inside a DistributedDataParallel (or similar) wrapper."""
    return getattr(model, "module", model)


def predict_masked(model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the model and the LM head on target positions only.

    ``targets`` align with ``tokens``, or with ``dec_tokens`` when the batch has them
    (then ``dec_tokens``, ``dec_langs``, ``dec_positions`` go to the model too).
    Returns ``(logits (N, V), targets (N,))`` for the N positions whose target is not
    IGNORE (computing logits only there saves most of the output softmax).
    """
    dec = {k: batch[k] for k in DECODER_KEYS if k in batch}  # encoder-decoder batches (MASS, seq2seq)
    hidden = model(
        batch["tokens"],
        langs=batch.get("langs"),
        positions=batch.get("positions"),
        attn_mask=batch.get("attn_mask"),
        **dec,
    )  # (B, T, D): encoder hidden states, or decoder ones when the batch has dec_tokens
    targets = batch["targets"]  # (B, T), aligned with hidden
    sel = targets != IGNORE
    logits = unwrap(model).lm_logits(hidden[sel])  # (N, V)
    return logits, targets[sel]


def masked_lm_loss(
    model: torch.nn.Module, batch: dict[str, Any], name: str, label_smoothing: float = 0.0
) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
    """Mean cross-entropy over target positions, with accuracy and counts as stats.

    With ``label_smoothing`` > 0 the loss is the smoothed cross-entropy and the plain
    one is reported as ``nll/<name>`` (for perplexities). ``tokens`` counts the
    non-padding input tokens, decoder inputs included. Stats are detached tensors on the
    loss's device (no host sync), except ``targets``, a count the host already knows.
    """
    logits, targets = predict_masked(model, batch)
    logits = logits.float()
    loss = F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
    n = targets.numel()
    with torch.no_grad():
        correct = (logits.argmax(-1) == targets).sum()
        stats = {
            f"loss/{name}": loss.detach(),
            f"acc/{name}": correct.to(torch.float64) / max(n, 1),
            "tokens": sum((batch[k] != 0).sum() for k in ("tokens", "dec_tokens") if k in batch),
            "targets": float(n),
        }
        if label_smoothing > 0:
            stats[f"nll/{name}"] = F.cross_entropy(logits, targets)
    return loss, stats
