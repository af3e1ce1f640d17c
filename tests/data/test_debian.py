"""Debian descriptions corpus: parsing, decompression, dedup, filters, alignment, split, errors, CLI.

The fixture is written by the tests themselves (``write_lists`` in tests/helpers.py): a few
entries in the exact published format (``Package`` / ``Description-md5`` /
``Description-<lang>``, indented long description, `` .`` paragraph breaks) in en, de, fr
and zh, with duplicates, a conflicting duplicate, filtered entries and 300 generated
descriptions so that every split is populated. English is stored the way apt
stores it (lz4) when the lz4 tool and apt-helper exist, and plain otherwise;
the other languages are gzip, xz and uncompressed (zh with apt's quoted name).
"""

from __future__ import annotations

import gzip
import json
import lzma
import shutil
from pathlib import Path

import pytest

from helpers import (
    A,
    A_EN,
    B,
    B_EN,
    DE_ONLY,
    EMPTY,
    HAVE_LZ4,
    LONG,
    PREFIX,
    SHORT,
    _de_text,
    _en_text,
    entry,
    md5,
    write_lists,
)
from xling.cli import main
from xling.data.debian import (
    build_debian_corpus,
    find_index_files,
    join_description,
    parse_index,
    read_index,
    split_of_md5,
)
from xling.errors import XlingError

SPLITS = ("train", "valid", "test")


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("debian")
    lists = write_lists(root)
    out = root / "corpus"
    manifest = build_debian_corpus("en,de,fr,zh", out, lists_dir=lists, max_words=50, progress=False)
    return out, manifest, lists


def by_id(out: Path, name: str, suffix: str = "") -> dict[str, str]:
    """``{id: line}`` over all splits of ``{split}.{name}{suffix}`` and its ids."""
    result = {}
    for split in SPLITS:
        base = out / f"{split}.{name}"
        ids_file = base.with_name(base.name + ".ids")
        result.update(zip(lines(ids_file), lines(base.with_name(base.name + suffix))))
    return result


# ----------------------------------------------------------------------------- parsing


def test_parse_entry_paragraphs_and_lists():
    text = entry("0ad-data", A, "en", *A_EN.split("\n", 1)) + entry("apt-tools", B, "en", *B_EN.split("\n", 1))
    a, b = parse_index(text, "x")
    assert (a.package, a.md5, a.synopsis) == ("0ad-data", A, "Real-time strategy game of ancient warfare")
    assert a.description == (
        "0 A.D. is a free, open-source, cross-platform real-time strategy game. "
        "This package contains the data files. * maps * sounds"
    )
    assert b.description == "These tools help to manage Debian packages and their dependencies."


def test_nbsp_line_stays_inside_its_entry():
    # bookworm's French index has a line " \xa0" inside a description: not a paragraph separator
    text = f"Package: p\nDescription-md5: {A}\nDescription-fr: syn\n Premier.\n \xa0\n Second.\n\n"
    (e,) = parse_index(text)
    assert e.description == "Premier. Second."


def test_join_description_hand_worked():
    assert join_description([" one  two", " .", "  three\t four", " ."]) == "one two three four"
    assert join_description([]) == ""


@pytest.mark.parametrize(
    "text, where",
    [
        (" orphan continuation\n", "idx:1: continuation line"),
        (f"Package: p\nDescription-md5: {A}\nno colon here\n", "idx:3: expected 'Field: value'"),
        ("Package: p\nDescription-md5: nothex\nDescription-en: s\n", "idx:1: malformed entry"),
        (f"\nPackage: p\nDescription-md5: {A}\n\n", "idx:2: malformed entry"),  # no Description-<lang>
    ],
)
def test_malformed_index_is_one_line_error(text, where):
    with pytest.raises(XlingError, match=where):
        parse_index(text, "idx")


# ----------------------------------------------------------------------------- files


