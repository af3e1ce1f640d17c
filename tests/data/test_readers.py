"""Strict readers (text, parallel, TSV, JSONL, HF datasets), corpus layout, ``xling corpus import``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from xling.cli import main
from xling.data.readers import (
    load_corpus_split,
    load_parallel_split,
    read_hf,
    read_jsonl,
    read_parallel,
    read_text,
    read_tsv,
)
from xling.errors import XlingError


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


# ----------------------------------------------------------------------------- readers


def test_read_text_strict(tmp_path):
    assert read_text(write(tmp_path / "ok", "Hallo Welt\nÜber 2\n")) == ["Hallo Welt", "Über 2"]
    with pytest.raises(XlingError, match=r"bad:2: invalid UTF-8"):
        read_text(write(tmp_path / "bad", b"fine\nbro\xffken\n"))
    with pytest.raises(XlingError, match=r"gap:3: empty line"):
        read_text(write(tmp_path / "gap", "a\nb\n\nc\n"))


def test_read_parallel(tmp_path):
    a, b = write(tmp_path / "a", "1\n2\n3\n"), write(tmp_path / "b", "x\ny\n")
    with pytest.raises(XlingError) as e:
        read_parallel(a, b)
    assert str(e.value) == f"parallel files differ in length: {a} has 3 lines, {b} has 2"
    assert read_parallel(a, write(tmp_path / "c", "x\ny\nz\n")) == [("1", "x"), ("2", "y"), ("3", "z")]


def test_read_tsv(tmp_path):
    path = write(tmp_path / "t.tsv", "id\tde\ten\n1\tHund\tdog\n2\tKatze\tcat\n")
    assert read_tsv(path) == [{"id": "1", "de": "Hund", "en": "dog"}, {"id": "2", "de": "Katze", "en": "cat"}]
    assert read_tsv(path, ["en", "de"]) == [{"en": "dog", "de": "Hund"}, {"en": "cat", "de": "Katze"}]
    raw = write(tmp_path / "raw.tsv", "Hund\tdog\n")
    assert read_tsv(raw, ["de", "en"], has_header=False) == [{"de": "Hund", "en": "dog"}]
    with pytest.raises(XlingError, match=r"bad.tsv:3: expected 3 tab-separated fields, got 2"):
        read_tsv(write(tmp_path / "bad.tsv", "id\tde\ten\n1\tHund\tdog\n2\tKatze\n"))
    with pytest.raises(XlingError, match=r"unknown column in .*'fr'"):
        read_tsv(path, ["fr"])
    with pytest.raises(XlingError, match=r"e.tsv:2: field 'en' is empty"):
        read_tsv(write(tmp_path / "e.tsv", "de\ten\nHund\t \n"), ["en"])
    with pytest.raises(XlingError, match="columns must be given"):
        read_tsv(raw, None, has_header=False)


def test_read_jsonl(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"text": "a", "n": 1}\n{"text": "b", "n": 2}\n')
    assert read_jsonl(path, ["text"]) == [{"text": "a"}, {"text": "b"}]
    assert read_jsonl(path) == [{"text": "a", "n": 1}, {"text": "b", "n": 2}]
    with pytest.raises(XlingError, match=r"j1:2: invalid JSON"):
        read_jsonl(write(tmp_path / "j1", '{"text": "a"}\n{"text": \n'), ["text"])
    with pytest.raises(XlingError, match=r"j2:2: missing field 'text' \(has: txt\)"):
        read_jsonl(write(tmp_path / "j2", '{"text": "a"}\n{"txt": "b"}\n'), ["text"])
    with pytest.raises(XlingError, match=r"j3:1: expected a JSON object, got list"):
        read_jsonl(write(tmp_path / "j3", '["a"]\n'), ["text"])


def test_read_hf_local_jsonl_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rows = [{"de": "Hund", "en": "dog", "n": 1}, {"de": "Katze", "en": "cat", "n": 2}]
    path = write(tmp_path / "d.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    assert read_hf(str(path), "train", ["en", "de"]) == [{"en": r["en"], "de": r["de"]} for r in rows]
    with pytest.raises(XlingError, match=r"unknown field in .*'fr'"):
        read_hf(str(path), "train", ["fr"])
    with pytest.raises(XlingError, match=r"no/such/dataset_dir: cannot load split 'train'"):
        read_hf(str(tmp_path / "no/such/dataset_dir"), "train", ["text"])


# ----------------------------------------------------------------------------- import + layout


def run_cli(*args: str) -> int:
    return main(["corpus", "import", *args])


def test_import_pair_and_mono_then_load(tmp_path):
    out = tmp_path / "corp"
    de, en = write(tmp_path / "x.de", "Hund\nKatze\n"), write(tmp_path / "x.en", "dog\ncat\n")
    assert run_cli("--lang", "en-de", "--train", str(en), str(de), "--format", "text", "--out", str(out)) == 0
    # files use the alphabetical pair name; loading in either order returns the asked order
    assert (out / "train.de-en.de").read_text() == "Hund\nKatze\n"
    assert load_parallel_split(out, "train", "en", "de") == (["dog", "cat"], ["Hund", "Katze"])
    assert load_parallel_split(out, "train", "de", "en") == (["Hund", "Katze"], ["dog", "cat"])
    mono = write(tmp_path / "m.jsonl", '{"body": "Guten Tag"}\n{"body": "Danke"}\n')
    valid = write(tmp_path / "v.jsonl", '{"body": "Bitte"}\n')
    assert run_cli("--lang", "de", "--train", str(mono), "--valid", str(valid), "--format", "jsonl",
                   "--field", "body", "--out", str(out)) == 0  # fmt: skip
    assert load_corpus_split(out, "train", "de") == ["Guten Tag", "Danke"]
    assert load_corpus_split(out, "valid", "de") == ["Bitte"]
    assert (out / "train.de.ids").read_text() == "1\n2\n"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["languages"] == ["de"] and manifest["pairs"] == ["de-en"]  # merged, not replaced
    assert manifest["counts"]["train.de-en.en"] == 2 and manifest["counts"]["valid.de"] == 1
    with pytest.raises(XlingError, match=r"no test data for 'de' \(test.de\) in this corpus \(languages: de; pairs: de-en\)"):
        load_corpus_split(out, "test", "de")
    with pytest.raises(XlingError, match=r"no train data for pair en-fr"):
        load_parallel_split(out, "train", "fr", "en")


def test_import_tsv_pair_and_hf(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    tsv = write(tmp_path / "p.tsv", "src\ttgt\nHund\tdog\nKatze\tcat\n")
    out = tmp_path / "c"
    assert run_cli("--lang", "de-en", "--train", str(tsv), "--format", "tsv", "--field", "src,tgt", "--out", str(out)) == 0
    assert load_parallel_split(out, "train", "en", "de") == (["dog", "cat"], ["Hund", "Katze"])
    data = write(tmp_path / "h.jsonl", '{"text": "bonjour"}\n{"text": "merci"}\n')
    assert run_cli("--lang", "fr", "--train", str(data), "--format", "hf", "--out", str(out)) == 0
    assert load_corpus_split(out, "train", "fr") == ["bonjour", "merci"]


@pytest.mark.parametrize(
    "files, match",
    [
        ({"a.de": b"eins\nzwei\n", "a.en": b"one\n"}, "parallel files differ in length: "),
        ({"a.de": b"eins\nzw\xe4i\n", "a.en": b"one\ntwo\n"}, "a.de:2: invalid UTF-8"),
        ({"a.de": b"eins\n\nzwei\n", "a.en": b"one\ntwo\nthree\n"}, "a.de:2: empty line"),
    ],
)
def test_import_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, files, match):
    for name, data in files.items():
        write(tmp_path / name, data)
    out = tmp_path / "out"
    rc = run_cli("--lang", "de-en", "--train", str(tmp_path / "a.de"), str(tmp_path / "a.en"),
                 "--format", "text", "--out", str(out))  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("xling: error: ") and match in err and err.count("\n") == 1
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == sorted(files)


def test_import_errors_keep_existing_corpus(tmp_path, capsys):
    out = tmp_path / "c"
    good = write(tmp_path / "g", "hello\n")
    assert run_cli("--lang", "en", "--train", str(good), "--format", "text", "--out", str(out)) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = write(tmp_path / "b.jsonl", '{"text": "ok"}\n{"text": 3}\n')
    assert run_cli("--lang", "en", "--train", str(bad), "--format", "jsonl", "--out", str(out)) == 2
    assert "b.jsonl row 2 field 'text': expected text, got int" in capsys.readouterr().err
    assert run_cli("--lang", "en", "--train", str(good), "--format", "csv", "--out", str(out)) == 2
    assert "unknown format 'csv'" in capsys.readouterr().err
    assert run_cli("--lang", "en", "--train", str(good), str(good), "--format", "text", "--out", str(out)) == 2
    assert run_cli("--lang", "de-de", "--train", str(good), str(good), "--format", "text", "--out", str(out)) == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    stranger = tmp_path / "not_a_corpus"
    stranger.mkdir()
    write(stranger / "notes.txt", "mine\n")
    assert run_cli("--lang", "en", "--train", str(good), "--format", "text", "--out", str(stranger)) == 2
    assert "is not an xling corpus" in capsys.readouterr().err
    assert os.listdir(stranger) == ["notes.txt"]
