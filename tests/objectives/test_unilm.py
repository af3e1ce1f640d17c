"""UNILM: the four masks as the objective builds them, the mask mixture, n-gram masking,
the seq2seq fine-tuning layout, the incremental decoder against full forwards, and tiny
models that learn (reversal with the decoder; overfitting a pretraining batch)."""

from functools import partial

import numpy as np
import pytest
import torch

from conftest import tiny as tiny_model
from xling.data.masking import IGNORE, MaskingConfig, NgramConfig, choose_units, mlm_mask, ngram_mask
from xling.errors import XlingError
from xling.generation.unilm import unilm_step_decoder
from xling.models import masks
from xling.objectives.unilm import (
    MASK_TYPES,
    UnilmConfig,
    UnilmObjective,
    UnilmSeq2SeqObjective,
    split_point,
)
from xling.objectives.seq2seq import SupervisedConfig as UnilmSeq2SeqConfig  # the seq2seq section

PAD, BOS, EOS, MASK = 0, 2, 3, 4
V = 100


def M(rows):
    return torch.tensor(rows, dtype=torch.bool)


tiny = partial(tiny_model, dropout=0.0, attn_dropout=0.0)  # a TransformerEncoder (V = 100 tokens)


# ---------------------------------------------------------------- masks, by hand


def test_shared_masks_by_hand():
    obj = UnilmObjective(V)
    rows = [np.array([3, 10, 11, 3]), np.array([3, 20, 21, 22])]
    rng = np.random.default_rng(0)
    bidi = obj.make_batch(rows, 1, rng, kind="bidi")["attn_mask"]
    l2r = obj.make_batch(rows, 1, rng, kind="l2r")["attn_mask"]
    r2l = obj.make_batch(rows, 1, rng, kind="r2l")["attn_mask"]
    assert torch.equal(bidi, M([[1, 1, 1, 1]] * 4))
    assert torch.equal(l2r, M([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]))
    assert torch.equal(r2l, M([[1, 1, 1, 1], [0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1]]))


def test_seq2seq_mask_by_hand_two_source_lengths_and_padding():
    obj = UnilmObjective(V)
    # row 0: </s> at 0, 3, 6 -> source lengths 1, 4, 7 end on </s>; 4 is nearest the middle of 8.
    # row 1 (6 real tokens, 2 padding): </s> at 0, 2, 5 -> 1, 3, 6; only 3 leaves both segments >= 2.
    rows = [np.array([3, 10, 11, 3, 12, 13, 3, 14]), np.array([3, 20, 3, 21, 22, 3])]
    b = obj.make_batch(rows, 2, np.random.default_rng(0), kind="s2s")
    assert b["src_lens"].tolist() == [4, 3]
    assert b["unilm_mask"] == "s2s"
    assert b["positions"].tolist() == [list(range(8))] * 2
    assert (b["langs"] == 2).all()
    m0 = M([[1, 1, 1, 1, 0, 0, 0, 0],   # source: the whole source, nothing else
            [1, 1, 1, 1, 0, 0, 0, 0],
            [1, 1, 1, 1, 0, 0, 0, 0],
            [1, 1, 1, 1, 0, 0, 0, 0],
            [1, 1, 1, 1, 1, 0, 0, 0],   # target: source + target up to itself
            [1, 1, 1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 1, 1, 1, 0],
            [1, 1, 1, 1, 1, 1, 1, 1]])
    m1 = M([[1, 1, 1, 0, 0, 0, 0, 0],
            [1, 1, 1, 0, 0, 0, 0, 0],
            [1, 1, 1, 0, 0, 0, 0, 0],
            [1, 1, 1, 1, 0, 0, 0, 0],
            [1, 1, 1, 1, 1, 0, 0, 0],
            [1, 1, 1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 1, 1, 1, 0],
            [1, 1, 1, 1, 1, 1, 1, 1]])
    assert torch.equal(b["attn_mask"], torch.stack([m0, m1]))
    # what the encoder applies: key padding on top (padded queries see only themselves)
    eff = masks.combine(b["attn_mask"], masks.key_padding(b["tokens"], PAD))
    assert torch.equal(eff[0], m0)
    assert torch.equal(eff[1], M([[1, 1, 1, 0, 0, 0, 0, 0],
                                  [1, 1, 1, 0, 0, 0, 0, 0],
                                  [1, 1, 1, 0, 0, 0, 0, 0],
                                  [1, 1, 1, 1, 0, 0, 0, 0],
                                  [1, 1, 1, 1, 1, 0, 0, 0],
                                  [1, 1, 1, 1, 1, 1, 0, 0],
                                  [0, 0, 0, 0, 0, 0, 1, 0],
                                  [0, 0, 0, 0, 0, 0, 0, 1]]))


