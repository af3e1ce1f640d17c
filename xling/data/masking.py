"""Noising for masked-LM objectives: pure functions of (token ids, rng).

Conventions: token arrays are int64 numpy arrays (B, T); ``IGNORE`` (-100) marks
positions that carry no prediction target. Special ids (< ``n_special``: pad,
unk, bos, eos, mask) are never chosen for prediction and never drawn as random
replacements.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE = -100


@dataclass(frozen=True)
class MaskingConfig:
    mask_prob: float = 0.15  # fraction of (non-special) tokens chosen for prediction
    p_mask: float = 0.8  # chosen token -> <mask>
    p_random: float = 0.1  # chosen token -> random token; the rest (0.1) are kept
    n_special: int = 5  # ids below this are special (pad, unk, bos, eos, mask)
    mask_id: int = 4  # id of <mask>


def maskable(tokens: np.ndarray, n_special: int) -> np.ndarray:
    """Positions that may be chosen for prediction: every non-special token. (B, T) bool"""
    return tokens >= n_special


def choose_positions(
    candidates: np.ndarray, rate: float, rng: np.random.Generator, at_least_one: bool = True
) -> np.ndarray:
    """Bernoulli(rate) choice among ``candidates`` (B, T) bool; each row with a
    candidate gets at least one chosen position when ``at_least_one``."""
    chosen = (rng.random(candidates.shape) < rate) & candidates
    if at_least_one:
        empty = ~chosen.any(axis=1) & candidates.any(axis=1)
        for b in np.flatnonzero(empty):
            chosen[b, rng.choice(np.flatnonzero(candidates[b]))] = True
    return chosen


def corrupt(
    tokens: np.ndarray,
    chosen: np.ndarray,
    vocab_size: int,
    rng: np.random.Generator,
    cfg: MaskingConfig,
) -> np.ndarray:
    """BERT/XLM corruption of the chosen positions: ``p_mask`` -> <mask>,
    ``p_random`` -> a random non-special token, the rest kept. Returns new inputs."""
    u = rng.random(tokens.shape)
    inputs = tokens.copy()
    to_mask = chosen & (u < cfg.p_mask)
    to_rand = chosen & (u >= cfg.p_mask) & (u < cfg.p_mask + cfg.p_random)
    inputs[to_mask] = cfg.mask_id
    inputs[to_rand] = rng.integers(cfg.n_special, vocab_size, size=int(to_rand.sum()))
    return inputs


def mlm_mask(
    tokens: np.ndarray,
    vocab_size: int,
    rng: np.random.Generator,
    cfg: MaskingConfig = MaskingConfig(),
    candidates: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """XLM / BERT masking of a batch (B, T).

    Returns ``(inputs, targets)``: inputs with the chosen tokens corrupted
    80/10/10, targets holding the original token at chosen positions and
    ``IGNORE`` elsewhere. ``candidates`` (B, T) bool restricts which positions may
    be chosen (default: every non-special token).
    """
    if candidates is None:
        candidates = maskable(tokens, cfg.n_special)
    chosen = choose_positions(candidates, cfg.mask_prob, rng)
    inputs = corrupt(tokens, chosen, vocab_size, rng, cfg)
    targets = np.where(chosen, tokens, IGNORE)
    return inputs, targets


def pad_batch(seqs: list[np.ndarray], pad_id: int = 0, length: int | None = None) -> np.ndarray:
    """Right-pad 1-D int sequences into a (B, T) int64 array."""
    t = length if length is not None else max(len(s) for s in seqs)
    out = np.full((len(seqs), t), pad_id, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s[:t]
    return out
