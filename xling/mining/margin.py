"""Margin scores (Artetxe & Schwenk 2019), vectorised over whole candidate arrays.

For a source x and a target y with cosine ``cos(x, y)`` and the mean cosine of each
to its k nearest neighbours on the other side, ``fwd_mean(x)`` and ``bwd_mean(y)``:

- ``ratio``:    cos(x, y) / ((fwd_mean(x) + bwd_mean(y)) / 2)
- ``distance``: cos(x, y) - (fwd_mean(x) + bwd_mean(y)) / 2
- ``absolute``: cos(x, y)

The score is symmetric in x and y, so a pair found in both directions gets the
same score from both (up to float rounding of the two searches).
"""

from __future__ import annotations

import numpy as np

from xling.errors import unknown

MARGINS = ("ratio", "distance", "absolute")


def check_margin(kind: str) -> None:
    if kind not in MARGINS:
        raise unknown("margin", kind, MARGINS)


def neighbour_mean(sims: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Mean cosine to the neighbours found, ``(n, k), (n, k) -> (n,)``; ids < 0 (not found
    by an approximate index) are left out; a row with none gets 0."""
    valid = ids >= 0  # (n, k)
    if valid.all():
        return sims.mean(axis=1, dtype=np.float64).astype(np.float32)
    total = np.where(valid, sims, 0).sum(axis=1, dtype=np.float64)
    return (total / np.maximum(valid.sum(axis=1), 1)).astype(np.float32)


def margin(cos: np.ndarray, fwd_mean: np.ndarray | None, bwd_mean: np.ndarray | None, kind: str) -> np.ndarray:
    """Element-wise margin score; the three arrays broadcast together."""
    if kind == "absolute":
        return np.asarray(cos, dtype=np.float32)
    avg = (fwd_mean + bwd_mean) / 2
    if kind == "distance":
        return (cos - avg).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (cos / avg).astype(np.float32)


def candidate_scores(sims: np.ndarray, ids: np.ndarray, own_mean: np.ndarray | None,
                     other_mean: np.ndarray | None, kind: str) -> np.ndarray:
    """Margin of every query against each of its k candidates, ``(n, k)``; -inf where no
    candidate was found. ``own_mean (n,)`` belongs to the queries, ``other_mean (m,)`` to
    the indexed side (both may be None for ``absolute``)."""
    valid = ids >= 0  # (n, k)
    if kind == "absolute":
        scores = margin(sims, None, None, kind)
    else:
        scores = margin(sims, own_mean[:, None], other_mean[np.where(valid, ids, 0)], kind)
    return np.where(valid, scores, -np.inf).astype(np.float32)


def best_candidates(scores: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best candidate of each row by margin: ``(ids (n,), scores (n,))``; a tie keeps the
    nearer neighbour by cosine; -1 / -inf for a row without candidates."""
    col = scores.argmax(axis=1)  # (n,)
    rows = np.arange(len(scores))
    return ids[rows, col], scores[rows, col]
