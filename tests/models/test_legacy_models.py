"""Model directories written by an older xling keep loading and give the same outputs.

``tests/fixtures/legacy/v0`` holds one tiny model of each kind (encoder, encoder-decoder, UNILM
fine-tuned the causal way, sentence embedder, classifier) trained by xling at the commit named
in its ``MADE_BY.json``, with that xling's outputs (``tests/fixtures/legacy/make.py``). Their
records (``config.json`` ``extra``, weights-only ``checksums.json``) are the old format.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import FIXTURES
from xling.cli import main

V0 = FIXTURES / "legacy" / "v0"
INPUT = V0 / "input.en.txt"
EXPECTED = V0 / "expected"


def test_the_fixtures_are_the_old_format():
    made = json.loads((V0 / "MADE_BY.json").read_text())
    assert made["xling_commit"].startswith("291e308")
    for kind in ("encoder", "seq2seq", "unilm_causal", "sentence", "classifier"):
        assert json.loads((V0 / kind / "checksums.json").read_text()).keys() == {"model.safetensors"}


def test_encoder_evaluation_and_hidden_states(workspace, tmp_path):
    from xling.models.encoder import TransformerEncoder
    from xling.tokenization.vocab import Vocab

    out = tmp_path / "x.json"
    assert main(["evaluate", "xlm", "--model", str(V0 / "encoder"), "--corpus", str(workspace.corpus),
                 "--langs", "en,fr", "--pairs", "en-fr", "--out", str(out), "--quiet"]) == 0
    assert json.loads(out.read_text()) == json.loads((EXPECTED / "encoder.xlm.json").read_text())
    vocab = Vocab.load(V0 / "encoder")
    tokens = torch.tensor([vocab.encode(INPUT.read_text(encoding="utf-8").splitlines()[0])])
    with torch.no_grad():
        h = TransformerEncoder.from_pretrained(V0 / "encoder").eval()(tokens)
    assert np.array_equal(h.numpy(), np.load(EXPECTED / "encoder.hidden.npy"))


@pytest.mark.parametrize("kind", ["seq2seq", "unilm_causal"])
def test_translation_models_decode_as_before(kind, tmp_path):
    out = tmp_path / "fr.txt"
    assert main(["translate", "--model", str(V0 / kind), "--src-lang", "en", "--tgt-lang", "fr", "--input", str(INPUT),
                 "--beam", "2", "--max-len-a", "0", "--max-len-b", "6", "--output", str(out), "--quiet"]) == 0
    assert out.read_bytes() == (EXPECTED / f"{kind}.fr.txt").read_bytes()


def test_sentence_embedder_embeds_as_before(tmp_path):
    out = tmp_path / "x.npy"
    assert main(["embed", "--model", str(V0 / "sentence"), "--lang", "en", "--input", str(INPUT), "--out", str(out),
                 "--quiet"]) == 0
    assert np.array_equal(np.load(out), np.load(EXPECTED / "sentence.en.npy"))


def test_classifier_predicts_as_before(tmp_path):
    from xling.classification.predict import Predictor

    out = tmp_path / "labels.txt"
    assert main(["classify", "predict", "--model", str(V0 / "classifier"), "--lang", "en", "--input", str(INPUT),
                 "--scores", "--out", str(out)]) == 0
    assert out.read_bytes() == (EXPECTED / "classifier.en.txt").read_bytes()
    texts = INPUT.read_text(encoding="utf-8").splitlines()
    probs = Predictor.load(V0 / "classifier").probabilities(texts, "en")
    assert np.array_equal(probs, np.load(EXPECTED / "classifier.en.probs.npy"))
