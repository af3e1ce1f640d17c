"""xling/convert/pickles.py: other toolkits' pickles load with an allow-list, never with arbitrary code.

The checkpoints are built here with torch.save, laid out as fairseq, XLM and LASER2 write them;
files that need globals off the allow-list are refused with one line naming the global, and a
reduce payload is never run.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from xling.convert import pickles
from xling.convert.pickles import FAIRSEQ, LASER2, XLM, load_checkpoint_pickle
from xling.errors import XlingError


class Custom:
    """A class of this test module: not on any allow-list."""


class Payload:
    """Unpickled with plain pickle, it would run a shell command creating ``marker``."""

    def __init__(self, marker: Path, call=os.system):
        self.marker, self.call = marker, call

    def __reduce__(self):
        return self.call, (f"touch {shlex.quote(str(self.marker))}",)


def _fairseq(path: Path, legacy: bool = False) -> Path:
    """fairseq 0.12 layout: cfg a plain dict whose model section is a Namespace; args None."""
    state = {"args": None,
             "cfg": {"common": {"seed": 1}, "model": argparse.Namespace(_name="transformer", encoder_layers=2),
                     "task": {"_name": "translation", "source_lang": "de"}},
             "model": {"encoder.embed_tokens.weight": torch.arange(6.0).view(3, 2),
                       "encoder.version": torch.tensor([3.0])},
             "optimizer_history": [{"criterion_name": "LabelSmoothedCrossEntropyCriterion", "optimizer_name": "Adam",
                                    "lr_scheduler_state": {"best": 2.5}, "num_updates": 10}],
             "extra_state": {"metrics": {}, "train_iterator": {"epoch": 1}}}
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    return path


def _xlm(path: Path, legacy: bool = True) -> Path:
    """XLM / MASS layout: params a plain dict holding a tensor and a numpy array (trainer.py)."""
    counts = np.array([0, 0, 0, 0, 7, 3])
    params = {"emb_dim": 4, "n_layers": 1, "lang2id": {"de": 0, "en": 1}, "mlm_steps": [("de", None)],
              "pred_probs": torch.FloatTensor([0.8, 0.1, 0.1]),
              "mask_scores": np.maximum(counts, 1) ** -0.5}
    torch.save({"model": {"embeddings.weight": torch.zeros(6, 4)}, "params": params,
                "dico_id2word": {0: "<s>", 1: "</s>"}, "dico_word2id": {"<s>": 0, "</s>": 1},
                "dico_counts": {"<s>": 0, "</s>": 0}}, path, _use_new_zipfile_serialization=not legacy)
    return path


def _refused(path: Path, allow=FAIRSEQ) -> str:
    with pytest.raises(XlingError) as e:
        load_checkpoint_pickle(path, allow=allow)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(path)), msg
    return msg


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_fairseq_checkpoint_with_a_namespace_loads(tmp_path, legacy):
    state = load_checkpoint_pickle(_fairseq(tmp_path / "checkpoint_best.pt", legacy))
    assert isinstance(state["cfg"]["model"], argparse.Namespace) and state["cfg"]["model"].encoder_layers == 2
    w = state["model"]["encoder.embed_tokens.weight"]
    assert w.device.type == "cpu" and torch.equal(w, torch.arange(6.0).view(3, 2))
    assert state["optimizer_history"][0]["num_updates"] == 10


def test_old_fairseq_args_namespace_loads(tmp_path):
    torch.save({"args": argparse.Namespace(arch="transformer_iwslt_de_en"), "model": {}}, tmp_path / "old.pt")
    assert load_checkpoint_pickle(tmp_path / "old.pt")["args"].arch == "transformer_iwslt_de_en"


def test_laser2_layout_needs_no_global(tmp_path):
    torch.save({"params": {"num_embeddings": 8, "padding_idx": 1, "embed_dim": 4, "hidden_size": 4},
                "model": {"embed_tokens.weight": torch.zeros(8, 4)}, "dictionary": {"<s>": 0, "hello": 4}},
               tmp_path / "laser2.pt")
    assert load_checkpoint_pickle(tmp_path / "laser2.pt", allow=LASER2)["params"]["embed_dim"] == 4


def test_namespace_is_refused_when_not_allowed(tmp_path):
    assert "argparse.Namespace" in _refused(_fairseq(tmp_path / "c.pt"), allow=LASER2)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_xlm_params_with_numpy_arrays_load_with_the_numpy_group(tmp_path, legacy):
    path = _xlm(tmp_path / "mlm_tlm.pth", legacy)
    params = load_checkpoint_pickle(path, allow=XLM)["params"]
    np.testing.assert_allclose(params["mask_scores"], np.maximum([0, 0, 0, 0, 7, 3], 1) ** -0.5)
    assert params["mlm_steps"] == [("de", None)] and params["pred_probs"].shape == (3,)
    assert "numpy" in _refused(path, allow=FAIRSEQ)  # numpy is not allowed for fairseq files


def test_numpy_1x_module_names_load(tmp_path):
    """Files written with numpy 1.x (the released XLM / MASS models) name numpy.core.multiarray."""
    raw = _xlm(tmp_path / "new.pth").read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in raw  # the GLOBAL opcode: module, name
    (tmp_path / "old.pth").write_bytes(raw)
    params = load_checkpoint_pickle(tmp_path / "old.pth", allow=XLM)["params"]
    assert params["mask_scores"].dtype == np.float64


def test_numpy_object_arrays_are_refused(tmp_path):
    torch.save({"params": {"x": np.array([Custom()], dtype=object)}}, tmp_path / "obj.pth")
    assert "numpy.dtypes.ObjectDType" in _refused(tmp_path / "obj.pth", allow=XLM)  # before the items are read


def test_custom_class_is_refused_and_named(tmp_path):
    torch.save({"model": {}, "extra": Custom()}, tmp_path / "custom.pt")
    assert f"{Custom.__module__}.Custom" in _refused(tmp_path / "custom.pt")


@pytest.mark.parametrize("call", [os.system, eval, __import__("subprocess").call], ids=["os.system", "eval", "subprocess"])
def test_reduce_payload_is_refused_and_never_run(tmp_path, call):
    marker = tmp_path / "pwned"
    torch.save({"model": Payload(marker, call)}, tmp_path / "evil.pt")
    msg = _refused(tmp_path / "evil.pt", allow=FAIRSEQ + XLM)
    assert ("posix.system" if call is os.system else call.__name__) in msg
    assert not marker.exists()


def _fake_module(monkeypatch, dotted: str, cls_name: str, base=object) -> type:
    """A class importable as ``dotted.cls_name`` (for pickling only), like a toolkit's own class."""
    parts = dotted.split(".")
    for k in range(1, len(parts) + 1):
        monkeypatch.setitem(sys.modules, ".".join(parts[:k]), types.ModuleType(".".join(parts[:k])))
    cls = type(cls_name, (base,), {"__module__": dotted})
    setattr(sys.modules[dotted], cls_name, cls)
    return cls


