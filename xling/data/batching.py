"""From tokenized sentences to batches: text streams and token-budget buckets.

Pure functions (given an rng) so that a batch order is reproducible from a seed;
the stateful iteration over epochs lives in :mod:`xling.objectives.mixture`.
"""

from __future__ import annotations

import numpy as np

from xling.errors import XlingError


def make_stream(sentences: list[list[int]], stream_len: int, eos_id: int) -> np.ndarray:
    """XLM text streams: sentences joined as ``</s> s1 </s> s2 </s> ...`` and cut
    into rows of ``stream_len`` tokens (the tail that does not fill a row is dropped).
    Returns (N, stream_len) int64."""
    if stream_len < 2:
        raise XlingError(f"stream length must be >= 2, got {stream_len}")
    total = sum(len(s) + 1 for s in sentences) + 1
    flat = np.empty(total, dtype=np.int64)
    flat[0] = eos_id
    pos = 1
    for s in sentences:
        flat[pos : pos + len(s)] = s
        flat[pos + len(s)] = eos_id
        pos += len(s) + 1
    n = total // stream_len
    if n == 0:
        raise XlingError(f"not enough text for one stream of {stream_len} tokens ({total} tokens)")
    return flat[: n * stream_len].reshape(n, stream_len)


def token_budget_batches(
    lengths: np.ndarray,
    max_tokens: int,
    rng: np.random.Generator | None = None,
    max_sentences: int | None = None,
    groups: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Group example indices into batches of at most ``max_tokens`` padded tokens
    (batch size x longest length), bucketing examples of similar length together.

    With ``rng``, ties in length are broken at random and the batch order is
    shuffled; without it the order is deterministic (sorted by length).
    ``groups`` (n,) int, e.g. clusters of similar sentences: examples are laid out group
    by group (groups in random order with ``rng``), by length within a group, then cut
    into batches, so a batch holds one group or the end of one and the start of the next.
    """
    lengths = np.asarray(lengths)
    if len(lengths) == 0:
        return []
    if lengths.max() > max_tokens:
        raise XlingError(
            f"an example of {int(lengths.max())} tokens does not fit a batch of max_tokens={max_tokens}"
        )
    tiebreak = rng.random(len(lengths)) if rng is not None else np.arange(len(lengths))
    if groups is None:
        order = np.lexsort((tiebreak, lengths))  # sort by length, then tiebreak
    else:
        groups = np.asarray(groups)
        if groups.shape != lengths.shape:
            raise XlingError(f"groups: one per example needed, got {groups.shape} for {lengths.shape}")
        labels, code = np.unique(groups, return_inverse=True)
        rank = rng.permutation(len(labels)) if rng is not None else np.arange(len(labels))
        order = np.lexsort((tiebreak, lengths, rank[code]))  # by group, then length, then tiebreak
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        end = start
        longest = 0
        while end < len(order):
            longest_new = max(longest, int(lengths[order[end]]))
            size = end - start + 1
            if longest_new * size > max_tokens or (max_sentences and size > max_sentences):
                break
            longest = longest_new
            end += 1
        batches.append(order[start:end])
        start = end
    if rng is not None:
        perm = rng.permutation(len(batches))
        batches = [batches[i] for i in perm]
    return batches