def test_split_point_rules():
    rng = np.random.default_rng(0)
    row = np.array([5, 6, 7, 8, 9, 10, 11, 12, 13, 14])  # no </s>: random in [2, 8]
    draws = {split_point(row, 10, EOS, "sentence", 2, rng) for _ in range(300)}
    assert draws == set(range(2, 9))
    row = np.array([3, 5, 6, 7, 8, 3, 9, 3, 10, 11])  # ends 1, 6, 8: 6 is nearest 5 (|12-10| < |16-10|)
    assert split_point(row, 10, EOS, "sentence", 2, rng) == 6
    assert {split_point(row, 10, EOS, "random", 2, rng) for _ in range(300)} == set(range(2, 9))
    assert split_point(np.array([5, 6, 7]), 3, EOS, "sentence", 2, rng) == 1  # too short for 2 + 2


# ---------------------------------------------------------------- mixture and masking rates


def test_mixture_proportions():
    obj = UnilmObjective(V)
    rng = np.random.default_rng(0)
    rows = [np.array([3, 10, 11, 12, 3, 13, 14, 15])]
    n = 4000
    kinds = [obj.make_batch(rows, 0, rng)["unilm_mask"] for _ in range(n)]
    freq = np.array([kinds.count(k) for k in MASK_TYPES]) / n
    assert np.abs(freq - [1 / 3, 1 / 3, 1 / 6, 1 / 6]).max() < 0.025, freq
    only = UnilmObjective(V, UnilmConfig(p_bidirectional=0, p_seq2seq=0, p_left_to_right=0.5, p_right_to_left=0.5))
    kinds = {only.make_batch(rows, 0, rng)["unilm_mask"] for _ in range(100)}
    assert kinds == {"l2r", "r2l"}


def test_config_validation():
    with pytest.raises(XlingError, match="sum to 1"):
        UnilmConfig(p_bidirectional=0.5)
    with pytest.raises(XlingError, match=">= 0"):
        UnilmConfig(p_bidirectional=-0.5, p_seq2seq=1, p_left_to_right=0.25, p_right_to_left=0.25)
    with pytest.raises(XlingError, match="split"):
        UnilmConfig(split="middle")
    with pytest.raises(XlingError, match="tgt_mask_prob"):
        UnilmSeq2SeqConfig(tgt_mask_prob=0.0)
    with pytest.raises(XlingError, match="corruption"):
        UnilmSeq2SeqConfig(corruption="zeros")
    with pytest.raises(XlingError, match="masking"):  # every masking section checks itself (MLM / TLM too)
        MaskingConfig(p_mask=0.9, p_random=0.2)


def _stream(rng, b=300, t=128):
    toks = rng.integers(5, V, size=(b, t))
    toks[:, ::16] = EOS  # a sentence boundary every 16 tokens
    toks[:30, 100:] = PAD
    return toks


def test_ngram_masking_rate_and_80_10_10():
    rng = np.random.default_rng(0)
    toks = _stream(rng)
    inputs, targets = ngram_mask(toks, V, rng)
    cand = toks >= 5
    chosen = targets != IGNORE
    assert not chosen[~cand].any(), "specials and padding are never chosen"
    assert abs(chosen.sum() / cand.sum() - 0.15) < 0.005  # exact per row up to rounding
    assert (targets[chosen] == toks[chosen]).all()
    c = chosen.sum()
    masked = chosen & (inputs == MASK)
    kept = chosen & (inputs == toks)
    rand = chosen & ~masked & ~kept
    # fates are drawn per unit (fewer draws than tokens): wider tolerance than MLM's test
    assert abs(masked.sum() / c - 0.8) < 0.03
    assert abs(rand.sum() / c - 0.1) < 0.02
    assert abs(kept.sum() / c - 0.1) < 0.02
    assert (inputs[~chosen] == toks[~chosen]).all()


