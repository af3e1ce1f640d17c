"""Shared vocabulary: exact round trips in 7 scripts, fixed specials, sampling, files, CLI."""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from xling.cli import main
from xling.commands.vocab import register
from xling.errors import XlingError
from xling.tokenization.vocab import (
    BOS, EOS, MASK, PAD, SPECIAL_TOKENS, UNK, Vocab, sample_sentences, train_vocab, train_vocab_from_corpus,
)

SIZE = 600  # 5 specials + 256 byte pieces + ~300 characters + some merges

# subject, verb, object, ending word lists; sentences are their combinations
WORDS = {
    "en": (["The old man", "A young woman", "My brother", "The teacher", "Our neighbour"],
           ["reads", "writes", "buys", "finds", "sells"],
           ["a book", "the letter", "fresh bread", "an old map", "three apples"],
           ["today.", "in the morning.", "again!", "now?", "near the river."], " "),
    "de": (["Der alte Müller", "Die schöne Jägerin", "Ein großer Bär", "Das Mädchen", "Unser Nachbar"],
           ["isst", "kauft", "öffnet", "trägt", "grüßt"],
           ["äußerst süße Äpfel", "die Tür", "einen Brief", "das Frühstück", "ein Buch"],
           ["heute.", "um acht Uhr.", "schon wieder!", "im Süden.", "übermorgen?"], " "),
    "fr": (["Le garçon", "La forêt", "Un élève", "Ma sœur", "Le côté"],
           ["achète", "préfère", "connaît", "reçoit", "élève"],
           ["un gâteau", "la clé", "des œufs", "un hôtel", "l'été"],
           ["à Noël.", "déjà !", "près de la fenêtre.", "où ?", "ça va."], " "),
    "ru": (["Старый учитель", "Моя сестра", "Наш сосед", "Этот мальчик", "Красивая девушка"],
           ["читает", "покупает", "пишет", "ищет", "любит"],
           ["новую книгу", "письмо", "свежий хлеб", "старую карту", "три яблока"],
           ["сегодня.", "утром!", "снова?", "у реки.", "ёлка ещё здесь."], " "),
    "ar": (["الرجل العجوز", "المعلمة", "أخي الصغير", "جارنا", "الطالب"],
           ["يقرأ", "يكتب", "يشتري", "يجد", "يبيع"],
           ["كتابا جديدا", "الرسالة", "خبزا طازجا", "خريطة قديمة", "ثلاث تفاحات"],
           ["اليوم.", "في الصباح!", "مرة أخرى؟", "قرب النهر.", "الآن،"], " "),
    "zh": (["老人", "我的姐姐", "这位老师", "我们的邻居", "小明"],
           ["在读", "买了", "写了", "找到了", "卖了"],
           ["一本新书", "那封信", "新鲜的面包", "一张旧地图", "三个苹果"],
           ["。", "，今天！", "吗？", "（在河边）。", "：很好；"], ""),
    "ja": (["私の父は", "先生は", "猫が", "友達は", "田中さんは"],
           ["新しい本を", "手紙を", "パンを", "古い地図を", "りんごを三つ"],
           ["読みました", "書きます", "買いました", "見つけた", "売っている"],
           ["。", "か？", "よ！", "ね、", "「はい」。"], ""),
}
LANGS = sorted(WORDS)


def sentences(lang: str) -> list[str]:
    """All 625 sentences of ``lang`` in a fixed shuffled order."""
    *parts, sep = WORDS[lang]
    out = [sep.join(p) for p in itertools.product(*parts)]
    order = np.random.default_rng(sorted(WORDS).index(lang)).permutation(len(out))
    return [out[i] for i in order]


def train_texts(n: int = 80) -> dict[str, list[str]]:
    return {lang: sentences(lang)[:n] for lang in LANGS}


def heldout(lang: str) -> list[str]:
    return sentences(lang)[-40:]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Vocab, Path]:
    out = tmp_path_factory.mktemp("vocab")
    return train_vocab(train_texts(), out, vocab_size=SIZE, alpha=0.5, max_sentences=10_000, seed=0), out


@pytest.fixture(scope="module")
def vocab(trained) -> Vocab:
    return trained[0]