def test_xlm_attrdict_is_refused_and_named(tmp_path, monkeypatch):
    """XLM never pickles its AttrDict (params are saved as a plain dict); a file that does is refused."""

    def init(self, *a, **kw):
        dict.__init__(self, *a, **kw)
        self.__dict__ = self

    attrdict = _fake_module(monkeypatch, "src.utils", "AttrDict", dict)
    attrdict.__init__ = init
    torch.save({"params": attrdict(emb_dim=4)}, tmp_path / "attr.pth")
    assert "src.utils.AttrDict" in _refused(tmp_path / "attr.pth", allow=XLM)


def test_omegaconf_config_is_refused_with_a_way_out(tmp_path, monkeypatch):
    dictconfig = _fake_module(monkeypatch, "omegaconf.dictconfig", "DictConfig")
    torch.save({"cfg": dictconfig(), "model": {}}, tmp_path / "hydra_era.pt")
    msg = _refused(tmp_path / "hydra_era.pt")
    assert "omegaconf.dictconfig.DictConfig" in msg and "fairseq 0.12" in msg


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("keep", [0.5, 0.05, 0.98])
def test_truncated_file_is_one_line(tmp_path, legacy, keep):
    data = _fairseq(tmp_path / "full.pt", legacy).read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: int(len(data) * keep)])
    assert "not a readable checkpoint (truncated or corrupt)" in _refused(tmp_path / "cut.pt")


@pytest.mark.parametrize("content", [b"hello world\n", os.urandom(600), b"\x80\x02}q\x00."],
                         ids=["text", "random", "plain pickle"])
def test_not_a_checkpoint_is_one_line(tmp_path, content):
    (tmp_path / "x.pt").write_bytes(content)
    assert "not a readable checkpoint" in _refused(tmp_path / "x.pt")


def test_missing_directory_empty_and_non_dict(tmp_path):
    assert "no such file" in _refused(tmp_path / "nope.pt")
    (tmp_path / "d.pt").mkdir()
    assert "is a directory" in _refused(tmp_path / "d.pt")
    (tmp_path / "e.pt").write_bytes(b"")
    assert "empty file" in _refused(tmp_path / "e.pt")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    assert "holds a list" in _refused(tmp_path / "list.pt")


def test_always_weights_only(tmp_path, monkeypatch):
    calls = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    load_checkpoint_pickle(_fairseq(tmp_path / "c.pt"))
    _refused(tmp_path / "c.pt", allow=LASER2)
    assert calls and all(kw.get("weights_only") is True and kw.get("map_location") == "cpu" for kw in calls)


def test_allow_list_is_only_what_the_groups_name():
    with pytest.raises(ValueError, match="unknown allow group"):
        pickles.allowed_globals(["everything"])
    names = {g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}"
             for g in pickles.allowed_globals(pickles.ALLOW_GROUPS)}
    assert not any(n.startswith(("os.", "posix.", "builtins.", "subprocess.", "omegaconf.")) for n in names), names
    assert "argparse.Namespace" in names and "numpy.core.multiarray._reconstruct" in names
    assert not any("Object" in n or "Str" in n for n in names)
