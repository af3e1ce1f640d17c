"""xling convert xlm refuses what it cannot convert faithfully: one line naming the problem, exit
status 2, no output directory. (Missing, empty, truncated and code-running files, and the
options' own checks: the ``convert xlm`` row of tests/commands/test_bad_input.py.)"""

from __future__ import annotations

import argparse

import pytest
import torch
from helpers import write_xlm_model

from xling.cli import main


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("xlm")
    return {kind: write_xlm_model(d / kind, kind=kind, d_model=16, layers=1) for kind in ("mlm", "mass")}


def _edit(rec: dict, tmp_path, fn) -> str:
    ckpt = torch.load(rec["checkpoint"], weights_only=False)  # the test's own file
    fn(ckpt)
    path = tmp_path / "edited.pth"
    torch.save(ckpt, path)
    return str(path)


def _refused(capsys, tmp_path, checkpoint, codes, *extra) -> str:
    capsys.readouterr()
    rc = main(["convert", "xlm", "--input", str(checkpoint), "--codes", str(codes), "--out", str(tmp_path / "out"),
               *extra])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1 and err[0].startswith("xling: error: "), (rc, err)
    assert not (tmp_path / "out").exists()
    return err[0]


def _drop(key):
    return lambda c: c["params"].pop(key)


def _set(key, value):
    return lambda c: c["params"].update({key: value})


def _drop_word(c):
    c["dico_id2word"].pop(len(c["dico_id2word"]) - 1)
    c["dico_word2id"] = {w: i for i, w in c["dico_id2word"].items()}


def _extra_layer(c):
    c["model"].update({k.replace(".0.", ".1."): v for k, v in c["model"].items() if ".0." in k})


CASES = {  # name: (kind, edit, words the message must hold)
    "params without emb_dim": ("mlm", _drop("emb_dim"), ["params lacks emb_dim"]),
    "no params": ("mlm", lambda c: c.pop("params"), ["no 'params'"]),
    "adaptive softmax": ("mlm", _set("asm", True), ["adaptive softmax (asm)", "not supported"]),
    "memory layers": ("mlm", _set("use_memory", True), ["use_memory", "not supported"]),
    "attention_setting v2": ("mass", _set("attention_setting", "v2"), ["attention_setting 'v2'"]),
    "dictionary smaller than the embeddings": ("mlm", _drop_word, ["dictionary has", "rows"]),
    "n_words disagrees": ("mlm", _set("n_words", 7), ["n_words=7"]),
    "emb_dim disagrees": ("mlm", _set("emb_dim", 32), ["weights do not fit params", "size mismatch"]),
    "not a state dict": ("mlm", lambda c: c.update(model={"embeddings.weight": [1.0]}), ["not a state dict"]),
    "a layer params do not declare": ("mlm", _extra_layer, ["params and weights disagree"]),
    "language embeddings off but stored": ("mlm", _set("use_lang_emb", False), ["lang_embeddings present"]),
    "no dictionary": ("mlm", lambda c: c.pop("dico_id2word"), ["dico_id2word"]),
    "no state dict": ("mlm", lambda c: c.pop("model"), ["no 'model' or 'encoder'"]),
    "params as a Namespace": ("mlm", lambda c: c.update(params=argparse.Namespace(**c["params"])),
                              ["argparse.Namespace", "allow-list"]),
}


@pytest.mark.parametrize("name", CASES)
def test_refused_checkpoints(name, tiny, tmp_path, capsys):
    kind, fn, words = CASES[name]
    msg = _refused(capsys, tmp_path, _edit(tiny[kind], tmp_path, fn), tiny[kind]["codes"])
    assert all(w in msg for w in words), msg


@pytest.mark.parametrize("content,words", [
    (b"t h 100\nth e</w>\n\xff\xfe 3\n", ["not UTF-8"]),
    (b"t h 100\nthe\n", ["line 2", "not a BPE merge"]),
    (b"t h many\n", ["line 1"]),
    (b"#version: 0.2\n\n", ["no BPE merges"]),
])
def test_refused_codes(content, words, tiny, tmp_path, capsys):
    (tmp_path / "codes").write_bytes(content)
    msg = _refused(capsys, tmp_path, tiny["mlm"]["checkpoint"], tmp_path / "codes")
    assert all(w in msg for w in words), msg


def test_subword_nmt_codes_are_accepted(tiny, tmp_path):
    """subword-nmt's own layout (a #version header, two columns) works as well as fastBPE's."""
    lines = tiny["mlm"]["codes"].read_text(encoding="utf-8").splitlines()
    (tmp_path / "codes").write_text("#version: 0.2\n" + "".join(" ".join(x.split()[:2]) + "\n" for x in lines))
    assert main(["convert", "xlm", "--input", str(tiny["mlm"]["checkpoint"]), "--codes", str(tmp_path / "codes"),
                 "--out", str(tmp_path / "out")]) == 0
