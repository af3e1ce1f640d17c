"""XLM's exponentially smoothed sampling: q_i = p_i^alpha / sum_j p_j^alpha.

alpha = 1 keeps the natural proportions, alpha = 0 is uniform; XLM used 0.5 and
XLM-R 0.3. Used both to sample vocabulary-training sentences per language and to
pick which language (pair) / objective the next training batch comes from.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from xling.errors import XlingError


def smoothed_probs(counts: Mapping[str, float], alpha: float) -> dict[str, float]:
    """Smoothed sampling probabilities for each key of ``counts`` (sizes, > 0)."""
    if not counts:
        raise XlingError("cannot sample from an empty set of languages")
    if not 0.0 <= alpha <= 1.0:
        raise XlingError(f"alpha must be in [0, 1], got {alpha}")
    keys = list(counts)
    n = np.array([float(counts[k]) for k in keys])
    if (n <= 0).any():
        empty = [k for k, v in zip(keys, n) if v <= 0]
        raise XlingError(f"no data for {', '.join(empty)}")
    p = n / n.sum()
    q = p**alpha
    q = q / q.sum()
    return dict(zip(keys, q.tolist()))


def sample_counts(counts: Mapping[str, int], alpha: float, total: int) -> dict[str, int]:
    """How many items to draw from each key so the draw follows the smoothed
    distribution for ``total`` items, capped at what each key has (largest remainder)."""
    q = smoothed_probs(counts, alpha)
    want = {k: q[k] * total for k in q}
    out = {k: min(int(want[k]), int(counts[k])) for k in q}
    rest = total - sum(out.values())
    for k in sorted(q, key=lambda k: want[k] - int(want[k]), reverse=True):
        if rest <= 0:
            break
        if out[k] < counts[k]:
            out[k] += 1
            rest -= 1
    return out
