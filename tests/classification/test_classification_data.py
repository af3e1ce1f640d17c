"""Readers of classification data (XNLI, MultiNLI, HF xnli, Bible genres, TSV) on fixtures in
the published formats, their user errors, and the report's arithmetic."""

import pytest

from conftest import FIXTURES as FIX
from xling.classification.data import (
    DataSpec,
    Example,
    check_labels,
    detect_format,
    load_examples,
    read_multinli,
    read_xnli,
)
from xling.classification.report import format_table, transfer_summary
from xling.errors import XlingError

XNLI = FIX / "xnli.test.tsv"


def test_xnli_reader_on_the_fixture():
    rows = read_xnli(XNLI)
    assert len(rows) == 10
    assert rows[0] == Example("The museum opens at nine every morning.", "entailment", "en",
                              "The museum opens in the morning.")
    assert rows[-1] == Example("火车又晚点了。", "neutral", "zh", "火车司机生病了。")
    by_lang = load_examples(DataSpec(format="xnli", path=str(XNLI), split="test"))
    assert list(by_lang) == ["de", "en", "fr", "zh"]
    assert {k: len(v) for k, v in by_lang.items()} == {"de": 3, "en": 3, "fr": 2, "zh": 2}
    assert [x.label for x in by_lang["de"]] == ["entailment", "contradiction", "neutral"]
    assert all(x.text_b for xs in by_lang.values() for x in xs)  # every example is a pair
    assert by_lang["fr"][1].text == "Elle n'a jamais appris à nager."  # apostrophes and accents untouched
    picked = load_examples(DataSpec(format="xnli", path=str(XNLI), langs=["zh", "en"], limit=1))
    assert list(picked) == ["zh", "en"] and [len(v) for v in picked.values()] == [1, 1]


def test_multinli_txt_and_jsonl_agree_and_drop_unlabelled_pairs():
    txt = read_multinli(FIX / "multinli_1.0_train.txt")
    jsonl = read_multinli(FIX / "multinli_1.0_train.jsonl")
    assert txt == jsonl
    assert [x.label for x in txt] == ["neutral", "entailment", "contradiction"]  # the '-' pair is left out
    assert txt[1] == Example("All the windows were open.", "entailment", "en", "Some windows were open.")


def test_detect_format(tmp_path):
    assert detect_format(str(XNLI)) == "xnli"
    assert detect_format(str(FIX / "multinli_1.0_train.txt")) == "multinli"
    assert detect_format(str(FIX / "multinli_1.0_train.jsonl")) == "multinli"
    assert detect_format(str(tmp_path)) == "bible"
    assert detect_format("hf:facebook/xnli") == "hf-xnli"
    (tmp_path / "mine.tsv").write_text("text\tlabel\nhello\tx\n")
    assert detect_format(str(tmp_path / "mine.tsv")) == "tsv"
    with pytest.raises(XlingError, match="no such file"):
        detect_format(str(tmp_path / "missing.tsv"))


def _bad_xnli(tmp_path, mutate):
    lines = XNLI.read_text(encoding="utf-8").splitlines()
    mutate(lines)
    p = tmp_path / "xnli.bad.tsv"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def test_bad_xnli_rows_name_the_row(tmp_path):
    p = _bad_xnli(tmp_path, lambda ls: ls.insert(3, ""))  # an empty line 4
    with pytest.raises(XlingError, match=r"xnli\.bad\.tsv:4: empty line"):
        read_xnli(p)

    def drop_field(ls):
        ls[5] = "\t".join(ls[5].split("\t")[:-1])  # line 6 lacks a column

    with pytest.raises(XlingError, match=r":6: expected 19 tab-separated fields, got 18"):
        read_xnli(_bad_xnli(tmp_path, drop_field))

    def empty_hypothesis(ls):
        f = ls[2].split("\t")
        f[7] = ""
        ls[2] = "\t".join(f)

    with pytest.raises(XlingError, match=r":3: field 'sentence2' is empty"):
        read_xnli(_bad_xnli(tmp_path, empty_hypothesis))
    (tmp_path / "noheader.tsv").write_text("en\tneutral\ta\tb\n", encoding="utf-8")
    with pytest.raises(XlingError, match="unknown column"):
        read_xnli(tmp_path / "noheader.tsv")


def test_unknown_language_and_format():
    with pytest.raises(XlingError, match=r"no examples in language 'xx' \(the data has: de, en, fr, zh\)"):
        load_examples(DataSpec(format="xnli", path=str(XNLI), langs=["en", "xx"]))
    with pytest.raises(XlingError, match="unknown data.format 'xnly'"):
        load_examples(DataSpec(format="xnly", path=str(XNLI)))


