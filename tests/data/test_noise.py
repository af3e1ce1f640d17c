"""Denoising noise: whole words, displacement, drop and blank rates, never empty, BOS/EOS untouched."""

import numpy as np
import pytest

from xling.data.noise import NoiseConfig, noise_words, shuffle_order, split_words, word_starts
from xling.errors import XlingError

MASK = 4
# ids 10..19 start words ("▁w"), 20..29 continue them ("ing")
PIECES = ["<pad>", "<unk>", "<s>", "</s>", "<mask>"] + ["x"] * 5 + [f"\u2581w{i}" for i in range(10)] + \
    [f"c{i}" for i in range(10)]
STARTS = word_starts(PIECES)


def sentence(n_words: int, rng) -> list[int]:
    """n words, each a start piece plus 0-2 continuation pieces; word j uses start id 10 + j % 10."""
    out = []
    for j in range(n_words):
        out += [10 + j % 10] + list(rng.integers(20, 30, size=rng.integers(0, 3)))
    return out


def test_words_are_start_pieces_with_their_continuations():
    assert STARTS[10] and not STARTS[20] and not STARTS[MASK]
    words = split_words(np.array([21, 10, 22, 23, 11, 12, 24]), STARTS)  # a leading continuation is a word
    assert [w.tolist() for w in words] == [[21], [10, 22, 23], [11], [12, 24]]


@pytest.mark.parametrize("k", [1, 2, 3, 4.5])
def test_no_word_moves_k_or_more_places(k):
    rng = np.random.default_rng(0)
    moved = []
    for n in (2, 5, 30):
        for _ in range(300):
            order = shuffle_order(n, k, rng)
            assert sorted(order.tolist()) == list(range(n))
            moved.append(int(np.abs(order - np.arange(n)).max()))
    assert max(moved) < k and (k <= 1 or max(moved) == int(np.ceil(k)) - 1)  # the bound is reached


def test_shuffle_keeps_each_words_pieces_together():
    rng = np.random.default_rng(1)
    cfg = NoiseConfig(shuffle_k=3, drop_prob=0.0, blank_prob=0.0)
    for _ in range(100):
        x = sentence(8, rng)
        y = noise_words(x, STARTS, cfg, MASK, rng)
        assert sorted(w.tobytes() for w in split_words(y, STARTS)) == sorted(w.tobytes() for w in split_words(
            np.array(x), STARTS))


def test_drop_and_blank_rates_within_tolerance():
    rng = np.random.default_rng(2)
    cfg = NoiseConfig(shuffle_k=0, drop_prob=0.1, blank_prob=0.1)
    words = kept = blanked = 0
    for _ in range(2000):
        x = sentence(10, rng)
        y = noise_words(x, STARTS, cfg, MASK, rng)
        words += 10
        n_mask = int((y == MASK).sum())
        kept += int(STARTS[y].sum()) + n_mask  # a mask replaces a whole word
        blanked += n_mask
    assert abs((words - kept) / words - 0.1) < 0.01  # drop rate
    assert abs(blanked / kept - 0.1) < 0.01  # blank rate among the kept words


def test_never_empty_and_no_noise_when_off():
    rng = np.random.default_rng(3)
    heavy = NoiseConfig(shuffle_k=3, drop_prob=0.99, blank_prob=0.0)
    for n in (1, 2, 5):
        for _ in range(200):
            assert len(noise_words(sentence(n, rng), STARTS, heavy, MASK, rng)) > 0
    x = sentence(6, rng)
    assert noise_words(x, STARTS, NoiseConfig(0, 0, 0), MASK, rng).tolist() == x
    assert noise_words([], STARTS, heavy, MASK, rng).tolist() == []


def test_bos_and_eos_are_untouched_in_the_denoise_batch():
    """The objective noises x, then the supervised layout adds <s> ... </s> around the source."""
    from xling.objectives.seq2seq import Seq2SeqObjective
    from xling.objectives.unmt import DenoiseObjective

    obj = DenoiseObjective(Seq2SeqObjective(), STARTS, NoiseConfig(), MASK)
    rng = np.random.default_rng(4)
    xs = [sentence(n, rng) for n in (3, 9, 1)]
    b = obj.make_batch(xs, 1, rng)
    for i, x in enumerate(xs):
        src = b["tokens"][i][b["tokens"][i] != 0].tolist()
        assert src[0] == 2 and src[-1] == 3 and 2 not in src[1:-1] and 3 not in src[1:-1]
        tgt = b["targets"][i][b["targets"][i] >= 0].tolist()
        assert tgt == x + [3]  # the target is the clean sentence
    assert (b["langs"] == 1).all() and (b["dec_langs"] == 1).all()


@pytest.mark.parametrize("bad", [dict(shuffle_k=-1), dict(drop_prob=1.0), dict(blank_prob=-0.1),
                                 dict(shuffle_k=float("nan"))])
def test_bad_settings_are_refused(bad):
    with pytest.raises(XlingError, match="denoise"):
        NoiseConfig(**bad)
