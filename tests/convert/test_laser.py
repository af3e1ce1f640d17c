"""``xling convert laser`` without the reference: the layouts it detects, what the converted
directory records, and every refusal as a one-line error that writes nothing. (Numerics against
laser_encoders itself: test_laser_reference.py.)"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import write_laser_model
from xling.cli import main
from xling.embeddings.api import SentenceEncoder


@pytest.fixture(scope="module")
def laser(tmp_path_factory) -> dict[str, dict[str, Path]]:
    d = tmp_path_factory.mktemp("laser_files")
    return {kind: write_laser_model(d / kind, kind) for kind in ("laser2", "laser3")}


def _argv(files: dict[str, Path], out: Path, cvocab: bool = True) -> list[str]:
    argv = ["convert", "laser", "--input", str(files["checkpoint"]), "--spm", str(files["spm"]), "--langs", "en,fr",
            "--out", str(out)]
    return argv + (["--cvocab", str(files["cvocab"])] if cvocab else [])


def _rewrite(files: dict[str, Path], dst: Path, edit: Callable[[dict], None]) -> dict[str, Path]:
    ck = torch.load(files["checkpoint"], weights_only=False)  # the test's own file
    edit(ck)
    torch.save(ck, dst)
    return {**files, "checkpoint": dst}


def test_laser2_is_detected_and_its_cvocab_is_optional(laser, tmp_path, capsys):
    assert main(_argv(laser["laser2"], tmp_path / "a", cvocab=False)) == 0
    assert main(_argv(laser["laser2"], tmp_path / "b")) == 0
    assert "(LASER2)" in capsys.readouterr().out
    meta = json.loads((tmp_path / "a" / "config.json").read_text())
    assert meta["config"]["encoder"] == "lstm" and not meta["config"]["source_bos"] and not meta["config"]["decoder"]
    rec = meta["extra"]["converted"]
    assert rec["from"] == "laser2" and rec["params"]["hidden_size"] == 8 and rec["not_spm_pieces"] == 0
    texts = ["In the beginning God created the heaven.", "Au commencement, Dieu créa les cieux."]
    a, b = (SentenceEncoder.from_pretrained(tmp_path / x).encode(texts, "en") for x in "ab")
    assert a.shape == (2, 16) and np.array_equal(a, b)


def test_laser3_is_detected_and_drops_the_decoder(laser, tmp_path, capsys):
    assert main(_argv(laser["laser3"], tmp_path / "m")) == 0
    assert "(LASER3)" in capsys.readouterr().out
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["config"]["encoder"] == "transformer" and meta["config"]["pooling"] == "max"
    assert meta["extra"]["converted"]["args"]["sentemb_criterion"] == "maxpool"
    enc = SentenceEncoder.from_pretrained(tmp_path / "m")
    assert enc.model.decoder is None and enc.max_len == 64 - 1  # x </s> within 64 positions
    with pytest.raises(Exception, match="no decoder"):
        enc.model(torch.tensor([[2, 5, 3]]), dec_tokens=torch.tensor([[2]]), dec_langs=torch.tensor([[0]]))


def test_dictionary_tokens_that_are_not_pieces_are_counted(laser, tmp_path, capsys):
    def edit(ck):
        rows = ck["params"]["num_embeddings"]
        ck["params"]["num_embeddings"] = rows + 1
        ck["model"]["embed_tokens.weight"] = torch.cat([ck["model"]["embed_tokens.weight"], torch.ones(1, 8)])
        ck["dictionary"]["😀"] = rows  # a surface of unknown characters, as a dictionary of segmented text holds

    assert main(_argv(_rewrite(laser["laser2"], tmp_path / "x.pt", edit), tmp_path / "m", cvocab=False)) == 0
    assert "1 dictionary tokens are not SentencePiece pieces" in capsys.readouterr().out
    assert json.loads((tmp_path / "m" / "config.json").read_text())["extra"]["converted"]["not_spm_pieces"] == 1


def _params(**kw):
    return lambda ck: ck["params"].update(kw)


def _dictionary(**kw):
    return lambda ck: ck["dictionary"].update(kw)


def _cfg(**kw):
    return lambda ck: vars(ck["cfg"]["model"]).update(kw)


def _drop(key):
    return lambda ck: ck["model"].pop(key)


REFUSED = [  # (kind, edit of the checkpoint, what the one-line error says)
    ("laser2", lambda ck: ck["params"].pop("num_embeddings"), "params num_embeddings=None: missing"),
    ("laser2", _params(dropout=0.1), "'dropout' is not an argument of LASER's LaserLstmEncoder"),
    ("laser2", _params(bidirectional=False), "bidirectional=False"),
    ("laser2", _params(padding_idx=0), "padding_idx=0: laser_encoders pads with <pad>=1"),
    ("laser2", _params(hidden_size=0), "hidden_size=0: missing or not a positive integer"),
    ("laser2", lambda ck: ck["model"].update(step=3), "no 'model' state dict of tensors"),
    ("laser2", _params(embed_dim=4), "params say"),
    ("laser2", lambda ck: ck.update(params=[1, 2]), "'params' is a list"),
    ("laser2", _dictionary(x=10_000), "outside the embedding's"),
    ("laser2", _dictionary(x=5), "share id 5"),
    ("laser2", lambda ck: ck.update(dictionary=["a"]), "'dictionary' is not a mapping"),
    ("laser2", _drop("lstm.weight_hh_l1_reverse"), "missing ['encoder.lstm.weight_hh_l1_reverse']"),
    ("laser2", lambda ck: ck["model"].update(extra=torch.zeros(1)), "unexpected ['encoder.extra']"),
    ("laser2", lambda ck: ck.update(when=datetime.date(2022, 1, 1)), "needs datetime.date"),
    ("laser3", _cfg(encoder_layers=3), "no layers.2."),
    ("laser3", _cfg(encoder_learned_pos=True), "no embed_positions.weight"),
    ("laser3", lambda ck: ck["model"].update({"encoder.embed_positions.weight": torch.ones(66, 16)}),
     "unexpected embed_positions.weight"),  # learned positions, but cfg says sinusoidal
    ("laser3", _cfg(encoder_normalize_before=True), "pre-norm encoder without its final layer_norm"),
    ("laser3", _cfg(activation_fn="gelu_accurate"), "activation_fn 'gelu_accurate'"),
    ("laser3", _cfg(no_token_positional_embeddings=True), "no-token-positional-embeddings cannot be expressed"),
    ("laser3", _cfg(sentemb_criterion="cls"), "cls without prepend_bos"),
    ("laser3", lambda ck: ck.update(cfg={"task": {}}), "no cfg['model']"),
    ("laser3", _drop("encoder.embed_tokens.weight"), "no embed_tokens.weight"),
    ("laser3", lambda ck: ck.pop("cfg"), "neither LASER2"),
    ("laser3", lambda ck: ck.update(model=[]), "no 'model' state dict"),
]


@pytest.mark.parametrize("kind, edit, says", REFUSED, ids=[f"{k}-{s[:40]}" for k, _, s in REFUSED])
def test_refusals_are_one_line_and_write_nothing(laser, tmp_path, capsys, kind, edit, says):
    files = _rewrite(laser[kind], tmp_path / "bad.pt", edit)
    assert main(_argv(files, tmp_path / "out")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


FILE_CASES = [
    ("laser3", lambda f, d: {**f, "cvocab": None}, "needs --cvocab"),
    ("laser3", lambda f, d: {**f, "cvocab": d / "none.cvocab"}, "no such dictionary (.cvocab)"),
    ("laser2", lambda f, d: {**f, "spm": d / "none.spm"}, "no such SentencePiece model (.spm)"),
    ("laser3", lambda f, d: {**f, "cvocab": _write(d / "small.cvocab", "▁a 3\n▁b 2\n")}, "not this model's dictionary"),
    ("laser2", lambda f, d: {**f, "cvocab": _write(d / "swapped.cvocab", _swapped(f["cvocab"]))},
     "not this model's vocabulary"),
]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _swapped(path: Path) -> str:
    lines = path.read_text(encoding="utf-8").splitlines()
    return "\n".join([lines[1], lines[0], *lines[2:]]) + "\n"


@pytest.mark.parametrize("kind, make, says", FILE_CASES, ids=[s for _, _, s in FILE_CASES])
def test_missing_or_wrong_vocabulary_files(laser, tmp_path, capsys, kind, make, says):
    files = make(laser[kind], tmp_path)
    argv = _argv({k: v for k, v in files.items() if v is not None}, tmp_path / "out", cvocab=files["cvocab"] is not None)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
    assert not (tmp_path / "out").exists()