def test_every_compression_reads_the_same_text(tmp_path):
    text = _de_text()
    (tmp_path / "plain").write_text(text, encoding="utf-8")
    (tmp_path / "t.gz").write_bytes(gzip.compress(text.encode()))
    (tmp_path / "t.xz").write_bytes(lzma.compress(text.encode()))
    for name in ("plain", "t.gz", "t.xz"):
        assert read_index(tmp_path / name) == text
    (tmp_path / "bad.gz").write_bytes(b"not gzip at all")
    with pytest.raises(XlingError, match="bad.gz: cannot decompress"):
        read_index(tmp_path / "bad.gz")
    (tmp_path / "latin1").write_bytes("Größe".encode("latin-1"))
    with pytest.raises(XlingError, match="latin1: invalid UTF-8"):
        read_index(tmp_path / "latin1")


@pytest.mark.skipif(not HAVE_LZ4, reason="needs the lz4 tool and apt-helper")
def test_lz4_index_as_apt_stores_it(tmp_path):
    lists = write_lists(tmp_path, en_lz4=True)
    (en,) = [p for p in find_index_files(lists, "en") if p.suffix == ".lz4"]
    assert en.read_bytes()[:4] == b"\x04\x22\x4d\x18"  # the LZ4 frame magic: really compressed
    assert read_index(en) == _en_text()
    (tmp_path / "bad.lz4").write_bytes(b"\x04\x22\x4d\x18garbage")
    with pytest.raises(XlingError, match="bad.lz4: cannot decompress"):
        read_index(tmp_path / "bad.lz4")


def test_find_index_files_by_language(tmp_path):
    lists = write_lists(tmp_path, en_lz4=False)
    assert len(find_index_files(lists, "en")) == 2  # two suites
    assert [p.name for p in find_index_files(lists, "zh")] == [f"{PREFIX}zh%5fCN"]
    assert find_index_files(lists, "it") == []


# ----------------------------------------------------------------------------- corpus


def test_dedup_and_filters(corpus):
    out, manifest, _ = corpus
    en = by_id(out, "en")
    assert list(by_id(out, "en").keys()).count(A) == 1
    assert A in en and B in en and not {SHORT, EMPTY, LONG} & set(en)
    assert len(en) == 302
    st = manifest["stats"]["en"]
    assert st["entries"] == 307 and st["duplicates"] == 2 and st["conflicts"] == 0
    assert (st["empty"], st["short"], st["long"], st["kept"]) == (1, 1, 1, 302)
    assert manifest["stats"]["de"]["duplicates"] == 1 and manifest["stats"]["de"]["kept"] == 153
    assert manifest["filters"]["max_words"] == 50


def test_summarization_files_are_aligned(corpus):
    out, _, _ = corpus
    for lang in ("en", "de"):
        text, desc, syn = by_id(out, lang), by_id(out, lang, ".desc"), by_id(out, lang, ".syn")
        assert text == desc and text.keys() == syn.keys()
    assert by_id(out, "de")[A] == "0 A.D. ist ein freies, quelloffenes Echtzeit-Strategiespiel. Dieses Paket enthält die Datendateien."
    assert by_id(out, "de", ".syn")[A] == "Echtzeit-Strategiespiel über antike Kriegsführung"
    assert by_id(out, "zh", ".syn") == {A: "即时战略游戏"}


