"""The BPE backend of Vocab (xling/tokenization/bpe.py) and the Moses steps (moses.py).

The segmentation is checked against transformers' XLMTokenizer (an independent implementation of
XLM's BPE) on every word of the fixture Bibles; the whole XLM pipeline (Moses + lowercasing + BPE)
against it in tests/convert/test_xlm.py."""

from __future__ import annotations

import json

import pytest
from helpers import bible_texts, hf_xlm_tokenizer, write_xlm_model

from xling.errors import XlingError
from xling.tokenization.bpe import BpeVocab, parse_codes
from xling.tokenization.normalize import normalize
from xling.tokenization.vocab import SPECIAL_TOKENS, Vocab

STEPS = ["moses_unicode_punct", "moses_punct", "nonprint", "moses_tokenize", "lowercase_accents"]


@pytest.fixture(scope="module")
def xlm(tmp_path_factory):
    """Codes learned on the Bibles and XLM's dictionary of the segmented text (the rarest words cut,
    so that some subwords are unknown); xling's token list: specials, XLM's, then the words."""
    d = tmp_path_factory.mktemp("bpe")
    bible = bible_texts(d / "bible")
    rec = write_xlm_model(d / "xlm", texts=bible, n_merges=300, max_words=250, d_model=16, layers=1)
    codes = rec["codes"].read_text(encoding="utf-8")
    tokens = [*SPECIAL_TOKENS, *rec["words"][4:]]  # <special0..9> then the words
    return {"bible": bible, "rec": rec, "codes": codes, "tokens": tokens, "dir": d}


def _vocab(xlm, steps=(), **kw):
    return BpeVocab(xlm["codes"], xlm["tokens"], ["en", "fr"], {"normalize": list(steps)}, control=15, **kw)


def test_segmentation_matches_xlm_tokenizer_bpe(xlm):
    """Without normalize steps the vocabulary only splits on whitespace and applies the codes:
    the same subwords as transformers' XLMTokenizer's BPE on every Bible word (both cases,
    punctuation, single characters, repeated letters)."""
    vocab = _vocab(xlm)
    ref = hf_xlm_tokenizer(xlm["rec"]["words"], xlm["rec"]["codes"], xlm["rec"]["params"], False, xlm["dir"] / "hf")
    words = sorted({w for lang in ("en", "fr") for line in xlm["bible"][lang] for w in line.split()})
    words += ["a", "aaaa", "ééé", "lll", "eeeee", "thethe"]
    xlm_ids = {w: i for i, w in enumerate(xlm["rec"]["words"])}  # XLM's lookup: unknown -> <unk> (3)
    n_unk = 0
    for w in words:
        ref_tokens = ref._tokenize(w, bypass_tokenizer=True)
        assert vocab.segment(w) == [t[:-4] if t.endswith("</w>") else t + "@@" for t in ref_tokens], w
        ids = vocab.encode(w)
        assert [xlm_ids[xlm["tokens"][i]] for i in ids] == [xlm_ids.get(s, 3) for s in vocab.segment(w)]
        n_unk += ids.count(vocab.unk_id)
    assert n_unk > 0  # the cut dictionary leaves some subwords unknown


def test_save_load_round_trip(xlm, tmp_path):
    vocab = _vocab(xlm, STEPS)
    vocab.save(tmp_path / "v")
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == ["bpe.codes", "bpe.tokens", "vocab.json"]
    back = Vocab.load(tmp_path / "v")
    assert isinstance(back, BpeVocab) and back.to_json() == vocab.to_json()
    meta = json.loads((tmp_path / "v" / "vocab.json").read_text())
    assert meta["backend"] == "bpe" and meta["normalize"] == STEPS and meta["bpe"]["control"] == 15
    texts = xlm["bible"]["fr"][:20]
    assert back.encode_batch(texts, "fr") == vocab.encode_batch(texts, "fr")
    assert (tmp_path / "v" / "bpe.codes").read_text(encoding="utf-8") == xlm["codes"]  # kept as given
    back.save(tmp_path / "w")
    assert all((tmp_path / "v" / n).read_bytes() == (tmp_path / "w" / n).read_bytes()
               for n in ("bpe.codes", "bpe.tokens", "vocab.json"))