def one_line_error(excinfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg
    return msg


# ------------------------------------------------------------------ specials
def test_special_ids_are_fixed(vocab):
    assert (PAD, UNK, BOS, EOS, MASK) == (0, 1, 2, 3, 4)
    assert [vocab.id_to_piece(i) for i in range(5)] == SPECIAL_TOKENS == ["<pad>", "<unk>", "<s>", "</s>", "<mask>"]
    assert (vocab.pad_id, vocab.unk_id, vocab.bos_id, vocab.eos_id, vocab.mask_id) == (0, 1, 2, 3, 4)
    assert len(vocab) == SIZE


@pytest.mark.parametrize("text", ["<mask>", "<s>", "</s>", "<pad>", "<unk>", "a <mask> b", "x<mask>y"])
def test_literal_special_text_is_ordinary_text(vocab, text):
    """Decision: raw text cannot inject special ids; "<mask>" in input is plain characters."""
    ids = vocab.encode(text)
    assert min(ids) >= len(SPECIAL_TOKENS)
    assert vocab.decode(ids) == text


def test_decode_skips_special_ids(vocab):
    text = sentences("de")[0]
    ids = vocab.encode(text)
    assert vocab.decode([BOS, *ids[:2], MASK, PAD, *ids[2:], UNK, EOS, PAD]) == text
    assert vocab.decode(np.array(ids)) == text


# ------------------------------------------------------------------ round trip
@pytest.mark.parametrize("lang", LANGS)
def test_round_trip_exact_every_language(vocab, lang):
    texts = sentences(lang)[:80] + heldout(lang)
    batch = vocab.encode_batch(texts)
    for text, ids in zip(texts, batch):
        assert ids == vocab.encode(text)
        assert UNK not in ids and min(ids) >= len(SPECIAL_TOKENS)
        assert vocab.decode(ids) == text


def test_full_width_punctuation_survives(vocab):
    """nmt_nfkc would turn '，！（）：；？' into ASCII; identity normalization keeps them."""
    for text in ["你好，世界！", "（在河边）：很好；吗？", "「はい」。"]:
        assert vocab.decode(vocab.encode(text)) == text
    assert "，" in "".join(sentences("zh")[:80])  # the training data did contain them


@pytest.mark.parametrize("text", [
    "한국어 문장입니다 🙂",          # script and emoji never seen: byte fallback
    "two  spaces and\ttab\nnewline",  # whitespace is not collapsed
    "  leading and trailing  ",
    "e\u0301 decomposed vs é composed",
    "ｆｕｌｌ－ｗｉｄｔｈ ｶﾀｶﾅ",
    "",
])
def test_round_trip_unseen_text(vocab, text):
    ids = vocab.encode(text)
    assert UNK not in ids
    assert vocab.decode(ids) == text


# ------------------------------------------------------------------ languages
def test_languages_and_ids(vocab):
    assert vocab.languages == LANGS  # stored sorted
    for i, code in enumerate(LANGS):
        assert vocab.lang_id(code) == i and vocab.lang_code(i) == code
    with pytest.raises(XlingError) as e:
        vocab.lang_id("dee")
    msg = one_line_error(e)
    assert "'dee'" in msg and "'de'" in msg
    with pytest.raises(XlingError) as e:
        vocab.lang_id("xx")
    assert "xx" in one_line_error(e)
    with pytest.raises(XlingError):
        vocab.lang_code(len(LANGS))


# ------------------------------------------------------------------ files
def test_save_load_identical_and_keeps_other_files(trained, tmp_path):
    vocab, out = trained
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.safetensors").write_bytes(b"weights")
    vocab.save(model_dir)
    vocab.save(model_dir)  # overwriting works too
    assert (model_dir / "model.safetensors").read_bytes() == b"weights"
    assert (model_dir / "spm.model").read_bytes() == (out / "spm.model").read_bytes()
    loaded = Vocab.load(model_dir)
    assert loaded.languages == vocab.languages and len(loaded) == len(vocab)
    assert loaded.meta["sampling"] == vocab.meta["sampling"]
    texts = [s for lang in LANGS for s in heldout(lang)]
    assert loaded.encode_batch(texts) == vocab.encode_batch(texts)
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".")]  # no temp files left


def _copy(out: Path, dst: Path) -> Path:
    dst.mkdir()
    for name in ("spm.model", "vocab.json"):
        (dst / name).write_bytes((out / name).read_bytes())
    return dst


