"""How many source tokens generation keeps: the trained length, within the model's positions.

Regression: a UNILM summarizer trained on 96-token descriptions (max_positions 128) was
fed only 62 tokens at generation, half of its positions, although it was trained with 96.
"""

from __future__ import annotations

import itertools
import logging

import pytest
import torch

from xling.generation.api import generate_texts, trained_source_len
from xling.generation.base import GenerationConfig
from xling.generation.decoders import max_source_len
from xling.models.config import EncoderConfig, Seq2SeqConfig
from xling.models.encoder import TransformerEncoder
from xling.models.seq2seq import TransformerSeq2Seq

SMALL = dict(d_model=32, n_layers=2, n_heads=4, d_ff=64, max_positions=24, dropout=0.0, attn_dropout=0.0)


def _encoder(vocab_size: int = 40, n_langs: int = 1) -> TransformerEncoder:
    torch.manual_seed(0)
    return TransformerEncoder(EncoderConfig(vocab_size=vocab_size, n_langs=n_langs, **SMALL))


def _seq2seq() -> TransformerSeq2Seq:
    return TransformerSeq2Seq(Seq2SeqConfig(vocab_size=40, n_langs=1, n_dec_layers=1, **SMALL))


def test_max_source_len_prefers_the_trained_length_within_the_positions():
    unilm, s2s = _encoder(), _seq2seq()  # 24 positions
    assert max_source_len(unilm) == 10  # unknown: half the positions, <s> </s> excluded
    assert max_source_len(unilm, 16) == 16  # was 10: the trained length wins ...
    assert max_source_len(unilm, 40) == 21  # ... within <s> x </s> and one target position
    assert max_source_len(s2s) == 22
    assert max_source_len(s2s, 16) == 16
    assert max_source_len(s2s, 40) == 22


def _pretrain(objectives, max_len=126, max_tgt_len=126):
    return {"pretrain": {"objectives": [{"type": t, "langs": ["en"]} for t in objectives], "max_len": max_len,
                         "max_tgt_len": max_tgt_len, "stream_len": 256}}


@pytest.mark.parametrize("model_type,extra,want", [
    ("encoder", _pretrain(["summarization"], 16, 4), 16),  # 16 + 4 + 3 <= 24
    ("encoder", _pretrain(["summarization"], 20, 4), 17),  # the trained target needs its room
    ("encoder", _pretrain(["unilm"]), None),  # streams only: max_len is an unused default
    ("encoder", _pretrain(["summarization"]), None),  # 126 + 126 cannot fit 24 positions: no say
    ("encoder", None, None),
    ("seq2seq", _pretrain(["translation"], 30, 30), 30),  # generate_nbest caps it at 22
    ("seq2seq", _pretrain(["mass"], 18), 18),
    ("seq2seq", _pretrain(["mlm"]), None),
])
def test_trained_source_len(tmp_path, model_type, extra, want):
    model = _encoder() if model_type == "encoder" else _seq2seq()
    model.save_pretrained(tmp_path / "m", extra=extra)
    assert trained_source_len(tmp_path / "m") == want


def test_unilm_generation_keeps_the_trained_source_length(tmp_path, caplog):
    from xling.tokenization.vocab import train_vocab

    words = ["the", "old", "man", "reads", "a", "book", "today", "river"]
    texts = [" ".join(p) for p in itertools.permutations(words, 4)][:300]
    vocab = train_vocab({"en": texts}, tmp_path / "vocab", vocab_size=282, max_sentences=300)
    model = _encoder(len(vocab), 1)
    model.save_pretrained(tmp_path / "m", vocab=vocab, extra=_pretrain(["summarization"], 16, 4))
    long = " ".join(words * 4)
    assert len(vocab.encode(long)) > 16
    with caplog.at_level(logging.WARNING, logger="xling.generation.api"):
        out = generate_texts(model, vocab, [long], "en", "en", GenerationConfig(beam=2, max_len_a=0, max_len_b=4),
                             max_src_len=trained_source_len(tmp_path / "m"))
    assert len(out) == 1
    msgs = [r.getMessage() for r in caplog.records if r.name == "xling.generation.api"]
    assert len(msgs) == 1 and "longer than 16 tokens" in msgs[0], msgs  # was: 10
