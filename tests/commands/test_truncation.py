"""Every command that cuts inputs to a model's maximum length says how many lines it cut,
once per run (not once per chunk, batch or side): embed, classify predict (fine-tuned and
frozen), evaluate classification, mine --model, evaluate mining --model, translate."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from helpers import TINY, WORDS
from xling.classification.model import EmbeddingClassifier, EmbeddingHeadConfig, SequenceClassifier
from xling.classification.train import save_classifier
from xling.cli import main
from xling.embeddings import SentenceEmbedder, SentenceEmbedderConfig, SentenceEncoder
from xling.models.config import EncoderConfig, Seq2SeqConfig
from xling.models.encoder import TransformerEncoder
from xling.models.seq2seq import TransformerSeq2Seq

MAX = 8  # tokens every model here keeps per sentence


def long_line(lang: str, i: int) -> str:
    """A distinct line of 24 words (far more than MAX tokens)."""
    w = WORDS[lang]
    return " ".join(w[(i + j) % 8] for j in range(24))


def short_line(lang: str, i: int) -> str:
    return f"{WORDS[lang][i % 8]} {WORDS[lang][(i + 3) % 8]}"


def write(path, lines):
    path.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    return str(path)


def cut_messages(text: str) -> list[str]:
    return [line for line in text.splitlines() if "longer than" in line]


def cut_records(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "longer than" in r.getMessage()]


def sentence_encoder(vocab, d):
    torch.manual_seed(0)
    cfg = SentenceEmbedderConfig(vocab_size=len(vocab), n_langs=2, emb_dim=16, hidden=8, n_layers=1, dec_emb_dim=16,
                                 dec_hidden=16, dropout=0.0)
    return SentenceEncoder(SentenceEmbedder(cfg), vocab, ["de", "en"], ["en"], max_len=MAX).save_pretrained(d)


@pytest.fixture(scope="module")
def models(vocabs, tmp_path_factory):
    vocab = vocabs[0]
    d = tmp_path_factory.mktemp("trunc")
    torch.manual_seed(0)
    enc_cfg = EncoderConfig(vocab_size=len(vocab), n_langs=2, **TINY)
    clf = SequenceClassifier.from_encoder(TransformerEncoder(enc_cfg), ["no", "yes"], max_len=MAX)
    s2s = TransformerSeq2Seq(Seq2SeqConfig(vocab_size=len(vocab), n_langs=2, n_dec_layers=1,
                                           **{**TINY, "max_positions": MAX + 2}))
    return {
        "laser": sentence_encoder(vocab, d / "laser"),
        "classifier": save_classifier(clf, d / "clf", {}, vocab),
        "frozen": save_classifier(EmbeddingClassifier(EmbeddingHeadConfig(dim=16, labels=["no", "yes"])),
                                  d / "frozen", {}, None, encoder_dir=str(d / "laser")),
        "s2s": s2s.save_pretrained(d / "s2s", vocab=vocab),
    }


def test_embed_says_once_how_many_lines_it_cut(models, tmp_path, capsys, caplog):
    lines = [long_line("en", 0), short_line("en", 1), long_line("en", 2), "", short_line("en", 4), long_line("en", 5)]
    with caplog.at_level(logging.WARNING):
        rc = main(["embed", "--model", str(models["laser"]), "--lang", "en", "--input", write(tmp_path / "in.txt", lines),
                   "--out", str(tmp_path / "x.npy"), "--chunk", "2", "--quiet"])
    assert rc == 0 and np.load(tmp_path / "x.npy").shape == (6, 16)
    assert cut_messages(capsys.readouterr().err) == [
        f"xling embed: 3 of 6 lines are longer than {MAX} tokens (the model's maximum): cut to {MAX}"]
    assert cut_records(caplog) == []  # not once more per chunk


@pytest.mark.parametrize("kind", ["classifier", "frozen"])
def test_classify_predict_says_once_how_many_lines_it_cut(models, tmp_path, capsys, caplog, kind):
    lines = [long_line("en", 0), short_line("en", 1), long_line("en", 2), short_line("en", 3)]
    with caplog.at_level(logging.WARNING):
        rc = main(["classify", "predict", "--model", str(models[kind]), "--input", write(tmp_path / "in.txt", lines),
                   "--lang", "en", "--out", str(tmp_path / "preds.txt"), "--batch-size", "1", "--max-tokens", "16"])
    assert rc == 0 and len((tmp_path / "preds.txt").read_text().splitlines()) == 4
    assert cut_messages(capsys.readouterr().err) == [
        f"xling classify predict: 2 of 4 lines are longer than {MAX} tokens (the model's maximum): cut to {MAX}"]
    assert cut_records(caplog) == []


def test_evaluate_classification_says_how_many_lines_it_cut(models, tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for lang, every in (("en", 3), ("de", 4)):  # 4 long of 12, 3 long of 12
        write(corpus / f"test.{lang}", [long_line(lang, i) if i % every == 0 else short_line(lang, i) for i in range(12)])
        write(corpus / f"test.{lang}.genre", ["no", "yes"] * 6)
    rc = main(["evaluate", "classification", "--model", str(models["classifier"]), "--data", str(corpus),
               "--langs", "en,de", "--quiet"])
    assert rc == 0
    msgs = cut_messages(capsys.readouterr().err)  # the command says it, prefixed, once for all languages
    assert len(msgs) == 1 and msgs[0].startswith("xling evaluate classification: "), msgs
    assert f"7 of 24 lines are longer than {MAX} tokens" in msgs[0], msgs


def test_mine_with_a_model_says_once_how_many_lines_it_cut(models, tmp_path, capsys):
    src = [long_line("de", i) if i < 2 else short_line("de", i) for i in range(6)]  # 2 long
    tgt = [long_line("en", i) if i < 3 else short_line("en", i) for i in range(6)]  # 3 long
    rc = main(["mine", "--model", str(models["laser"]), "--src", write(tmp_path / "de.txt", src), "--src-lang", "de",
               "--tgt", write(tmp_path / "en.txt", tgt), "--tgt-lang", "en", "--out", str(tmp_path / "p.tsv"),
               "--k", "2", "--quiet"])
    assert rc == 0
    msgs = cut_messages(capsys.readouterr().err)  # the command says it, prefixed
    assert len(msgs) == 1 and msgs[0].startswith("xling mine: "), msgs  # one for the run, not one per side
    assert f"5 of 12 lines are longer than {MAX} tokens" in msgs[0] and "de.txt: 2" in msgs[0] and "en.txt: 3" in msgs[0]


def test_evaluate_mining_with_a_model_says_once_how_many_lines_it_cut(models, tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write(corpus / "test.de-en.de", [long_line("de", i) if i < 4 else f"{short_line('de', i)} {i}" for i in range(20)])
    write(corpus / "test.de-en.en", [long_line("en", i) if i < 5 else f"{short_line('en', i)} {i}" for i in range(20)])
    rc = main(["evaluate", "mining", "--model", str(models["laser"]), "--corpus", str(corpus), "--pairs", "de-en"])
    assert rc == 0
    msgs = cut_messages(capsys.readouterr().err)  # the command says it, prefixed
    assert len(msgs) == 1 and msgs[0].startswith("xling evaluate mining: "), msgs
    assert f"9 of 40 lines are longer than {MAX} tokens" in msgs[0], msgs


def test_translate_says_once_how_many_lines_it_cut(models, tmp_path, caplog):
    lines = [long_line("en", 0), short_line("en", 1), long_line("en", 2), long_line("en", 3)]
    with caplog.at_level(logging.WARNING):
        rc = main(["translate", "--model", str(models["s2s"]), "--src-lang", "en", "--tgt-lang", "de", "--input",
                   write(tmp_path / "in.txt", lines), "--output", str(tmp_path / "out.txt"), "--batch-size", "1",
                   "--max-len-a", "0", "--max-len-b", "2", "--quiet"])
    assert rc == 0
    msgs = cut_records(caplog)
    assert len(msgs) == 1 and f"3 of 4 input lines are longer than {MAX} tokens" in msgs[0], msgs  # not per batch