def test_pairs_aligned_through_md5(corpus):
    out, manifest, _ = corpus
    assert manifest["pairs"] == ["de-en", "en-fr", "en-zh"]
    en, en_syn = by_id(out, "en"), by_id(out, "en", ".syn")
    de, de_syn = by_id(out, "de"), by_id(out, "de", ".syn")
    pair_de, pair_en = by_id(out, "de-en", ".de"), by_id(out, "de-en", ".en")
    shared = set(en) & set(de)
    assert DE_ONLY in de and DE_ONLY not in shared and len(shared) == 152
    assert set(pair_de) == {f"{m}.{k}" for m in shared for k in ("desc", "syn")}
    for m in shared:
        assert (pair_de[f"{m}.desc"], pair_en[f"{m}.desc"]) == (de[m], en[m])
        assert (pair_de[f"{m}.syn"], pair_en[f"{m}.syn"]) == (de_syn[m], en_syn[m])
    assert manifest["aligned_descriptions"] == {"de-en": 152, "en-fr": 1, "en-zh": 1}
    assert by_id(out, "en-fr", ".fr")[f"{A}.syn"] == "Jeu de stratégie en temps réel"
    for split in SPLITS:  # a description line is directly followed by its synopsis
        ids = lines(out / f"{split}.de-en.ids")
        assert [i.rsplit(".", 1)[1] for i in ids] == ["desc", "syn"] * (len(ids) // 2)


def test_splits_by_md5_hash_without_leaks(corpus):
    out, _, _ = corpus
    seen: dict[str, str] = {}
    for split in SPLITS:
        for p in out.glob(f"{split}.*.ids"):
            for i in lines(p):
                m = i.split(".")[0]
                assert seen.setdefault(m, split) == split, f"{m} in {seen[m]} and {split}"
                assert split_of_md5(m) == split
    counts = {s: sum(v == s for v in seen.values()) for s in SPLITS}
    assert all(counts.values()), counts
    r = [split_of_md5(md5(str(i))) for i in range(4000)]
    assert 0.03 < r.count("test") / 4000 < 0.07 and 0.03 < r.count("valid") / 4000 < 0.07


def test_build_is_deterministic_and_independent_of_file_names(corpus, tmp_path):
    out, manifest, lists = corpus
    again = build_debian_corpus(["zh", "fr", "de", "en"], tmp_path / "again", lists_dir=lists, max_words=50, progress=False)
    assert again["sha256"] == manifest["sha256"]
    moved = tmp_path / "moved"
    shutil.copytree(lists, moved)
    for p in moved.iterdir():  # another mirror: other file names, other order
        p.rename(p.with_name(p.name.replace("deb.example.org", "zz.mirror")))
    third = build_debian_corpus("en,de,fr,zh", tmp_path / "third", lists_dir=moved, max_words=50, progress=False)
    assert third["sha256"] == manifest["sha256"]
    saved = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert saved["source"]["de"][0]["file"] == f"{PREFIX}de.gz" and len(saved["source"]["de"][0]["sha256"]) == 64


def test_conflicting_duplicate_keeps_first_package(tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / f"{PREFIX}en").write_text(entry("zeta", A, "en", "Zeta synopsis", "Zeta long description here."), encoding="utf-8")
    (lists / f"x_{PREFIX}en").write_text(entry("alpha", A, "en", "Alpha synopsis", "Alpha long description here."), encoding="utf-8")
    m = build_debian_corpus("en", tmp_path / "out", lists_dir=lists, progress=False)
    assert m["stats"]["en"]["conflicts"] == 1
    assert set(by_id(tmp_path / "out", "en", ".syn").values()) == {"Alpha synopsis"}


# ----------------------------------------------------------------------------- errors and CLI


def test_missing_index_names_the_apt_command(tmp_path):
    lists = write_lists(tmp_path, en_lz4=False)
    with pytest.raises(XlingError) as e:
        build_debian_corpus("en,it,zh", tmp_path / "out", lists_dir=lists, progress=False)
    msg = str(e.value)
    assert "Translation-it" in msg and "Translation-en" not in msg and "\n" not in msg
    assert msg.endswith('apt-get update -o Acquire::Languages="en,it,zh_CN"')
    with pytest.raises(XlingError, match='Acquire::Languages="en,de"'):
        build_debian_corpus("de", tmp_path / "out", lists_dir=tmp_path / "nowhere", progress=False)
    assert not (tmp_path / "out").exists()
    with pytest.raises(XlingError, match="min_words <= max_words"):
        build_debian_corpus("en", tmp_path / "out", lists_dir=lists, min_words=10, max_words=5)
    with pytest.raises(XlingError, match="'EN!' is not a language code"):
        build_debian_corpus("EN!", tmp_path / "out", lists_dir=lists)


def test_cli(tmp_path, capsys):
    lists = write_lists(tmp_path)
    out = tmp_path / "corpus"
    assert main(["corpus", "debian-descriptions", "--langs", "en,de", "--lists", str(lists), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "debian-descriptions corpus" in printed and "de-en" in printed
    assert (out / "train.de-en.de").is_file() and (out / "test.en.syn").is_file()
    rc = main(["corpus", "debian-descriptions", "--langs", "en,fr", "--lists", str(tmp_path / "none"), "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith("xling: error: ") and 'apt-get update -o Acquire::Languages="en,fr"' in err