def test_load_errors_are_one_line(trained, tmp_path):
    _, out = trained
    with pytest.raises(XlingError, match="vocab.json: no such file"):
        Vocab.load(tmp_path / "nothing")
    d = _copy(out, tmp_path / "trunc")
    (d / "spm.model").write_bytes((out / "spm.model").read_bytes()[:500])
    with pytest.raises(XlingError, match="checksum mismatch") as e:
        Vocab.load(d)
    one_line_error(e)
    # a corrupt model whose checksum was updated still fails as a user error
    meta = json.loads((d / "vocab.json").read_text(encoding="utf-8"))
    meta["spm_sha256"] = hashlib.sha256((d / "spm.model").read_bytes()).hexdigest()
    (d / "vocab.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(XlingError, match="not a valid SentencePiece model") as e:
        Vocab.load(d)
    one_line_error(e)
    d = _copy(out, tmp_path / "badjson")
    (d / "vocab.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(XlingError, match="invalid JSON") as e:
        Vocab.load(d)
    one_line_error(e)
    d = _copy(out, tmp_path / "nomodel")
    (d / "spm.model").unlink()
    with pytest.raises(XlingError, match="spm.model: no such file"):
        Vocab.load(d)


# ------------------------------------------------------------------ sampling
def reference_counts(sizes: dict[str, int], alpha: float, total: int) -> dict[str, float]:
    p = np.array([sizes[k] for k in sorted(sizes)], dtype=float)
    p /= p.sum()
    q = p**alpha / (p**alpha).sum()
    return dict(zip(sorted(sizes), (q * total).tolist()))


@pytest.mark.parametrize("alpha", [0.5, 1.0, 0.0])
def test_sampled_counts_follow_alpha_smoothing(alpha):
    texts = {"en": [f"en {i}" for i in range(400)], "de": [f"de {i}" for i in range(100)],
             "zh": [f"zh {i}" for i in range(25)]}
    sampled, stats = sample_sentences(texts, alpha, 60, np.random.default_rng(0))
    want = reference_counts({k: len(v) for k, v in texts.items()}, alpha, 60)
    for lang in texts:
        assert abs(len(sampled[lang]) - want[lang]) <= 1, (lang, len(sampled[lang]), want[lang])
        assert stats["languages"][lang]["sampled"] == len(sampled[lang])
        assert not stats["languages"][lang]["capped"]
        assert len(set(sampled[lang])) == len(sampled[lang])  # without replacement
        assert set(sampled[lang]) <= set(texts[lang])
    assert sum(map(len, sampled.values())) == stats["sampled_total"] == 60


def test_small_language_is_capped_and_recorded():
    texts = {"en": [f"en {i}" for i in range(900)], "sw": [f"sw {i}" for i in range(10)]}
    sampled, stats = sample_sentences(texts, 0.0, 200, np.random.default_rng(0))
    assert len(sampled["sw"]) == 10 and stats["languages"]["sw"]["capped"]
    # the shortfall of the capped language is redistributed (water-filling)
    assert len(sampled["en"]) == 190 and not stats["languages"]["en"]["capped"]
    assert stats["requested_total"] == 200 and stats["sampled_total"] == 200


def test_sampling_is_seeded():
    texts = {"en": [f"en {i}" for i in range(300)], "de": [f"de {i}" for i in range(300)]}
    draw = lambda seed: sample_sentences(texts, 0.5, 50, np.random.default_rng(seed))[0]  # noqa: E731
    assert draw(1) == draw(1)
    assert draw(1) != draw(2)


def test_vocab_json_records_sampling_and_fertility(trained):
    vocab, out = trained
    meta = json.loads((out / "vocab.json").read_text(encoding="utf-8"))
    assert meta["languages"] == LANGS and meta["size"] == SIZE and meta["special"]["mask"] == 4
    assert meta["training"]["normalization_rule_name"] == "identity"
    assert meta["training"]["alpha"] == 0.5 and meta["training"]["seed"] == 0
    for lang in LANGS:  # every language has 80 sentences and all fit: all sampled
        s = meta["sampling"]["languages"][lang]
        assert s["available"] == 80 and s["sampled"] == 80
        assert s["probability"] == pytest.approx(1 / len(LANGS))
        f = meta["fertility"][lang]
        ids = vocab.encode_batch(sentences(lang)[:80])
        assert f["tokens_per_sentence"] == pytest.approx(sum(map(len, ids)) / 80)


def test_training_is_deterministic(tmp_path):
    kw = dict(vocab_size=SIZE, alpha=0.5, max_sentences=400, seed=3)
    train_vocab(train_texts(), tmp_path / "a", **kw)
    train_vocab(train_texts(), tmp_path / "b", **kw)
    assert (tmp_path / "a" / "spm.model").read_bytes() == (tmp_path / "b" / "spm.model").read_bytes()
    assert (tmp_path / "a" / "vocab.json").read_text() == (tmp_path / "b" / "vocab.json").read_text()


def test_training_errors_are_one_line(tmp_path):
    with pytest.raises(XlingError, match="too high") as e:
        train_vocab(train_texts(), tmp_path / "v", vocab_size=50_000)
    one_line_error(e)
    with pytest.raises(XlingError, match="model type"):
        train_vocab(train_texts(), tmp_path / "v", model_type="wordpiece")
    with pytest.raises(XlingError, match="no data for"):
        train_vocab({"en": ["a b"], "de": []}, tmp_path / "v")
    assert not (tmp_path / "v").exists()


# ------------------------------------------------------------------ corpus + CLI
MARKER = "ψξζωφ"  # Greek: no other test sentence of de/en/zh has these letters


def make_corpus(root: Path, marker_in_train: bool = False) -> Path:
    root.mkdir()
    for lang in ("de", "en", "zh"):
        train = sentences(lang)[:80]
        marked = [f"{MARKER} {s}" for s in sentences(lang)[80:200]]
        (root / f"train.{lang}").write_text("\n".join(train + (marked if marker_in_train else [])) + "\n",
                                            encoding="utf-8")
        for split in ("valid", "test"):
            (root / f"{split}.{lang}").write_text("\n".join(marked) + "\n", encoding="utf-8")
    (root / "manifest.json").write_text(json.dumps({"name": "tiny", "languages": ["de", "en", "zh"]}))
    return root


OPENED: list[str] = []
_AUDITING = [False]


def _audit(event, args):
    if _AUDITING[0] and event == "open" and isinstance(args[0], (str, Path)):
        OPENED.append(str(args[0]))


sys.addaudithook(_audit)


def test_corpus_training_reads_only_train_files(tmp_path):
    corpus = make_corpus(tmp_path / "corpus")
    OPENED.clear()
    _AUDITING[0] = True
    try:
        vocab = train_vocab_from_corpus(corpus, None, tmp_path / "v", vocab_size=450)
    finally:
        _AUDITING[0] = False
    read = {Path(p).name for p in OPENED if Path(p).parent == corpus}
    assert {"train.de", "train.en", "train.zh"} <= read
    assert not {n for n in read if n.startswith(("valid.", "test."))}
    assert vocab.languages == ["de", "en", "zh"]  # from the manifest
    # the marker's letters were never seen: they fall back to UTF-8 byte pieces
    assert [vocab.id_to_piece(i)[:3] for i in vocab.encode(MARKER)[1:]] == ["<0x"] * 10
    # control: had valid/test text been read, the letters would be pieces of their own
    leaky = train_vocab_from_corpus(make_corpus(tmp_path / "leaky", True), None, tmp_path / "w", vocab_size=450)
    assert not [p for p in map(leaky.id_to_piece, leaky.encode(MARKER)) if p.startswith("<0x")]


def test_corpus_missing_language_names_file(tmp_path):
    corpus = make_corpus(tmp_path / "corpus")
    with pytest.raises(XlingError, match=r"train\.fr: no such file") as e:
        train_vocab_from_corpus(corpus, ["en", "fr"], tmp_path / "v")
    one_line_error(e)


def vocab_cli(argv: list[str]) -> int:
    """Run ``xling vocab`` through its own parser (independent of the other subcommands)."""
    parser = argparse.ArgumentParser(prog="xling")
    register(parser.add_subparsers())
    args = parser.parse_args(["vocab", *argv])
    return args.func(args)


def test_cli_vocab(tmp_path, capsys):
    corpus = make_corpus(tmp_path / "corpus")
    out = tmp_path / "vocab"
    rc = vocab_cli(["--corpus", str(corpus), "--langs", "en,zh", "--size", "420", "--alpha", "0.3",
                    "--model-type", "bpe", "--seed", "1", "--out", str(out)])
    lines = capsys.readouterr().out.splitlines()
    assert rc == 0 and len(lines) == 3 and lines[2].startswith("vocab: 420 pieces, 2 languages")
    assert [ln.split(":")[0] for ln in lines[:2]] == ["en", "zh"]
    assert "80 of 80 sentences sampled (p=0.500)" in lines[0] and "tokens/sentence" in lines[0]
    v = Vocab.load(out)
    assert v.languages == ["en", "zh"] and len(v) == 420 and v.meta["training"]["model_type"] == "bpe"
    for text in heldout("zh") + heldout("en"):
        assert v.decode(v.encode(text)) == text
    with pytest.raises(XlingError, match=r"train\.xx: no such file") as e:
        vocab_cli(["--corpus", str(corpus), "--langs", "en,xx", "--out", str(tmp_path / "o")])
    one_line_error(e)
    capsys.readouterr()
    assert main(["vocab", "--corpus", str(corpus), "--langs", ",", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err  # refused when the command line is parsed: one line
    assert "no language codes" in err and err.count("\n") == 1 and not (tmp_path / "o").exists()
