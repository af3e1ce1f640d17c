"""MLM masking rates, the 80/10/10 split, and stream / token-budget batching."""

import numpy as np
import pytest

from xling.data.batching import make_stream, token_budget_batches
from xling.data.masking import IGNORE, MaskingConfig, mlm_mask, pad_batch
from xling.errors import XlingError

V = 300


def _tokens(rng, b=400, t=256):
    toks = rng.integers(5, V, size=(b, t))
    toks[:, 0] = 3  # eos at stream start: special, never masked
    toks[:50, 200:] = 0  # some padding
    return toks


def test_mask_rate_and_80_10_10():
    rng = np.random.default_rng(0)
    toks = _tokens(rng)
    inputs, targets = mlm_mask(toks, V, rng)
    cand = toks >= 5
    chosen = targets != IGNORE
    n = cand.sum()
    assert abs(chosen.sum() / n - 0.15) < 0.005
    assert not chosen[~cand].any(), "special or pad positions must never be chosen"
    assert (targets[chosen] == toks[chosen]).all()
    masked = chosen & (inputs == 4)
    kept = chosen & (inputs == toks)
    rand = chosen & (inputs != 4) & (inputs != toks)
    c = chosen.sum()
    # random draws can hit the original token with prob 1/(V-5): 'kept' absorbs it
    assert abs(masked.sum() / c - 0.8) < 0.01
    assert abs(rand.sum() / c - 0.1 * (1 - 1 / (V - 5))) < 0.01
    assert abs(kept.sum() / c - (0.1 + 0.1 / (V - 5))) < 0.01
    assert (inputs[rand] >= 5).all() and (inputs[rand] < V).all()
    assert (inputs[~chosen] == toks[~chosen]).all(), "unchosen positions are untouched"


def test_masks_differ_between_visits_and_repeat_with_seed():
    toks = _tokens(np.random.default_rng(1), b=8)
    a = mlm_mask(toks, V, np.random.default_rng(5))[1]
    b = mlm_mask(toks, V, np.random.default_rng(5))[1]
    c = mlm_mask(toks, V, np.random.default_rng(6))[1]
    assert (a == b).all()
    assert (a != c).any()


def test_every_row_gets_a_target():
    toks = np.array([[3, 7, 0, 0], [3, 9, 10, 3]])
    cfg = MaskingConfig(mask_prob=0.0)
    _, targets = mlm_mask(toks, V, np.random.default_rng(0), cfg)
    assert ((targets != IGNORE).sum(axis=1) == 1).all()


def test_pad_batch():
    out = pad_batch([np.array([5, 6, 7]), np.array([8])])
    assert out.tolist() == [[5, 6, 7], [8, 0, 0]]


def test_make_stream():
    s = make_stream([[10, 11], [12], [13, 14, 15]], stream_len=4, eos_id=3)
    # 3 10 11 3 | 12 3 13 14 | (15 3 dropped)
    assert s.tolist() == [[3, 10, 11, 3], [12, 3, 13, 14]]
    with pytest.raises(XlingError):
        make_stream([[5]], stream_len=10, eos_id=3)


def test_token_budget_batches_cover_all_within_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 60, size=500)
    batches = token_budget_batches(lengths, 400, rng)
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(500))
    for b in batches:
        assert len(b) * lengths[b].max() <= 400
    # bucketing: padding waste is small compared with random batching
    waste = sum(len(b) * lengths[b].max() - lengths[b].sum() for b in batches)
    assert waste / lengths.sum() < 0.15
    with pytest.raises(XlingError):
        token_budget_batches(np.array([500]), 400)


def test_token_budget_batches_keep_groups_together():
    rng = np.random.default_rng(1)
    groups = np.repeat(rng.permutation(20), 8)  # 20 groups of 8 examples, in shuffled label order
    lengths = np.full(160, 10)
    batches = token_budget_batches(lengths, 80, rng, groups=groups)  # 8 examples a batch: one group each
    assert sorted(np.concatenate(batches).tolist()) == list(range(160))
    assert all(len(b) == 8 and len(set(groups[b].tolist())) == 1 for b in batches)
    # uneven lengths and sizes: still every example once, within budget, groups laid out contiguously
    lengths = rng.integers(3, 40, size=300)
    groups = rng.integers(0, 12, size=300)
    batches = token_budget_batches(lengths, 200, None, groups=groups)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(300))
    assert all(len(b) * lengths[b].max() <= 200 for b in batches)
    changes = np.count_nonzero(np.diff(groups[flat]))
    assert changes == len(np.unique(groups)) - 1  # each group once, in one run
    with pytest.raises(XlingError, match="groups"):
        token_budget_batches(lengths, 200, None, groups=groups[:-1])