def test_bible_genre_reader(tmp_path):
    for lang, verses in {"en": ["In the beginning.", "Jesus wept."], "de": ["Im Anfang.", "Jesus weinte."]}.items():
        (tmp_path / f"test.{lang}").write_text("\n".join(verses) + "\n", encoding="utf-8")
        (tmp_path / f"test.{lang}.genre").write_text("law\ngospels\n", encoding="utf-8")
    by_lang = load_examples(DataSpec(format="bible", path=str(tmp_path), split="test", langs=["en", "de"]))
    assert by_lang["de"] == [Example("Im Anfang.", "law", "de"), Example("Jesus weinte.", "gospels", "de")]
    (tmp_path / "test.de.genre").write_text("law\n", encoding="utf-8")
    with pytest.raises(XlingError, match="1 labels for 2 lines"):
        load_examples(DataSpec(format="bible", path=str(tmp_path), split="test", langs=["de"]))
    with pytest.raises(XlingError, match="no test data for 'fr'"):
        load_examples(DataSpec(format="bible", path=str(tmp_path), split="test", langs=["fr"]))


def test_generic_tsv_needs_a_language(tmp_path):
    p = tmp_path / "mine.tsv"
    p.write_text("text\tlabel\nhello\tgreeting\nbye\tfarewell\n", encoding="utf-8")
    assert load_examples(DataSpec(format="tsv", path=str(p), langs=["en"]))["en"][1] == Example("bye", "farewell", "en")
    with pytest.raises(XlingError, match=r"mine\.tsv:2: no 'lang' field"):
        load_examples(DataSpec(format="tsv", path=str(p)))


def test_hf_xnli_maps_class_ids_to_names(monkeypatch):
    import xling.data.readers as readers

    calls = []

    def fake_read_hf(name, split, fields, config=None):
        calls.append((name, split, config))
        return [{"premise": f"p-{config}", "hypothesis": "h", "label": 2}, {"premise": "q", "hypothesis": "h", "label": 0}]

    monkeypatch.setattr(readers, "read_hf", fake_read_hf)
    by_lang = load_examples(DataSpec(format="hf-xnli", split="valid", langs=["de", "sw"]))
    assert calls == [("facebook/xnli", "validation", "de"), ("facebook/xnli", "validation", "sw")]
    assert by_lang["sw"][0] == Example("p-sw", "contradiction", "sw", "h")
    assert by_lang["de"][1].label == "entailment"


def test_labels_training_never_saw_are_named():
    data = {"de": [Example("a", "law", "de"), Example("b", "poetry", "de"), Example("c", "myth", "de")]}
    with pytest.raises(XlingError, match=r"labels never seen in training: 'myth', 'poetry' \(the model knows: law, wisdom\)"):
        check_labels(data, ["law", "wisdom"], "test.tsv")
    check_labels(data, ["law", "myth", "poetry"], "test.tsv")


def test_transfer_summary_by_hand():
    acc = {"en": 0.80, "de": 0.70, "fr": 0.75, "zh": 0.60}
    s = transfer_summary(acc, "en")
    assert s["average"] == pytest.approx((0.80 + 0.70 + 0.75 + 0.60) / 4)
    assert s["average_others"] == pytest.approx((0.70 + 0.75 + 0.60) / 3)
    assert s["transfer_gap"] == pytest.approx(0.80 - (0.70 + 0.75 + 0.60) / 3)
    assert transfer_summary({"de": 0.5, "fr": 0.7}, "en")["transfer_gap"] is None  # no source language
    assert transfer_summary({"en": 0.9}, "en")["transfer_gap"] is None  # nothing to transfer to
    result = {"source_lang": "en", "signature": "xling-classification|v:0", **s,
              "languages": {k: {"accuracy": v, "majority": 0.4, "correct": int(100 * v), "n": 100} for k, v in acc.items()}}
    table = format_table(result)
    assert "| en (source) | 80.0 | 40.0 | 80 / 100 |" in table
    assert "| transfer gap (en − others) | +11.7 |" in table


def test_limit_spreads_over_the_data():
    from xling.classification.data import spread

    assert spread(list(range(10)), 3) == [0, 3, 6]
    assert spread(list(range(3)), 5) == [0, 1, 2] and spread(list(range(4)), 0) == [0, 1, 2, 3]
