"""checksums.json covers a model directory's configuration and vocabulary, not only its
weights: for every model kind (encoder, seq2seq, sentence embedder, both classifiers, a
training checkpoint) an edited config.json, vocab.json or spm.model is a one-line error
naming that file; untouched and old-format (weights-only) directories load."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from helpers import TINY
from xling.classification.model import EmbeddingClassifier, EmbeddingHeadConfig, SequenceClassifier
from xling.classification.predict import Predictor
from xling.classification.train import save_classifier
from xling.embeddings import SentenceEmbedder, SentenceEmbedderConfig, SentenceEncoder
from xling.errors import XlingError
from xling.generation.api import load_generation_model
from xling.models.config import EncoderConfig, Seq2SeqConfig
from xling.models.encoder import TransformerEncoder
from xling.models.io import write_model_meta
from xling.models.seq2seq import TransformerSeq2Seq
from xling.tokenization.vocab import Vocab
from xling.training.checkpoint import save_checkpoint
from xling.utils.io import sha256_file

KINDS = ["encoder", "seq2seq", "sentence", "classifier", "embedding_classifier", "checkpoint"]


def _enc_config(vocab) -> EncoderConfig:
    return EncoderConfig(vocab_size=len(vocab), n_langs=len(vocab.languages), **TINY)


def _sentence_encoder(vocab) -> SentenceEncoder:
    cfg = SentenceEmbedderConfig(vocab_size=len(vocab), n_langs=2, emb_dim=16, hidden=8, n_layers=1, dec_emb_dim=16,
                                 dec_hidden=16, dropout=0.0)
    return SentenceEncoder(SentenceEmbedder(cfg), vocab, ["de", "en"], ["en"], max_len=20)


def build(kind: str, vocab, d: Path) -> tuple[Path, callable, callable]:
    """Save a tiny model of ``kind`` under ``d``: (model directory, loader, config edit that
    keeps every tensor shape)."""
    torch.manual_seed(0)

    def n_heads(meta):
        meta["config"]["n_heads"] = 2

    if kind == "encoder":
        path = TransformerEncoder(_enc_config(vocab)).save_pretrained(d / "m", vocab=vocab)
        return path, TransformerEncoder.from_pretrained, n_heads
    if kind == "seq2seq":
        cfg = Seq2SeqConfig(vocab_size=len(vocab), n_langs=2, n_dec_layers=1, **TINY)
        path = TransformerSeq2Seq(cfg).save_pretrained(d / "m", vocab=vocab)
        return path, load_generation_model, n_heads
    if kind == "sentence":
        path = _sentence_encoder(vocab).save_pretrained(d / "m")

        def pooling(meta):
            meta["config"]["pooling"] = "mean"
        return path, SentenceEncoder.from_pretrained, pooling
    if kind == "classifier":
        model = SequenceClassifier.from_encoder(TransformerEncoder(_enc_config(vocab)), ["no", "yes"], max_len=16)
        path = save_classifier(model, d / "m", {}, vocab)

        def pooling(meta):
            meta["config"]["pooling"] = "mean"
        return path, Predictor.load, pooling
    if kind == "embedding_classifier":
        enc = _sentence_encoder(vocab).save_pretrained(d / "laser")
        model = EmbeddingClassifier(EmbeddingHeadConfig(dim=16, labels=["no", "yes"]))
        path = save_classifier(model, d / "m", {}, None, encoder_dir=str(enc))

        def normalize(meta):
            meta["config"]["normalize"] = False
        return path, Predictor.load, normalize
    assert kind == "checkpoint"  # a trainer's checkpoint, with what pretraining's save_extra adds
    model = TransformerEncoder(_enc_config(vocab))
    opt = torch.optim.AdamW(model.parameters())
    path = save_checkpoint(d / "checkpoints", 1, model, opt, {},
                           save_extra=lambda t: write_model_meta(type(model), model.config, t, vocab=vocab))

    def load(p):
        return TransformerEncoder.from_pretrained(p), Vocab.load(p)
    return path, load, n_heads


def _edit_json(path: Path, fn) -> None:
    meta = json.loads(path.read_text(encoding="utf-8"))
    fn(meta)
    path.write_text(json.dumps(meta), encoding="utf-8")


def _vocab_dir(kind: str, d: Path) -> Path:
    return d / "encoder" if kind == "embedding_classifier" else d  # the head has no vocabulary of its own


def _changed(path: Path, load, d: Path) -> None:
    with pytest.raises(XlingError) as e:
        load(d)
    msg = str(e.value)
    assert "\n" not in msg
    assert re.match(re.escape(f"{path}: changed since the model was saved"), msg), msg
    assert "checksums.json" in msg


@pytest.mark.parametrize("kind", KINDS)
def test_untouched_directory_loads_and_records_every_file(vocabs, tmp_path, kind):
    d, load, _ = build(kind, vocabs[0], tmp_path)
    load(d)
    sums = json.loads((d / "checksums.json").read_text())
    want = {"config.json", "model.safetensors"} | ({"spm.model", "vocab.json"} if kind != "embedding_classifier" else set())
    assert set(sums) == want
    assert all(sums[name] == sha256_file(d / name) for name in sums)


@pytest.mark.parametrize("kind", KINDS)
def test_edited_config_is_refused(vocabs, tmp_path, kind):
    d, load, edit = build(kind, vocabs[0], tmp_path)
    _edit_json(d / "config.json", edit)
    _changed(d / "config.json", load, d)


@pytest.mark.parametrize("kind", KINDS)
def test_edited_vocab_json_is_refused(vocabs, tmp_path, kind):
    d, load, _ = build(kind, vocabs[0], tmp_path)
    v = _vocab_dir(kind, d)

    def swap_languages(meta):
        meta["languages"] = meta["languages"][::-1]  # every language id changes meaning
    _edit_json(v / "vocab.json", swap_languages)
    _changed(v / "vocab.json", load, d)


@pytest.mark.parametrize("kind", KINDS)
def test_replaced_spm_model_is_refused(vocabs, tmp_path, kind):
    """Another valid SentencePiece model, with vocab.json's own checksum updated to match:
    only checksums.json can tell."""
    d, load, _ = build(kind, vocabs[0], tmp_path)
    v = _vocab_dir(kind, d)
    other = tmp_path / "other"
    vocabs[1].save(other)
    (v / "spm.model").write_bytes((other / "spm.model").read_bytes())

    def new_sha(meta):
        meta["spm_sha256"], meta["size"] = sha256_file(v / "spm.model"), len(vocabs[1])
    _edit_json(v / "vocab.json", new_sha)
    _changed(v / "spm.model", load, d)


def test_vocab_load_of_a_model_directory_checks_the_record(vocabs, tmp_path):
    d, _, _ = build("encoder", vocabs[0], tmp_path)
    (d / "spm.model").write_bytes((d / "spm.model").read_bytes() + b"\0")
    _changed(d / "spm.model", Vocab.load, d)
    vocabs[0].save(tmp_path / "plain")  # a vocabulary directory of its own has no checksums.json
    assert Vocab.load(tmp_path / "plain").languages == ["de", "en"]


@pytest.mark.parametrize("kind", KINDS)
def test_old_format_checksums_still_load(vocabs, tmp_path, kind):
    """Directories saved before config and vocabulary were covered record only the weights:
    they load, and only what the record lists is checked."""
    d, load, edit = build(kind, vocabs[0], tmp_path)
    (d / "checksums.json").write_text(json.dumps({"model.safetensors": sha256_file(d / "model.safetensors")}))
    load(d)
    _edit_json(d / "config.json", edit)
    load(d)
    (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:-8])
    _changed(d / "model.safetensors", load, d)
