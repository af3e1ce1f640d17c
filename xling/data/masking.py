"""Noising for masked-LM objectives: pure functions of (token ids, rng).

Conventions: token arrays are int64 numpy arrays (B, T); ``IGNORE`` (-100) marks
positions that carry no prediction target. Special ids (< ``n_special``: pad,
unk, bos, eos, mask) are never chosen for prediction and never drawn as random
replacements.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xling.errors import XlingError

IGNORE = -100


@dataclass(frozen=True)
class MaskingConfig:
    mask_prob: float = 0.15  # fraction of (non-special) tokens chosen for prediction
    p_mask: float = 0.8  # chosen token -> <mask>
    p_random: float = 0.1  # chosen token -> random token; the rest (0.1) are kept
    n_special: int = 5  # ids below this are special (pad, unk, bos, eos, mask)
    mask_id: int = 4  # id of <mask>

    def __post_init__(self) -> None:
        if not (0.0 <= self.mask_prob <= 1.0 and self.p_mask >= 0 and self.p_random >= 0
                and self.p_mask + self.p_random <= 1.0):  # mask_prob 0: one target per row (choose_positions)
            raise XlingError(f"masking: need 0 <= mask_prob <= 1, p_mask, p_random >= 0 and p_mask + p_random <= 1, "
                             f"got {self}")


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
    u: np.ndarray | None = None,
) -> np.ndarray:
    """BERT/XLM corruption of the chosen positions: ``p_mask`` -> <mask>,
    ``p_random`` -> a random non-special token, the rest kept. Returns new inputs.
    ``u`` (B, T) uniform draws deciding each position's fate (default: fresh ones;
    equal draws give equal fates, e.g. one per masked n-gram)."""
    if u is None:
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


# --- n-gram (span) masking, UNILM -------------------------------------------------


@dataclass(frozen=True)
class NgramConfig:
    ngram_prob: float = 0.2  # probability that a masked unit is an n-gram rather than one token (UNILM: 0.2)
    min_ngram: int = 2  # shortest n-gram unit
    max_ngram: int = 3  # longest n-gram unit (lengths drawn uniformly in [min_ngram, max_ngram])


def choose_units(
    candidates: np.ndarray, rate: float, rng: np.random.Generator, ngram: NgramConfig = NgramConfig()
) -> np.ndarray:
    """Choose ``round(rate * n)`` of each row's ``n`` candidate positions (at least one
    when ``n > 0``) as masking *units*: with probability ``ngram.ngram_prob`` a unit is a
    contiguous n-gram of ``min_ngram..max_ngram`` candidate tokens, otherwise one token.

    Units start at candidate positions visited in random order; a unit stops early at a
    non-candidate (a special token, padding), at an already chosen position, or when the
    row's budget is used up, so units never overlap and never cross a sentence boundary.
    Returns (B, T) int64: the unit index (0, 1, ... within its row) of each chosen
    position, -1 elsewhere. ``units >= 0`` is the chosen set; positions sharing a unit
    index form one contiguous run.
    """
    B, T = candidates.shape
    units = np.full((B, T), -1, dtype=np.int64)
    for b in range(B):
        starts = np.flatnonzero(candidates[b])
        if len(starts) == 0:
            continue
        budget = max(1, int(round(rate * len(starts))))
        rng.shuffle(starts)
        lengths = np.where(
            rng.random(len(starts)) < ngram.ngram_prob,
            rng.integers(ngram.min_ngram, ngram.max_ngram + 1, size=len(starts)),
            1,
        )
        n_chosen = n_units = 0
        for s, n in zip(starts, lengths):
            if n_chosen >= budget:
                break
            if units[b, s] >= 0:
                continue
            end = s
            while end < min(s + n, T) and candidates[b, end] and units[b, end] < 0 and n_chosen < budget:
                units[b, end] = n_units
                end += 1
                n_chosen += 1
            n_units += 1
    return units


def ngram_mask(
    tokens: np.ndarray,
    vocab_size: int,
    rng: np.random.Generator,
    cfg: MaskingConfig = MaskingConfig(),
    ngram: NgramConfig = NgramConfig(),
    candidates: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """UNILM masking of a batch (B, T): like :func:`mlm_mask`, but ``cfg.mask_prob`` of
    the candidates (exactly, rounded) are chosen in units of single tokens or n-grams
    (:func:`choose_units`), and the 80/10/10 decision is drawn once per unit, so a
    masked n-gram is usually hidden whole. Returns ``(inputs, targets)``."""
    if candidates is None:
        candidates = maskable(tokens, cfg.n_special)
    units = choose_units(candidates, cfg.mask_prob, rng, ngram)
    chosen = units >= 0
    per_unit = rng.random((tokens.shape[0], tokens.shape[1] + 1))  # (B, T+1) one draw per unit index
    u = np.take_along_axis(per_unit, np.maximum(units, 0), axis=1)  # (B, T)
    inputs = corrupt(tokens, chosen, vocab_size, rng, cfg, u=u)
    targets = np.where(chosen, tokens, IGNORE)
    return inputs, targets
