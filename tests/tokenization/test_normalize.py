"""Named normalisers: the registry, and Vocab.encode applying vocab.json's steps in order."""

import pytest

from xling.errors import XlingError
from xling.tokenization.normalize import check_normalizers, known_normalizers, normalize, register_normalizer
from xling.tokenization.vocab import Vocab


def test_builtin_steps():
    assert {"lowercase", "nonprint"} <= set(known_normalizers())
    assert normalize(["nonprint", "lowercase"], "A\u200bB\tC\x00d") == "a b c d"
    assert normalize([], "Keep") == "Keep"


def test_unknown_and_malformed_names_are_one_line_errors():
    with pytest.raises(XlingError, match="lowercse.*lowercase"):
        check_normalizers(["lowercse"], "vocab.json")
    with pytest.raises(XlingError, match="list of step names"):
        check_normalizers("lowercase", "vocab.json")
    with pytest.raises(ValueError, match="twice"):
        register_normalizer("lowercase", lambda text, lang: text)


def test_vocab_applies_its_steps(vocabs, tmp_path):
    plain = vocabs[0]
    lowered = Vocab(plain._proto, plain.languages, {"normalize": ["lowercase"]})
    text = "Der HUND und the CAT"
    assert lowered.encode(text) == plain.encode(text.lower()) != plain.encode(text)
    assert lowered.encode_batch([text, "X"], lang="de") == [plain.encode(text.lower()), plain.encode("x")]
    lowered.save(tmp_path / "v")
    again = Vocab.load(tmp_path / "v")
    assert again.meta["normalize"] == ["lowercase"] and again.encode(text) == lowered.encode(text)
    with pytest.raises(XlingError, match="normalize step"):
        Vocab(plain._proto, plain.languages, {"normalize": ["nope"]})