def test_ngram_units_are_contiguous_runs_with_one_fate():
    rng = np.random.default_rng(1)
    toks = _stream(rng)
    cand = toks >= 5
    units = choose_units(cand, 0.15, np.random.default_rng(7))
    inputs, _ = ngram_mask(toks, V, np.random.default_rng(7))  # same draws: same units
    lengths = []
    whole = 0
    for b in range(toks.shape[0]):
        for u in np.unique(units[b][units[b] >= 0]):
            pos = np.flatnonzero(units[b] == u)
            assert (np.diff(pos) == 1).all(), "a unit is one contiguous run"
            assert cand[b, pos].all(), "a unit never covers a special token"
            lengths.append(len(pos))
            if len(pos) > 1:
                is_mask = inputs[b, pos] == MASK
                whole += int(is_mask.all() or not is_mask.any())
    lengths = np.array(lengths)
    assert lengths.max() == 3 and (lengths >= 2).any()
    multi = (lengths > 1).sum()
    assert whole == multi, "an n-gram is masked whole or not at all"
    # 20% of units are drawn as 2-3-grams; a few are cut short at </s>, padding or the budget
    assert 0.12 < multi / len(lengths) < 0.22
    assert np.mean(lengths[lengths > 1]) > 2.2


def test_ngram_prob_zero_is_single_tokens_and_mlm_unchanged():
    toks = _stream(np.random.default_rng(2))
    units = choose_units(toks >= 5, 0.15, np.random.default_rng(0), NgramConfig(ngram_prob=0.0))
    for b in range(toks.shape[0]):
        u = units[b][units[b] >= 0]
        assert len(u) == len(np.unique(u))
    # mlm_mask's draws are untouched by the extension (same seed -> known first draws)
    a = mlm_mask(toks, V, np.random.default_rng(3))
    rng = np.random.default_rng(3)
    chosen = (rng.random(toks.shape) < 0.15) & (toks >= 5)
    assert ((a[1] != IGNORE) == chosen).all()


# ---------------------------------------------------------------- seq2seq fine-tuning batches


def test_seq2seq_finetune_layout():
    obj = UnilmSeq2SeqObjective(V, UnilmSeq2SeqConfig(corruption="mask"))
    pairs = [([10, 11, 12], [20, 21]), ([13], [22, 23, 24, 25])]
    b = obj.make_batch(pairs, (1, 2), np.random.default_rng(0))
    # <s> x </s> y </s>; row 1 has the same length (8) so no padding
    orig = [[2, 10, 11, 12, 3, 20, 21, 3], [2, 13, 3, 22, 23, 24, 25, 3]]
    assert b["src_lens"].tolist() == [5, 3]
    assert b["langs"].tolist() == [[1] * 5 + [2] * 3, [1] * 3 + [2] * 5]
    assert b["positions"].tolist() == [list(range(8))] * 2
    assert torch.equal(b["attn_mask"], masks.seq2seq(torch.tensor([5, 3]), 8))
    tg = b["targets"]
    assert (tg[0, :5] == IGNORE).all() and (tg[1, :3] == IGNORE).all(), "no source token is a target"
    assert ((tg != IGNORE).sum(1)).tolist() == [2, 4]  # round(0.7 * 3), round(0.7 * 5)
    chosen = tg != IGNORE
    assert (b["tokens"][chosen] == MASK).all()
    assert (tg[chosen] == torch.tensor(orig)[chosen]).all()
    assert (b["tokens"][~chosen] == torch.tensor(orig)[~chosen]).all()


def test_seq2seq_finetune_rates_padding_truncation():
    obj = UnilmSeq2SeqObjective(V, max_src_len=6, max_tgt_len=9)
    rng = np.random.default_rng(0)
    n_tgt = n_chosen = n_eos = n_eos_chosen = n_mask = 0
    for _ in range(200):
        pairs = [(rng.integers(5, V, rng.integers(1, 10)), rng.integers(5, V, rng.integers(0, 12))) for _ in range(8)]
        b = obj.make_batch(pairs, (0, 1), rng)
        for i, (x, y) in enumerate(pairs):
            ns, nt = min(len(x), 6) + 2, min(len(y), 9) + 1
            assert int(b["src_lens"][i]) == ns
            tg, tok = b["targets"][i], b["tokens"][i]
            assert (tg[:ns] == IGNORE).all() and (tg[ns + nt:] == IGNORE).all()
            assert (tok[ns + nt:] == PAD).all() and (b["langs"][i, ns:ns + nt] == 1).all()
            assert (b["langs"][i, :ns] == 0).all()
            seg = tg[ns:ns + nt]
            n_tgt += nt
            n_chosen += int((seg != IGNORE).sum())
            n_mask += int((tok[ns:ns + nt] == MASK).sum())
            n_eos += 1
            n_eos_chosen += int(seg[-1] == EOS)
    assert abs(n_chosen / n_tgt - 0.7) < 0.03
    assert abs(n_eos_chosen / n_eos - 0.7) < 0.05, "the final </s> is a target as often as any token"
    assert abs(n_mask / n_chosen - 0.8) < 0.03  # default corruption: 80/10/10


