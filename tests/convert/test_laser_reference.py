"""LASER2 / LASER3 parity with laser_encoders itself (issue 15).

Nothing here is skipped. ``laser_ref`` runs ``tests/fairseq_ref/make_laser.py`` in the fairseq side
venv (``make fairseq-venv`` installs laser_encoders 0.0.2 there) once into
``$XLING_CACHE/laser-ref/<key>`` (key: sha256 of make_laser.py, the Bible fixture database and the
venv's build stamps), about 10 seconds; later runs reuse it. That script builds tiny random LASER2
and LASER3 encoders with laser_encoders' and fairseq's own classes, saves them as LASER's files
are laid out, and writes what laser_encoders' SentenceEncoder computes for 35 sentences (with
LaserTokenizer): the token ids and the embeddings, one sentence per batch and in padded batches.
Here xling converts each model (``xling convert laser``) and must give the same ids, and the same
embeddings within 1e-5 whatever its batch size, in input order.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURE_DB, ROOT, side_reference
from xling.cli import main
from xling.embeddings.api import SentenceEncoder
from xling.tokenization.vocab import BOS, EOS, MASK, PAD, UNK, Vocab

MAKE_LASER = ROOT / "tests" / "fairseq_ref" / "make_laser.py"
VARIANTS = ("laser2", "laser3_max", "laser3_cls", "laser3_postln")
LANGS = "en,fr,it,ru,es,ar"
TOL = 1e-5
LASER_IDS = {PAD: 1, UNK: 3, BOS: 0, EOS: 2}  # xling special id -> the id laser_encoders forces

pytestmark = pytest.mark.timeout(1800)  # the first use may build the side venv


@pytest.fixture(scope="session")
def laser_ref(fairseq_python) -> Path:
    """The directory make_laser.py wrote, cached across runs."""
    h = hashlib.sha256(MAKE_LASER.read_bytes() + FIXTURE_DB.read_bytes())
    return side_reference(fairseq_python, MAKE_LASER, "laser-ref", h, "--db", str(FIXTURE_DB))


@pytest.fixture(scope="session")
def sentences(laser_ref) -> list[str]:
    return json.loads((laser_ref / "sentences.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def converted(laser_ref, tmp_path_factory) -> dict[str, Path]:
    """Each variant converted by the command line, as a user runs it."""
    out = {}
    for v in VARIANTS:
        ref = json.loads((laser_ref / v / "ref.json").read_text(encoding="utf-8"))
        out[v] = tmp_path_factory.mktemp("laser") / v
        argv = ["convert", "laser", "--input", str(laser_ref / v / "model.pt"), "--spm", str(laser_ref / ref["spm"]),
                "--cvocab", str(laser_ref / ref["cvocab"]), "--langs", LANGS, "--out", str(out[v])]
        assert main(argv) == 0
    return out


def test_the_reference_is_laser_encoders(laser_ref):
    m = json.loads((laser_ref / "manifest.json").read_text())
    assert m["laser_encoders"] == "0.0.2" and m["sacremoses"] == "0.1.0" and m["torch"].startswith("2.13.0"), m
    assert m["variants"] == list(VARIANTS) and m["sentences"] == 35


def _laser_ids(vocab: Vocab, symbols: list[str], ids: list[int]) -> list[int]:
    """xling ids -> the ids laser_encoders gives the same pieces: its dictionary's index of the
    piece (the last one for a repeated token, as fairseq's), <unk> when absent, specials forced."""
    index = {tok: i for i, tok in enumerate(symbols)}
    index.update({"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3})
    return [LASER_IDS[i] if i in LASER_IDS else index.get(vocab.id_to_piece(i), 3) for i in ids]


@pytest.mark.parametrize("variant", VARIANTS)
def test_token_ids_are_laser_encoders(laser_ref, converted, sentences, variant):
    ref = json.loads((laser_ref / variant / "ref.json").read_text(encoding="utf-8"))
    meta = json.loads((converted[variant] / "config.json").read_text())
    symbols, bos = meta["extra"]["converted"]["symbols"], meta["config"]["source_bos"]
    vocab = Vocab.load(converted[variant])
    assert vocab.meta["normalize"] == ["nonprint", "laser_punct", "lowercase"]
    got = [_laser_ids(vocab, symbols, ([BOS] if bos else []) + vocab.encode(s) + [EOS]) for s in sentences]
    assert got == ref["token_ids"]
    assert [MASK] not in got  # never produced from text


@pytest.mark.parametrize("variant", VARIANTS)
def test_embeddings_equal_laser_encoders(laser_ref, converted, sentences, variant):
    single = np.load(laser_ref / variant / "single.npy")  # one sentence per batch
    batched = np.load(laser_ref / variant / "batched.npy")  # sorted, padded batches of up to 8
    assert single.shape == (len(sentences), 32 if variant == "laser2" else 16)  # 2 x 16 (BiLSTM) or d_model 16
    assert np.abs(single - batched).max() < TOL
    enc = SentenceEncoder.from_pretrained(converted[variant])
    assert enc.model.decoder is None and enc.languages == sorted(LANGS.split(","))
    for batch_size in (1, 7, 64):
        got = enc.encode(sentences, "fr", batch_size=batch_size)
        assert got.dtype == np.float32
        assert np.abs(got - single).max() < TOL, (batch_size, np.abs(got - single).max())
        assert np.abs(got - batched).max() < TOL
    rev = enc.encode(sentences[::-1], "en", batch_size=5)[::-1]  # order kept, whatever the batches hold
    assert np.abs(rev - single).max() < TOL


def test_the_conversions_keep_what_laser_computes(converted):
    cfg = {v: json.loads((converted[v] / "config.json").read_text())["config"] for v in VARIANTS}
    assert cfg["laser2"]["encoder"] == "lstm" and not cfg["laser2"]["source_bos"]
    assert (cfg["laser3_max"]["pooling"], cfg["laser3_max"]["source_bos"], cfg["laser3_max"]["final_norm"]) \
        == ("max", False, False)
    t = cfg["laser3_cls"]["transformer"]
    assert cfg["laser3_cls"]["pooling"] == "cls" and cfg["laser3_cls"]["source_bos"]
    assert (t["pre_norm"], t["positions"], t["emb_norm"], t["activation"]) == (True, "learned", True, "gelu")
    assert cfg["laser3_postln"]["final_norm"] and not cfg["laser3_postln"]["transformer"]["embed_scale"]
    assert all(not c["decoder"] for c in cfg.values())


def test_embed_and_mine_run_the_converted_encoder(laser_ref, converted, sentences, tmp_path):
    src = tmp_path / "src.txt"
    src.write_text("\n".join(s.replace("\n", " ") for s in sentences[:18]) + "\n", encoding="utf-8")
    assert main(["embed", "--model", str(converted["laser2"]), "--lang", "fr", "--input", str(src),
                 "--out", str(tmp_path / "x.npy"), "--quiet"]) == 0
    assert np.abs(np.load(tmp_path / "x.npy") - np.load(laser_ref / "laser2" / "single.npy")[:18]).max() < TOL
    tgt = tmp_path / "tgt.txt"
    tgt.write_text("\n".join(sentences[:18][::-1]) + "\n", encoding="utf-8")
    assert main(["mine", "--model", str(converted["laser3_cls"]), "--src", str(src), "--src-lang", "en",
                 "--tgt", str(tgt), "--tgt-lang", "fr", "--out", str(tmp_path / "pairs.tsv"), "--k", "2"]) == 0
    pairs = (tmp_path / "pairs.tsv").read_text(encoding="utf-8").splitlines()
    assert pairs  # the same texts on both sides: mined as each other
    assert all(line.split("\t")[-2] == line.split("\t")[-1] for line in pairs if line.count("\t") >= 2)
