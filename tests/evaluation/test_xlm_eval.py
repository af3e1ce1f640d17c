"""The translation probe and MLM scores, checked with an oracle network whose
answers are known by construction."""

import numpy as np
import torch

from xling.evaluation.xlm import mlm_scores, translation_probe

V = 50


class CopyFromTranslation(torch.nn.Module):
    """Predicts, at each position of the first segment, the token at the same
    position id in the second segment when there is one, else the input token."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, tokens, langs=None, positions=None, attn_mask=None):
        b, t = tokens.shape
        if positions is None:
            positions = torch.arange(t).expand(b, t)
        out = tokens.clone()
        for r in range(b):
            starts = torch.nonzero(positions[r, 1:] == 0).flatten()
            if len(starts):
                s = int(starts[0]) + 1
                for i in range(s):
                    j = s + int(positions[r, i])
                    if j < t and tokens[r, j] != 0:
                        out[r, i] = tokens[r, j]
        return torch.nn.functional.one_hot(out, V).float() + 0 * self.w

    def lm_logits(self, h):
        return h


def test_probe_gap_with_an_oracle():
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(40):
        x = rng.integers(5, V, size=rng.integers(4, 15))
        pairs.append((x, x.copy()))  # the "translation" is the sentence itself
    r = translation_probe(CopyFromTranslation(), pairs, 0, 1, seed=0)
    assert r["acc_alone"] == 0.0  # alone, the oracle sees only <mask>
    assert r["acc_with_translation"] == 1.0
    assert r["gap"] == 1.0
    assert r["only_with"] == r["n"] and r["only_alone"] == 0 and r["p_value"] < 1e-10
    lengths = sum(len(x) for x, _ in pairs)
    assert 0.1 < r["n"] / lengths < 0.22  # ~15% of the tokens of A were masked


def test_probe_without_useful_translation_has_no_gap():
    rng = np.random.default_rng(1)
    pairs = [(rng.integers(5, V, size=10), rng.integers(5, V, size=10)) for _ in range(40)]
    r = translation_probe(CopyFromTranslation(), pairs, 0, 1, seed=0)
    assert r["acc_with_translation"] < 0.15  # copying an unrelated sentence is right by chance only
    assert r["p_value"] > 0.01  # no evidence of a gap


def test_mcnemar_hand_values():
    from xling.evaluation.xlm import mcnemar

    assert mcnemar(0, 0) == 1.0
    assert mcnemar(10, 10) == 1.0
    # z = (|30 - 10| - 1) / sqrt(40) = 3.004 -> two-sided p = 0.00266
    assert abs(mcnemar(30, 10) - 0.002663) < 2e-5
    assert mcnemar(30, 10) == mcnemar(10, 30)


def test_mlm_scores_identity_model_recovers_kept_tokens():
    rng = np.random.default_rng(0)
    rows = rng.integers(5, V, size=(20, 30))
    s = mlm_scores(CopyFromTranslation(), rows, 0, V, seed=0)
    # an identity network is right exactly on the 10% of chosen tokens left unchanged
    # (plus random replacements that hit the same token)
    assert 0.05 < s["acc"] < 0.16
    assert np.isfinite(s["ppl"])
