"""xling/convert/fairseq_dict.py: dict.txt read and written exactly as fairseq's Dictionary does."""

from __future__ import annotations

from pathlib import Path

import pytest

from xling.convert.fairseq_dict import BOS, EOS, MADEUP, NSPECIAL, PAD, SPECIALS, UNK, FairseqDict
from xling.errors import XlingError

# What fairseq-preprocess writes for a SentencePiece corpus (Dictionary.finalize then save): counts in
# descending order, ties by token, no specials, madeupword padding (count 0) to a multiple of 8.
FAIRSEQ_WRITTEN = """\
▁the 1021
, 901
▁de 455
s 455
▁ 12
madeupword0000 0
madeupword0001 0
madeupword0002 0
madeupword0003 0
madeupword0004 0
madeupword0005 0
madeupword0006 0
"""


def _write(tmp_path: Path, text: str, name: str = "dict.txt") -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode("utf-8"))
    return p


def _error(path: Path) -> str:
    with pytest.raises(XlingError) as e:
        FairseqDict.load(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(path)), msg
    return msg


def test_fairseq_written_dictionary_loads_and_saves_byte_identical(tmp_path):
    path = _write(tmp_path, FAIRSEQ_WRITTEN)
    d = FairseqDict.load(path)
    assert len(d) == 16 and len(d) % 8 == 0
    assert d.symbols[:NSPECIAL] == list(SPECIALS) and d.symbols[4:6] == ["▁the", ","]
    assert d.index("▁the") == 4 and d.index("▁") == 8 and d.index("madeupword0006") == 15
    assert d.counts[4] == 1021 and d.counts[15] == 0
    d.save(tmp_path / "out.txt")
    assert (tmp_path / "out.txt").read_bytes() == path.read_bytes()


def test_specials_are_added_not_listed(tmp_path):
    d = FairseqDict.load(_write(tmp_path, "hello 3\n"))
    assert (d.index("<s>"), d.index("<pad>"), d.index("</s>"), d.index("<unk>")) == (BOS, PAD, EOS, UNK) == (0, 1, 2, 3)
    assert d.index("never seen") == UNK and "never seen" not in d and "hello" in d
    assert d.lines() == ["hello 3"]


def test_split_on_the_last_space(tmp_path):
    d = FairseqDict.load(_write(tmp_path, "a b 3\n  2\nx 7   \n"))
    assert d.symbols[4:] == ["a b", " ", "x"] and d.counts[4:] == [3, 2, 7]  # the line is right-stripped first
    d.save(tmp_path / "out.txt")
    assert FairseqDict.load(tmp_path / "out.txt") == d


def test_crlf_reads_as_lf(tmp_path):
    lf = FairseqDict.load(_write(tmp_path, FAIRSEQ_WRITTEN))
    assert FairseqDict.load(_write(tmp_path, FAIRSEQ_WRITTEN.replace("\n", "\r\n"), "crlf.txt")) == lf


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 12, 13])
def test_madeupword_padding_to_a_multiple_of_8(tmp_path, n):
    tokens = [f"t{i}" for i in range(n)]
    d = FairseqDict.from_tokens(tokens)
    pad = (-(n + NSPECIAL)) % 8
    assert len(d) == n + NSPECIAL + pad and len(d) % 8 == 0
    assert d.symbols[NSPECIAL + n:] == [MADEUP.format(i) for i in range(pad)] and d.counts[NSPECIAL + n:] == [0] * pad
    assert d.symbols[NSPECIAL:NSPECIAL + n] == tokens and d.counts[NSPECIAL:NSPECIAL + n] == [1] * n
    assert FairseqDict.from_tokens(tokens, padding_factor=1).symbols == list(SPECIALS) + tokens


def test_padding_skips_names_already_present():
    d = FairseqDict.from_tokens(["madeupword0000"], padding_factor=1)
    d.pad_to_multiple(8)  # as fairseq: madeupword0000 exists, so 0001.. are added
    assert len(d) == 8 and d.symbols[5:] == ["madeupword0001", "madeupword0002", "madeupword0003"]