def test_files_are_checksummed(xlm, tmp_path):
    """vocab.json holds the sha256 of both files; in a model directory checksums.json covers them too."""
    from conftest import tiny

    vocab = _vocab(xlm)
    vocab.save(tmp_path / "v")
    (tmp_path / "v" / "bpe.tokens").write_text("\n".join(xlm["tokens"][::-1]) + "\n", encoding="utf-8")
    with pytest.raises(XlingError, match="bpe.tokens: checksum mismatch with vocab.json"):
        Vocab.load(tmp_path / "v")
    model = tiny(vocab_size=len(vocab), n_langs=2)
    model.save_pretrained(tmp_path / "m", vocab=vocab)
    sums = json.loads((tmp_path / "m" / "checksums.json").read_text())
    assert {"bpe.codes", "bpe.tokens", "vocab.json"} <= set(sums)
    path = tmp_path / "m" / "bpe.codes"
    path.write_text(path.read_text(encoding="utf-8") + "x y 1\n", encoding="utf-8")
    with pytest.raises(XlingError, match="bpe.codes: (changed since the model was saved|checksum mismatch)"):
        Vocab.load(tmp_path / "m")
    path.unlink()
    with pytest.raises(XlingError, match="bpe.codes"):
        Vocab.load(tmp_path / "m")


def test_control_tokens_are_never_produced(xlm):
    """Text spelling a special or an XLM control token (<special3>, <s>) gets <unk>, not its id."""
    vocab = _vocab(xlm)
    ids = vocab.encode("<special3> <pad> <s> </s> <mask>")
    assert ids and all(i == vocab.unk_id or i >= vocab.control for i in ids)
    assert vocab.piece_to_id("<special3>") == xlm["tokens"].index("<special3>") < vocab.control
    assert vocab._sp.id_to_piece(vocab._sp.piece_to_id("the")) == "the"  # code written for SentencePiece
    assert vocab.piece_to_id("no-such-token") == vocab.unk_id and vocab.get_piece_size() == len(vocab)


def test_decode_joins_subwords(xlm):
    vocab = _vocab(xlm, STEPS)
    for text in xlm["bible"]["en"][:10]:
        ids = vocab.encode(text, "en")
        known = [s for s, i in zip(vocab.segment(text, "en"), ids) if i != vocab.unk_id]  # <unk> is skipped
        assert vocab.decode(ids) == " ".join(known).replace("@@ ", "")
    assert vocab.decode([vocab.bos_id, 5, *vocab.encode("the", "en"), vocab.eos_id]) == "the"  # control ids skipped


def test_moses_steps_use_the_language():
    from sacremoses import MosesTokenizer

    text = "L'homme dit: « Bonjour » à 3,5 km."
    for lang in ("fr", "en"):
        assert normalize(["moses_tokenize"], text, lang) == MosesTokenizer(lang).tokenize(
            text, return_str=True, escape=False)
    assert normalize(["moses_tokenize"], text, "fr") != normalize(["moses_tokenize"], text, "en")
    assert normalize(["moses_tokenize"], text, None) == normalize(["moses_tokenize"], text, "en")
    assert normalize(["lowercase_accents"], "Éternel ÇA", None) == "eternel ca"


@pytest.mark.parametrize("tokens,control,match", [
    (["<unk>", "<pad>", "<s>", "</s>", "<mask>", "a"], 5, "start with"),
    ([*SPECIAL_TOKENS, "a", "a"], 5, "listed twice"),
    ([*SPECIAL_TOKENS, "a b"], 5, "whitespace"),
    ([*SPECIAL_TOKENS, "a"], 7, "control"),
])
def test_bad_token_lists(tokens, control, match):
    with pytest.raises(XlingError, match=match):
        BpeVocab("a b 3\n", tokens, ["en"], control=control)


def test_codes_parsing():
    assert parse_codes("t h 100\nth e</w> 80\n", "c") == [("t", "h"), ("th", "e</w>")]  # fastBPE
    assert parse_codes("#version: 0.2\nt h\n\nth e</w>\n", "c") == [("t", "h"), ("th", "e</w>")]  # subword-nmt
    with pytest.raises(XlingError, match="c: line 2 "):
        parse_codes("t h 1\nt h e 1 2\n", "c")
    with pytest.raises(XlingError, match="no BPE merges"):
        parse_codes("\n", "c")


def test_unknown_backend(tmp_path, xlm):
    _vocab(xlm).save(tmp_path)
    meta = json.loads((tmp_path / "vocab.json").read_text())
    (tmp_path / "vocab.json").write_text(json.dumps({**meta, "backend": "wordpiece"}))
    with pytest.raises(XlingError, match="unknown vocabulary backend 'wordpiece'"):
        Vocab.load(tmp_path)
