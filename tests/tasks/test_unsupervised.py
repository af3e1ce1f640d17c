"""Unsupervised MT runs: the disjoint-halves Bible corpus, what `unsupervised: true` refuses, and a
run of denoise + back-translation selected by round-trip BLEU with supervised BLEU reported."""

import json

import pytest

from conftest import FIXTURE_DB, TINY_CONFIG
from xling.cli import main
from xling.config import load_config
from xling.errors import XlingError
from xling.tasks.train import TrainConfig, check_config
from xling.tasks.unsupervised import check_no_parallel_overlap

UNMT = ["model_type=seq2seq", "unsupervised=true", "model.n_layers=1", "model.n_dec_layers=1",
        "objectives=[{type: denoise, langs: [en, fr]}, {type: backtranslation, langs: [en-fr-en, fr-en-fr], "
        "weight: '0:0,2:1'}, {type: translation, langs: [fr-en], weight: 0}]"]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    d = tmp_path_factory.mktemp("unmt")
    for name, extra in (("halves", ["--mono-halves", "en"]), ("full", [])):
        assert main(["corpus", "bible", "--langs", "en,fr", "--db", str(FIXTURE_DB), "--out", str(d / name),
                     "--quiet", *extra]) == 0
    assert main(["vocab", "--corpus", str(d / "full"), "--size", "400", "--out", str(d / "vocab")]) == 0
    return d


def test_halves_share_no_training_verse_and_keep_evaluation_pairs(corpora):
    h, full = corpora / "halves", corpora / "full"
    en, fr = (set((h / f"train.{x}.ids").read_text().split()) for x in ("en", "fr"))
    assert en and fr and not en & fr
    assert en | fr == set((full / "train.en.ids").read_text().split()) & set((full / "train.fr.ids").read_text().split())
    assert not (h / "train.en-fr.en").exists() or not (h / "train.en-fr.en").read_text().strip()
    for split in ("valid", "test"):
        assert (h / f"{split}.en-fr.en").read_bytes() == (full / f"{split}.en-fr.en").read_bytes()
    assert json.loads((h / "manifest.json").read_text())["mono_halves"]["pivot"] == "en"


def _cfg(corpora, corpus, *extra):
    sets = [f"data.corpus={corpora / corpus}", f"data.vocab={corpora / 'vocab'}", *UNMT, *extra]
    return load_config(TrainConfig, TINY_CONFIG, sets)


def test_what_an_unsupervised_run_refuses(corpora):
    trains_pairs = "objectives=[{type: denoise, langs: [en]}, {type: translation, langs: [fr-en], weight: '0:0,10:1'}]"
    with pytest.raises(XlingError, match=r"objectives\[1\] \(translation\): trains on parallel pairs"):
        check_config(_cfg(corpora, "halves", trains_pairs))
    with pytest.raises(XlingError, match="best_metric: bleu/avg needs reference translations"):
        check_config(_cfg(corpora, "halves", "trainer.best_metric=bleu/avg"))
    check_config(_cfg(corpora, "halves", "trainer.best_metric=rtbleu/avg"))
    check_no_parallel_overlap(_cfg(corpora, "halves"))
    full = _cfg(corpora, "full")
    en, fr = (set((corpora / "full" / f"train.{x}.ids").read_text().split()) for x in ("en", "fr"))
    with pytest.raises(XlingError, match=f"{len(en & fr)} of the {len(en)} train sentences of en have their "
                                         "translation in train.fr"):
        check_no_parallel_overlap(full)


def test_an_unsupervised_run_reports_round_trip_and_supervised_bleu(corpora, tmp_path):
    """weight 0: the translation objective is built for validation only (no train pairs exist in
    the halves corpus), its BLEU reported next to the round-trip metric that selects the model."""
    args = ["train", "--config", str(TINY_CONFIG), "--out", str(tmp_path / "run")]
    for s in [f"data.corpus={corpora / 'halves'}", f"data.vocab={corpora / 'vocab'}", *UNMT, "data.max_len=40",
              "data.max_tgt_len=40", "data.valid_examples=4", "seq2seq.valid_generate=4", "trainer.max_steps=4",
              "trainer.valid_every=2", "trainer.best_metric=rtbleu/avg", "trainer.best_mode=max"]:
        args += ["--set", s]
    assert main(args) == 0
    valid = json.loads((tmp_path / "run" / "summary.json").read_text())["valid"]
    for key in ("rtbleu/backtranslation-en-fr-en", "rtbleu/backtranslation-fr-en-fr", "rtbleu/avg",
                "bleu/translation-fr-en", "ce/denoise-en", "ce/backtranslation-fr-en-fr"):
        assert key in valid, sorted(valid)
    metrics = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    trained = {k for m in metrics for k in m if k.startswith("loss/")}
    assert trained and not any("translation-fr-en" in k and "back" not in k for k in trained)  # never trained on


@pytest.mark.parametrize("direction, missing", [("en-de-en", "'de'"), ("de-en-de", "'de'"), ("es-de-es", "'es' or 'de'")])
def test_a_back_translation_direction_the_model_does_not_know(corpora, tmp_path, capsys, direction, missing):
    """Refused before any update, naming the direction, the unknown codes and the vocabulary's languages."""
    args = ["train", "--config", str(TINY_CONFIG), "--out", str(tmp_path / "run")]
    for s in [f"data.corpus={corpora / 'halves'}", f"data.vocab={corpora / 'vocab'}", "model_type=seq2seq",
              f"objectives=[{{type: denoise, langs: [en]}}, {{type: backtranslation, langs: [{direction}]}}]"]:
        args += ["--set", s]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"xling: error: objective backtranslation {direction}: the model does not know {missing} "
                       "(its vocabulary's languages: en, fr)"), err
    assert not (tmp_path / "run" / "model").exists()
