"""MASS span masking (statistics over many draws, a hand-worked case) and MASSObjective."""

import numpy as np
import pytest
import torch

from xling.data.masking import IGNORE, MaskingConfig
from xling.data.span_masking import mass_mask, span_length, span_starts
from xling.errors import XlingError
from xling.models.config import Seq2SeqConfig
from xling.models.seq2seq import TransformerSeq2Seq
from xling.objectives.mass import MASSObjective

BOS, EOS, MASK, V = 2, 3, 4, 100
pytestmark = pytest.mark.usefixtures("one_thread")


def sentences(rng, n, lo, hi):
    return [rng.integers(5, V, rng.integers(lo, hi + 1)) for _ in range(n)]


def test_span_length_rule():
    n = np.array([0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 100])
    assert span_length(n, 0.5).tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 5, 6, 50]  # floor(n/2 + 0.5), >= 1
    assert span_length(n, 1.0).tolist() == n.tolist()
    assert span_length(np.array([10, 3]), 0.3).tolist() == [3, 1]


def test_start_distribution():
    rng = np.random.default_rng(0)
    N = 20000
    # n = 10, L = 5: starts 0..5, interior 1..4
    starts = span_starts(np.full(N, 10), np.full(N, 5), rng)
    freq = np.bincount(starts, minlength=6) / N
    assert freq[0] == pytest.approx(0.2, abs=0.015)
    assert freq[5] == pytest.approx(0.2, abs=0.015)
    assert freq[1:5] == pytest.approx([0.15] * 4, abs=0.015)
    # two possible starts (no interior one): "elsewhere" falls on either
    starts = span_starts(np.full(N, 3), np.full(N, 2), rng)
    assert set(starts.tolist()) == {0, 1} and starts.mean() == pytest.approx(0.5, abs=0.02)
    # the span is the whole sentence: one possible start
    assert set(span_starts(np.full(100, 4), np.full(100, 4), rng).tolist()) == {0}


def test_mass_mask_statistics():
    rng = np.random.default_rng(1)
    sents = sentences(rng, 4000, 1, 14)
    m = mass_mask(sents, V, rng)
    n = np.array([len(s) for s in sents])
    assert m.lengths.tolist() == span_length(n, 0.5).tolist()
    assert m.enc_tokens.shape == (4000, 16) and m.targets.shape == (4000, 7)
    in_span = np.zeros(m.enc_tokens.shape, bool)
    for b, s in enumerate(sents):
        a, L = m.starts[b] + 1, m.lengths[b]
        orig = np.concatenate([[BOS], s, [EOS]])
        in_span[b, a : a + L] = True
        # outside the span the encoder input is untouched (<s>, </s>, padding included)
        out = np.ones(len(m.enc_tokens[b]), bool)
        out[a : a + L] = False
        assert (m.enc_tokens[b, out] == np.pad(orig, (0, 16 - len(orig)))[out]).all()
        # decoder input = the span shifted right by one at the fed tokens' original positions
        assert m.dec_tokens[b, :L].tolist() == orig[a - 1 : a + L - 1].tolist()
        assert m.dec_positions[b, :L].tolist() == list(range(a - 1, a + L - 1))
        assert m.targets[b, :L].tolist() == orig[a : a + L].tolist()
        assert (m.dec_tokens[b, L:] == 0).all() and (m.dec_positions[b, L:] == 0).all()
        assert (m.targets[b, L:] == IGNORE).all()
        assert a + L - 1 <= len(s)  # never beyond the last sentence token (</s> is never in the span)
    assert (m.dec_tokens != MASK).all()  # the decoder is fed original tokens
    # 80/10/10 inside the span
    orig_all = np.zeros_like(m.enc_tokens)
    for b, s in enumerate(sents):
        orig_all[b, : len(s) + 2] = np.concatenate([[BOS], s, [EOS]])
    enc, ref = m.enc_tokens[in_span], orig_all[in_span]
    k = len(enc)
    assert k == m.lengths.sum() > 15000
    masked, kept = (enc == MASK).mean(), (enc == ref).mean()
    assert masked == pytest.approx(0.8, abs=0.015)
    assert kept == pytest.approx(0.1 + 0.1 / (V - 5), abs=0.01)
    assert 1 - masked - kept == pytest.approx(0.1 * (1 - 1 / (V - 5)), abs=0.01)
    replaced = (enc != MASK) & (enc != ref)
    assert (enc[replaced] >= 5).all()  # random tokens are never special
    # start positions over the sentences with an interior start (n - L >= 2)
    room = n - m.lengths
    sel = room >= 2
    at_start = (m.starts[sel] == 0).mean()
    at_end = (m.starts[sel] == room[sel]).mean()
    assert at_start == pytest.approx(0.2, abs=0.02) and at_end == pytest.approx(0.2, abs=0.02)
    assert 1 - at_start - at_end == pytest.approx(0.6, abs=0.02)


