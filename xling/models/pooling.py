"""Pooling encoder states into one vector per sequence (sentence embedders, classifiers)."""

from __future__ import annotations

import torch


def pool(hidden: torch.Tensor, real: torch.Tensor, how: str) -> torch.Tensor:
    """hidden (B, S, D), real (B, S) bool (True = a real token, at least one per row) -> (B, D).

    ``max`` and ``mean`` look at real positions only; ``cls`` takes position 0 (``<s>``)."""
    if how == "max":
        return hidden.masked_fill(~real[..., None], float("-inf")).amax(dim=1)
    if how == "mean":
        m = real[..., None].to(hidden.dtype)  # (B, S, 1)
        return (hidden * m).sum(1) / m.sum(1)
    if how == "cls":
        return hidden[:, 0]
    raise ValueError(f"unknown pooling {how!r}")