# ---------------------------------------------------------------- incremental decoder

# At the default init (std 0.02) attention barely moves the outputs: a decoder that lets
# the previous token see the <mask> differs from the reference by ~1e-7 only. With std 0.2
# such bugs differ by ~5e-2 while a correct decoder stays within ~2e-6.
STD = 0.2
ATOL = 1e-4


def _full_logprobs(model, x, y_prev, src_lang, tgt_lang):
    """Reference: one full forward of <s> x </s> y_<t <mask>, no cache, no padding."""
    tokens = [BOS, *x, EOS, *y_prev, MASK]
    n_src = len(x) + 2
    T = len(tokens)
    langs = [src_lang] * n_src + [tgt_lang] * (T - n_src)
    with torch.no_grad():
        h = model(torch.tensor([tokens]), langs=torch.tensor([langs]), positions=torch.arange(T)[None],
                  attn_mask=masks.seq2seq(torch.tensor([n_src]), T))
        return torch.log_softmax(model.lm_logits(h[0, -1]).float(), -1)


@pytest.mark.parametrize("pre_norm", [True, False], ids=["pre_norm", "post_norm"])
def test_decoder_matches_full_forward_ragged_and_reorder(pre_norm):
    model = tiny(pre_norm=pre_norm, init_std=STD).eval()
    g = torch.Generator().manual_seed(0)
    srcs = [[11, 12, 13], [21, 22, 23, 24, 25, 26, 27], [31]]
    ys = torch.randint(5, V, (3, 6), generator=g).tolist()  # forced target tokens per source
    dec = unilm_step_decoder(model, srcs, src_lang=0, tgt_lang=2)
    rows = [0, 1, 2]  # which source each decoder row holds
    prev = torch.full((3,), BOS)
    for t in range(6):
        if t == 3:  # beam-style reorder: duplicate, drop, permute
            index = torch.tensor([2, 0, 0, 1])
            dec.reorder(index)
            rows = [rows[i] for i in index.tolist()]
            prev = prev[index]
        lp = dec.step(prev)
        assert lp.dtype == torch.float32 and lp.shape == (len(rows), V)
        for i, r in enumerate(rows):
            ref = _full_logprobs(model, srcs[r], ys[r][:t], 0, 2)
            assert torch.allclose(lp[i], ref, atol=ATOL), (t, i)
        prev = torch.tensor([ys[r][t] for r in rows])
    assert torch.allclose(lp.exp().sum(-1), torch.ones(len(rows)))


def test_decoder_single_equals_batched():
    model = tiny(seed=1, init_std=STD).eval()
    srcs = [[40, 41], [50, 51, 52, 53, 54]]
    batched = unilm_step_decoder(model, srcs, 1, 0)
    alone = [unilm_step_decoder(model, [s], 1, 0) for s in srcs]
    prev = torch.full((2,), BOS)
    for _ in range(4):
        lp = batched.step(prev)
        for i, d in enumerate(alone):
            assert torch.allclose(lp[i], d.step(prev[i:i + 1])[0], atol=ATOL)
        prev = lp.argmax(-1)


def test_decoder_user_errors():
    model = tiny(max_positions=8).eval()
    with pytest.raises(XlingError, match="max_positions"):
        unilm_step_decoder(model, [list(range(5, 12))], 0, 1)  # 9 tokens with <s> </s>
    dec = unilm_step_decoder(model, [[5, 6, 7]], 0, 1)  # source segment of 5: target positions 5..7
    assert dec.max_target_len == [2]  # 3 predictions, the last one being </s>
    assert unilm_step_decoder(model, [[5], [5, 6, 7, 8]], 0, 1).max_target_len == [4, 1]
    prev = torch.tensor([BOS])
    for _ in range(3):
        prev = dec.step(prev).argmax(-1)
    with pytest.raises(XlingError, match="max_positions"):
        dec.step(prev)
    with pytest.raises(XlingError, match="no source"):
        unilm_step_decoder(model, [], 0, 1)