class ScriptedRng:
    """Stands in for numpy's Generator with scripted draws, checking each call's range."""

    def __init__(self, randoms, integers):
        self.randoms, self.integers_ = list(randoms), list(integers)

    def random(self, shape):
        out = np.asarray(self.randoms.pop(0), dtype=float)
        assert out.shape == tuple(np.atleast_1d(shape)), (out.shape, shape)
        return out

    def integers(self, low, high, size=None):
        out = np.asarray(self.integers_.pop(0), dtype=np.int64)
        assert (np.asarray(low) <= out).all() and (out < np.asarray(high)).all()
        assert size is None or out.shape == (size,)
        return out


def test_hand_worked_example():
    x = [11, 12, 13, 14, 15, 16, 17, 18]  # n = 8 -> L = 4, possible starts 0..4
    rng = ScriptedRng(
        randoms=[
            [0.9],  # 0.9 >= 0.4: "elsewhere"
            [[0.5, 0.5, 0.5, 0.1, 0.85, 0.95, 0.3, 0.5, 0.5, 0.5]],  # 80/10/10 draws per encoder position
        ],
        integers=[[2], [0], [42]],  # interior start 2 (in 1..3), any start 0 (unused), the random token
    )
    m = mass_mask([x], V, rng)
    # span = x[2:6] = 13 14 15 16 at encoder positions 3..6 of <s> 11 .. 18 </s>
    assert m.starts.tolist() == [2] and m.lengths.tolist() == [4]
    #                                <s>  11  12  13->mask  14->42  15 kept  16->mask  17  18  </s>
    assert m.enc_tokens.tolist() == [[BOS, 11, 12, MASK, 42, 15, MASK, 17, 18, EOS]]
    assert m.dec_tokens.tolist() == [[12, 13, 14, 15]]
    assert m.dec_positions.tolist() == [[2, 3, 4, 5]]
    assert m.targets.tolist() == [[13, 14, 15, 16]]


def test_span_at_sentence_start_feeds_bos():
    # 0.1 < 0.2: span at the start; all span tokens masked (no random token drawn)
    rng = ScriptedRng(randoms=[[0.1], [[0.0] * 6]], integers=[[1], [0], []])
    m = mass_mask([[20, 21, 22, 23]], V, rng)
    assert m.enc_tokens.tolist() == [[BOS, MASK, MASK, 22, 23, EOS]]
    assert m.dec_tokens.tolist() == [[BOS, 20]] and m.dec_positions.tolist() == [[0, 1]]
    assert m.targets.tolist() == [[20, 21]]


def test_mass_objective_batch():
    obj = MASSObjective(V)
    b = obj.make_batch([[10, 11, 12, 13, 14, 15], [20, 21, 22], []], 1, np.random.default_rng(0))
    assert b["tokens"].shape == (3, 8) and b["dec_tokens"].shape == (3, 3)
    assert b["tokens"][2].tolist() == [BOS, EOS] + [0] * 6  # an empty sentence: no span
    assert (b["targets"][2] == IGNORE).all() and (b["dec_tokens"][2] == 0).all()
    assert (b["langs"] == 1).all() and (b["dec_langs"] == 1).all()
    assert b["targets"][0, :3].tolist() in ([10, 11, 12], [11, 12, 13], [12, 13, 14], [13, 14, 15])
    with pytest.raises(XlingError, match="empty"):
        obj.make_batch([[], []], 0, np.random.default_rng(0))
    with pytest.raises(XlingError, match="span_ratio"):
        MASSObjective(V, span_ratio=0.0)


@pytest.mark.parametrize("pre_norm", [True, False], ids=["pre_norm", "post_norm"])
def test_mass_training_overfits_a_fixed_batch(pre_norm):
    torch.manual_seed(0)
    cfg = Seq2SeqConfig(vocab_size=V, n_langs=2, d_model=32, n_layers=2, n_dec_layers=2, n_heads=4, d_ff=64,
                        max_positions=32, dropout=0.0, attn_dropout=0.0, pre_norm=pre_norm)
    m = TransformerSeq2Seq(cfg)
    rng = np.random.default_rng(0)
    obj = MASSObjective(V, masking=MaskingConfig())
    batch = obj.make_batch(sentences(rng, 16, 4, 12), 1, rng)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss, stats = obj.loss(m, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], losses
    assert stats["targets"] == float((batch["targets"] != IGNORE).sum()) and "loss/mass" in stats
    # the decoder and its cross-attention were trained
    assert m.dec_layers[0].cross_attn.q_proj.weight.grad.abs().sum() > 0
