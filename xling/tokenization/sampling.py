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
    distribution for ``total`` items, capped at what each key has.

    Water-filling: a key that cannot supply its share gives all it has, and the
    shortfall is shared among the others in proportion to their smoothed
    probabilities; integer parts are settled by largest remainder.
    """
    q = smoothed_probs(counts, alpha)
    total = min(int(total), int(sum(counts.values())))
    out = {k: 0 for k in q}
    free = dict(q)  # keys that can still take more, with their weights
    rest = total
    while rest > 0 and free:
        z = sum(free.values())
        want = {k: free[k] / z * rest for k in free}
        capped = [k for k in free if out[k] + want[k] >= counts[k]]
        if not capped:
            base = {k: int(want[k]) for k in free}
            for k in free:
                out[k] += base[k]
            left = rest - sum(base.values())
            for k in sorted(free, key=lambda k: want[k] - base[k], reverse=True)[:left]:
                out[k] += 1
            break
        for k in capped:
            rest -= counts[k] - out[k]
            out[k] = int(counts[k])
            del free[k]
    return out