# ---------------------------------------------------------------- tiny models learn


def _greedy(model, srcs, max_len):
    """Hand-written greedy search over the step decoder: stop a row at </s>."""
    dec = unilm_step_decoder(model, srcs, 0, 1)
    prev = torch.full((len(srcs),), BOS)
    outs = [[] for _ in srcs]
    done = [False] * len(srcs)
    for _ in range(max_len):
        prev = dec.step(prev).argmax(-1)
        for i, tok in enumerate(prev.tolist()):
            if not done[i]:
                done[i] = tok == EOS
                if not done[i]:
                    outs[i].append(tok)
    return outs, done


def test_tiny_unilm_learns_to_reverse(one_thread):
    torch.manual_seed(0)
    model = tiny(d_model=64).train()
    obj = UnilmSeq2SeqObjective(V)
    rng = np.random.default_rng(0)

    def sample(n):
        xs = [rng.choice(np.arange(5, V), size=rng.integers(3, 7), replace=False) for _ in range(n)]
        return [(x, x[::-1].copy()) for x in xs]

    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(500):
        loss, _ = obj.loss(model, obj.make_batch(sample(32), (0, 1), rng))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    test = sample(100)
    outs, done = _greedy(model, [x.tolist() for x, _ in test], max_len=8)
    acc = np.mean([o == y.tolist() for o, (_, y) in zip(outs, test)])
    assert all(done) and acc > 0.9, acc


@pytest.mark.parametrize("kind", MASK_TYPES)
def test_pretraining_step_reduces_loss_on_fixed_batch(kind, one_thread):
    model = tiny().train()
    obj = UnilmObjective(V)
    rng = np.random.default_rng(0)
    rows = [np.concatenate([[3], rng.integers(5, V, 9), [3], rng.integers(5, V, 12)]) for _ in range(8)]
    batch = obj.make_batch(rows, 1, rng, kind=kind)
    batch["task"] = "unilm-en"
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss, stats = obj.loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert stats[f"loss/unilm-{kind}"] == stats["loss/unilm-en"]
    assert f"acc/unilm-{kind}" in stats and stats["targets"] == float((batch["targets"] != IGNORE).sum())
    assert losses[-1] < 0.5 * losses[0], losses


# ---------------------------------------------------------------- pseudo-masked fine-tuning (UNILMv2)


def test_pseudo_mask_by_hand():
    # n = 3 (<s> a </s>), m = 2 (b </s>), then 2 pseudo masks and one padding position: T = 8
    got = masks.seq2seq_pseudo(torch.tensor([3]), torch.tensor([2]), 8)[0]
    want = M([[1, 1, 1, 0, 0, 0, 0, 0],   # source rows: the source
              [1, 1, 1, 0, 0, 0, 0, 0],
              [1, 1, 1, 0, 0, 0, 0, 0],
              [1, 1, 1, 1, 0, 0, 0, 0],   # target 0: source + itself
              [1, 1, 1, 1, 1, 0, 0, 0],   # target 1: source + targets 0..1
              [1, 1, 1, 0, 0, 1, 0, 0],   # pseudo 0 (predicts target 0): source + itself
              [1, 1, 1, 1, 0, 0, 1, 0],   # pseudo 1: source + target 0 + itself
              [1, 1, 1, 0, 0, 0, 0, 0]])  # padding: the source
    assert torch.equal(got, want)


def test_pseudo_batch_layout_and_padding():
    obj = UnilmSeq2SeqObjective(V, UnilmSeq2SeqConfig(corruption="pseudo"))
    b = obj.make_batch([([10, 11], [20]), ([13], [22, 23])], (1, 2), np.random.default_rng(0))
    assert b["tokens"].tolist() == [[2, 10, 11, 3, 20, 3, MASK, MASK, PAD],
                                    [2, 13, 3, 22, 23, 3, MASK, MASK, MASK]]
    assert b["positions"].tolist() == [[0, 1, 2, 3, 4, 5, 4, 5, 0], [0, 1, 2, 3, 4, 5, 3, 4, 5]]
    assert b["langs"].tolist() == [[1] * 4 + [2] * 4 + [0], [1] * 3 + [2] * 6]
    I = IGNORE
    assert b["targets"].tolist() == [[I] * 6 + [20, 3, I], [I] * 6 + [22, 23, 3]]  # every target token, once
    assert torch.equal(b["attn_mask"], masks.seq2seq_pseudo(torch.tensor([4, 3]), torch.tensor([2, 3]), 9))


