"""The ``hf`` vocabulary backend (xling.tokenization.hf): a Hugging Face tokenizer.json behind xling's
fixed special ids, checked against the ``tokenizers`` library's own output.

The tokenizers are those of the conftest's tiny BERT (WordPiece, BERT's specials) and XLM-R (Unigram,
XLM-R's ``<s> <pad> </s> <unk>`` then ``<mask>``: another order than xling's) models, trained with
``tokenizers`` on the workspace's English and French; the samples add five other scripts.
"""

from __future__ import annotations

import json

import pytest

from xling.errors import XlingError
from xling.tokenization.hf import HfVocab
from xling.tokenization.vocab import BOS, EOS, MASK, PAD, UNK, Vocab

SAMPLES = ["The river reads.", "Le livre, au bord !", "Старик у реки", "老人读书", "يقرأ كتابا", "आदमी किताब",
           "unseen ξ words 東京", "", "a <mask> and [MASK] in text"]


@pytest.fixture(scope="module")
def tokenizers_(hf_models):
    """name -> (a fresh Tokenizer of the conftest's tiny models, its pad, unk, bos, eos and mask tokens)."""
    from tokenizers import Tokenizer

    root = hf_models.bert.parent
    names = {"wordpiece": ("bert", ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]),
             "unigram": ("xlmr", ["<pad>", "<unk>", "<s>", "</s>", "<mask>"])}
    return {k: (lambda d=d: Tokenizer.from_file(str(root / d / "tokenizer.json")), n) for k, (d, n) in names.items()}


def build(tok, names, size=None, languages=("en", "fr")):
    specials = [None if n is None else tok.token_to_id(n) for n in names]
    return HfVocab(tok.to_str(), specials, size or tok.get_vocab_size(), list(languages))


@pytest.mark.parametrize("kind", ["wordpiece", "unigram"])
def test_ids_are_the_tokenizers_mapped(tokenizers_, kind, tmp_path):
    """encode = the tokenizer's ids (no specials added) through the mapping; specials at xling's ids;
    decode = the tokenizer's decode; save -> load gives the same vocabulary."""
    make, names = tokenizers_[kind]
    tok = make()
    v = build(tok, names)
    assert len(v) == tok.get_vocab_size()
    assert [v.rows[i] for i in (PAD, UNK, BOS, EOS, MASK)] == [tok.token_to_id(n) for n in names]
    assert sorted(v.rows) == list(range(len(v)))  # a permutation
    ref_tok = type(tok).from_str(tok.to_str())
    ref_tok.encode_special_tokens = True
    for text in SAMPLES:
        ref = ref_tok.encode(text, add_special_tokens=False).ids
        ids = v.encode(text)
        specials = {v.rows[i] for i in (PAD, BOS, EOS, MASK)}
        assert [v.rows[i] for i in ids] == [v.rows[UNK] if j in specials else j for j in ref]
        assert MASK not in ids and all(i >= 5 or i == UNK for i in ids)
        assert v.decode([BOS, *ids, EOS, PAD]) == ref_tok.decode(ref)
    assert v.encode_batch(SAMPLES) == [v.encode(t) for t in SAMPLES]
    assert [v.id_to_piece(i) for i in range(5)] == ["<pad>", "<unk>", "<s>", "</s>", "<mask>"]
    assert all(v.piece_to_id(v.id_to_piece(i)) == i for i in range(len(v)))
    v.save(tmp_path)
    w = Vocab.load(tmp_path)
    assert isinstance(w, HfVocab) and w.rows == v.rows and w.languages == ["en", "fr"]
    assert [w.encode(t) for t in SAMPLES] == [v.encode(t) for t in SAMPLES]


def test_round_trip_of_normalised_text(tokenizers_):
    """With the Unigram tokenizer (NFKC, Metaspace) decode(encode(x)) == x for NFKC text of known characters."""
    make, names = tokenizers_["unigram"]
    v = build(make(), names)
    for text in ["And God said, Let there be light.", "Et Dieu dit : Que la lumière soit !"]:
        assert v.decode(v.encode(text)) == text


def test_absent_specials_and_extra_rows(tokenizers_):
    """A tokenizer without a mask token: xling's <mask> takes the <unk> row and is never produced; a
    model table with more rows than tokens keeps them (ids after every token)."""
    tok = tokenizers_["unigram"][0]()
    v = build(tok, ["<pad>", "<unk>", "<s>", "</s>", None], size=tok.get_vocab_size() + 2)
    assert v.absent == [MASK] and v.rows[MASK] == v.rows[UNK]
    assert len(v) == tok.get_vocab_size() + 3 and v.rows[-2:] == [tok.get_vocab_size(), tok.get_vocab_size() + 1]
    assert all(MASK not in v.encode(t) for t in SAMPLES)
    assert v.decode([MASK, len(v) - 1]) == ""


def test_bad_input(tokenizers_, tmp_path):
    make, names = tokenizers_["unigram"]
    tok = make()
    with pytest.raises(XlingError, match="not a Hugging Face tokenizer.json"):
        HfVocab("{not json", [0, 1, 2, 3, 4], 10, ["en"])
    with pytest.raises(XlingError, match="more than the model's 10 rows"):
        build(tok, names, size=10)
    with pytest.raises(XlingError, match="no unknown token"):
        build(tok, ["<pad>", None, "<s>", "</s>", "<mask>"])
    v = build(tok, names)
    v.save(tmp_path)
    path = tmp_path / "hf_tokenizer.json"
    path.write_text(path.read_text().replace("<mask>", "<masq>"))
    with pytest.raises(XlingError, match="checksum mismatch"):
        Vocab.load(tmp_path)
    path.unlink()
    with pytest.raises(XlingError, match="no such file"):
        Vocab.load(tmp_path)
    meta = json.loads((tmp_path / "vocab.json").read_text())
    del meta["hf"]["size"]
    (tmp_path / "vocab.json").write_text(json.dumps(meta))
    with pytest.raises(XlingError, match="missing or invalid 'hf' entry"):
        Vocab.load(tmp_path)
