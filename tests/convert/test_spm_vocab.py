"""A foreign SentencePiece model rewritten with xling's special ids segments text exactly as
before, and the row map points every xling id at the foreign row of the same token."""

from __future__ import annotations

import io

import pytest
import sentencepiece as spm

from xling.convert.spm_vocab import rebuild
from xling.errors import XlingError
from xling.tokenization.vocab import SPECIAL_TOKENS, Vocab

TEXTS = ["In the beginning God created the heaven and the earth.", "And the earth was without form, and void.",
         "Au commencement, Dieu créa les cieux et la terre.", "La terre était informe et vide."] * 20


@pytest.fixture(scope="module")
def foreign() -> bytes:
    """A SentencePiece model trained the default way (<unk> 0, <s> 1, </s> 2), as fairseq users do."""
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(TEXTS), model_writer=buf, vocab_size=50,
                                   model_type="unigram", character_coverage=1.0)
    return buf.getvalue()


def fairseq_like_tokens(sp: spm.SentencePieceProcessor) -> list[str]:
    """A fairseq dictionary: its 4 specials, most pieces (a few left out), then madeupword padding."""
    pieces = [sp.id_to_piece(i) for i in range(3, sp.get_piece_size())]
    return ["<s>", "<pad>", "</s>", "<unk>", *pieces[:-5], "madeupword0000", "madeupword0001"]


def test_segmentation_is_unchanged_and_rows_point_at_the_same_token(foreign):
    sp = spm.SentencePieceProcessor(model_proto=foreign)
    tokens = fairseq_like_tokens(sp)
    m = rebuild(foreign, tokens, {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}, ["en", "fr"])
    v = m.vocab
    assert [v._sp.id_to_piece(i) for i in range(5)] == SPECIAL_TOKENS
    for text in TEXTS[:4] + ["zebra quartz!"]:
        assert [v._sp.id_to_piece(i) for i in v.encode(text)] == [sp.id_to_piece(i) for i in sp.encode(text)]
        if 1 not in v.encode(text):  # (xling's decode drops <unk>, SentencePiece's writes " ⁇ ")
            assert v.decode(v.encode(text)) == sp.decode(sp.encode(text))
    for xid in range(len(v)):
        piece = v._sp.id_to_piece(xid)
        if piece in tokens:
            assert tokens[m.rows[xid]] == piece or (piece == "<mask>" and m.rows[xid] == 3)
        else:  # a piece fairseq's dictionary lacks: its <unk> row, never predicted
            assert m.rows[xid] == 3 and xid in m.absent
    left_out = {sp.id_to_piece(i) for i in range(sp.get_piece_size() - 5, sp.get_piece_size())}
    assert {v._sp.id_to_piece(i) for i in m.absent} == left_out | {"<mask>"}
    for tok in ("madeupword0000", "madeupword0001"):  # foreign-only tokens kept (control: never segmented to)
        xid = v._sp.piece_to_id(tok)
        assert tokens[m.rows[xid]] == tok and v._sp.is_control(xid)
    assert sorted(m.rows[i] for i in range(len(v)) if i not in m.absent) == list(range(len(tokens)))


def test_the_rebuilt_vocabulary_saves_and_loads(foreign, tmp_path):
    sp = spm.SentencePieceProcessor(model_proto=foreign)
    m = rebuild(foreign, fairseq_like_tokens(sp), {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}, ["en"])
    m.vocab.save(tmp_path / "v")
    again = Vocab.load(tmp_path / "v")
    assert len(again) == len(m.vocab) and again.encode(TEXTS[2]) == m.vocab.encode(TEXTS[2])


def test_not_a_sentencepiece_model():
    with pytest.raises(XlingError, match="bad.model: not a SentencePiece model"):
        rebuild(b"\x00garbage" * 10, ["<s>"], {"<unk>": 0}, ["en"], where="bad.model")