def _training_logprobs(model, corruption, src, tgt):
    """Log-probs (targets, V) the fine-tuning loss of one (src, tgt) pair is computed on."""
    obj = UnilmSeq2SeqObjective(V, UnilmSeq2SeqConfig(corruption=corruption, tgt_mask_prob=1.0))
    b = obj.make_batch([(src, tgt)], (1, 2), np.random.default_rng(0))
    with torch.no_grad():
        h = model(b["tokens"], langs=b["langs"], positions=b["positions"], attn_mask=b["attn_mask"])
        return torch.log_softmax(model.lm_logits(h[0, b["targets"][0] != IGNORE]).float(), -1)


def test_pseudo_training_logits_equal_incremental_decoding():
    """The loss of pseudo-masked fine-tuning is computed on exactly the distributions that
    decoding samples from: the logits at pseudo token j equal the decoder's step j given the
    gold target prefix (KV cache, one step at a time)."""
    model = tiny(seed=3, init_std=0.3).eval()  # large weights: the context moves the logits a lot
    src, tgt = [10, 11, 12, 13], [20, 21, 22]
    train_lp = _training_logprobs(model, "pseudo", src, tgt)  # (4, V)
    dec = unilm_step_decoder(model, [src], src_lang=1, tgt_lang=2, bos_id=BOS, eos_id=EOS, mask_id=MASK)
    prev = torch.tensor([0])
    for j, gold in enumerate(tgt + [EOS]):
        step_lp = dec.step(prev)[0]
        assert torch.allclose(step_lp, train_lp[j], atol=1e-4), j
        prev = torch.tensor([gold])
    # with BERT-style corruption the model sees a different (masked) left context in training
    lp2 = _training_logprobs(model, "mask", src, tgt)  # every target token <mask>
    assert (lp2[1:] - train_lp[1:]).abs().max() > 0.1


# ---------------------------------------------------------------- causal (prefix-LM) fine-tuning

def test_causal_batch_by_hand():
    """``<s> x </s> <s> y </s>``: the target segment starts with <s> (target language); each
    of its rows but the last predicts the next token; nothing is masked or corrupted."""
    obj = UnilmSeq2SeqObjective(V, UnilmSeq2SeqConfig(corruption="causal"))
    b = obj.make_batch([([10, 11, 12], [20, 21]), ([13], [22, 23, 24])], (1, 2), np.random.default_rng(0))
    I = IGNORE
    assert b["tokens"].tolist() == [[BOS, 10, 11, 12, EOS, BOS, 20, 21, EOS], [BOS, 13, EOS, BOS, 22, 23, 24, EOS, 0]]
    assert b["targets"].tolist() == [[I, I, I, I, I, 20, 21, EOS, I], [I, I, I, 22, 23, 24, EOS, I, I]]
    assert b["langs"].tolist() == [[1] * 5 + [2] * 4, [1] * 3 + [2] * 5 + [0]]
    assert torch.equal(b["attn_mask"], masks.seq2seq(torch.tensor([5, 3]), 9))


def test_causal_training_logits_equal_incremental_decoding():
    """The logits of causal fine-tuning at each target row equal the causal step decoder's
    step given the gold prefix (<s> fed at step 0, no <mask>, nothing truncated)."""
    model = tiny(seed=4, init_std=0.3).eval()
    src, tgt = [10, 11, 12, 13], [20, 21, 22]
    train_lp = _training_logprobs(model, "causal", src, tgt)  # (4, V)
    dec = unilm_step_decoder(model, [src], src_lang=1, tgt_lang=2, bos_id=BOS, eos_id=EOS, mask_id=MASK, causal=True)
    prev = torch.tensor([BOS])
    for j, gold in enumerate(tgt + [EOS]):
        assert torch.allclose(dec.step(prev)[0], train_lp[j], atol=1e-4), j
        prev = torch.tensor([gold])
    assert len(dec.cache) == 6 + len(tgt) + 1  # <s> x </s>, then <s> y: every fed token stays
    # the <mask> decoder reads the same model differently: the check has teeth
    other = unilm_step_decoder(model, [src], src_lang=1, tgt_lang=2, bos_id=BOS, eos_id=EOS, mask_id=MASK)
    assert (other.step(torch.tensor([BOS]))[0] - train_lp[0]).abs().max() > 0.1
