"""Back-translation: decoding without gradient, the pairs it trains on, determinism; the objectives
in a run (directions checked, weights scheduled)."""

import functools

import numpy as np
import pytest
import torch

from conftest import tiny
from xling.objectives.seq2seq import Seq2SeqObjective
from xling.objectives.unmt import BacktranslationConfig, BacktranslationObjective

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def setup(vocabs):
    from xling.tasks.train import decode_ids

    vocab = vocabs[0]
    torch.manual_seed(0)
    model = tiny(True, vocab_size=len(vocab), n_langs=2, n_dec_layers=1, dropout=0.0, attn_dropout=0.0)
    gen = functools.partial(decode_ids, vocab=vocab)
    obj = BacktranslationObjective(Seq2SeqObjective(label_smoothing=0.0), gen, BacktranslationConfig(), 40)
    sents = [vocab.encode(t)[:12] for t in ("der Hund und die Katze", "die Katze", "und der Hund die Katze und")]
    batch = obj.make_batch(sents, (1, 0), np.random.default_rng(0))
    return model, obj, batch, sents


def graph_size(t: torch.Tensor) -> int:
    seen, todo = set(), [t.grad_fn]
    while todo:
        f = todo.pop()
        if f is None or f in seen:
            continue
        seen.add(f)
        todo.extend(g for g, _ in f.next_functions)
    return len(seen)


def test_generation_runs_without_gradient_and_adds_nothing_to_the_graph(setup):
    """The loss's autograd graph is exactly the supervised loss's on the same (x̂, x) pairs: the
    decoding steps (every decoder call with a cache) ran with gradients off."""
    model, obj, batch, sents = setup
    model.train()
    grad_modes = []
    decode = model.decode

    def spy(*args, **kwargs):
        if kwargs.get("cache") is not None:
            grad_modes.append(torch.is_grad_enabled())
        return decode(*args, **kwargs)

    model.decode = spy
    loss, _ = obj.loss(model, batch)
    assert grad_modes and not any(grad_modes)  # every generation step ran without gradient
    assert model.training  # put back in train mode after decoding in eval mode
    pairs = obj.back_translate(model, batch)
    plain = obj.inner.make_batch(pairs, (0, 1), np.random.default_rng(0))
    plain_loss, _ = obj.inner.loss(model, plain)
    assert graph_size(loss) == graph_size(plain_loss)
    assert torch.allclose(loss, plain_loss)  # dropout 0: the same computation
    loss.backward()
    assert model.encoder.tok_emb.weight.grad is not None


def test_the_pairs_go_back_to_the_source_language(setup):
    model, obj, batch, sents = setup
    pairs = obj.back_translate(model, batch)
    assert [x.tolist() for _, x in pairs] == sents  # the clean sentence is the target
    for (xhat, _), x in zip(pairs, sents):
        assert 1 <= len(xhat) <= int(1.3 * len(x) + 5)
    inner = obj.prepare(model, batch)
    assert (inner["langs"] == 0).all() and (inner["dec_langs"] == 1).all()  # trained l2 (0) -> l1 (1)
    assert obj.back_translate(model, batch)[0][0].tolist() == pairs[0][0].tolist()  # greedy: deterministic


def test_sampled_back_translations_follow_the_batch_seed(setup):
    model, obj, batch, sents = setup
    obj.config = BacktranslationConfig(sampling=True, temperature=2.0)
    a = [h.tolist() for h, _ in obj.back_translate(model, batch)]
    assert a == [h.tolist() for h, _ in obj.back_translate(model, batch)]
    other = obj.make_batch(sents, (1, 0), np.random.default_rng(1))
    assert a != [h.tolist() for h, _ in obj.back_translate(model, other)]


def test_a_unilm_encoder_back_translates_and_denoises_under_the_seq2seq_mask(vocabs):
    """On an encoder the pair objective is UNILM's (seq2seq mask); decoding is the UNILM step decoder."""
    from xling.data.masking import MaskingConfig
    from xling.data.noise import NoiseConfig, word_starts
    from xling.objectives.seq2seq import SupervisedConfig
    from xling.objectives.unilm import UnilmSeq2SeqObjective
    from xling.objectives.unmt import DenoiseObjective
    from xling.tasks.train import decode_ids

    vocab = vocabs[0]
    model = tiny(True, vocab_size=len(vocab), n_langs=2, dropout=0.0, attn_dropout=0.0).train()
    inner = UnilmSeq2SeqObjective(len(vocab), SupervisedConfig(corruption="causal"),
                                  masking=MaskingConfig(mask_id=vocab.mask_id), max_src_len=20, max_tgt_len=20)
    sents = [vocab.encode(t)[:10] for t in ("der alte Mann liest", "ein Buch heute")]
    bt = BacktranslationObjective(inner, functools.partial(decode_ids, vocab=vocab, decoding="causal"),
                                  BacktranslationConfig(), 20)
    loss, stats = bt.loss(model, bt.make_batch(sents, (1, 0), np.random.default_rng(0)))
    loss.backward()
    assert torch.isfinite(loss) and "attn_mask" in bt.prepare(model, bt.make_batch(sents, (1, 0),
                                                                                 np.random.default_rng(0)))
    pieces = [vocab.id_to_piece(i) for i in range(len(vocab))]
    dn = DenoiseObjective(inner, word_starts(pieces), NoiseConfig(), vocab.mask_id)
    loss, _ = dn.loss(model, dn.make_batch(sents, 1, np.random.default_rng(0)))
    assert torch.isfinite(loss)