def test_round_trip(tmp_path):
    d = FairseqDict.from_tokens(["▁hallo", "▁Welt", "!", "a b", "[de_DE]"], counts=[9, 8, 7, 6, 5])
    d.save(tmp_path / "dict.de.txt")
    back = FairseqDict.load(tmp_path / "dict.de.txt")
    assert back == d and [back.index(s) for s in d.symbols[4:]] == list(range(4, len(d)))
    assert (tmp_path / "dict.de.txt").read_text(encoding="utf-8").splitlines()[:2] == ["▁hallo 9", "▁Welt 8"]


def test_tasks_append_symbols_after_loading(tmp_path):
    d = FairseqDict.load(_write(tmp_path, FAIRSEQ_WRITTEN))
    assert d.add_symbol("[en_XX]") == 16 and d.add_symbol("<mask>") == 17  # mBART: language tags, then <mask>
    assert d.add_symbol("▁the", 4) == 4 and d.counts[4] == 1025  # a known token: its count grows


@pytest.mark.parametrize("text,line", [("hello\n", 1), ("a 1\nb two\n", 2), ("a 1\n\nb 2\n", 2), ("a 1\n   \n", 2),
                                        ("a 1.5\n", 1), ("a 1 #fairseq:overwrite\nb #fairseq:overwrite\n", 2),
                                        ("a\r1 2\n", 1)])
def test_malformed_line_names_file_and_line(tmp_path, text, line):
    path = _write(tmp_path, text)
    msg = _error(path)
    assert msg.startswith(f"{path}:{line}: malformed dictionary line"), msg


def test_duplicate_tokens(tmp_path):
    assert "already on line 1" in _error(_write(tmp_path, "a 1\nb 1\na 2\n"))
    assert "special symbol" in _error(_write(tmp_path, "<unk> 5\n", "special.txt"))


def test_overwrite_flag_appends_a_new_index_and_round_trips(tmp_path):
    """CamemBERT-style files redefine specials: the token gets a new (last) index, the old row stays."""
    d = FairseqDict.load(_write(tmp_path, "<unk> 1 #fairseq:overwrite\nhi 4\nhi 6 #fairseq:overwrite\n"))
    assert d.symbols == [*SPECIALS, "<unk>", "hi", "hi"] and d.counts[4:] == [1, 4, 6]
    assert d.index("<unk>") == 4 and d.index("hi") == 6 and d.index("unseen") == UNK
    assert d.lines() == ["<unk> 1 #fairseq:overwrite", "hi 4", "hi 6 #fairseq:overwrite"]
    d.save(tmp_path / "out.txt")
    assert FairseqDict.load(tmp_path / "out.txt") == d


def test_empty_missing_directory_and_bad_utf8(tmp_path):
    assert "empty dictionary" in _error(_write(tmp_path, ""))
    assert "no such file" in _error(tmp_path / "nope.txt")
    (tmp_path / "d").mkdir()
    assert "is a directory" in _error(tmp_path / "d")
    path = tmp_path / "latin1.txt"
    path.write_bytes("a 1\ncaf\xe9 2\n".encode("latin-1"))
    assert _error(path).startswith(f"{path}:2: invalid UTF-8")


def test_tokens_that_cannot_be_written_are_refused(tmp_path):
    with pytest.raises(XlingError, match="repeated"):
        FairseqDict.from_tokens(["a", "a"])
    with pytest.raises(XlingError, match="special symbol"):
        FairseqDict.from_tokens(["</s>"])
    with pytest.raises(XlingError, match="line break"):
        FairseqDict.from_tokens(["a\nb"])
    d = FairseqDict()
    d.add_symbol("x\ry")
    with pytest.raises(XlingError, match="line break"):
        d.save(tmp_path / "bad.txt")
    assert not (tmp_path / "bad.txt").exists()
