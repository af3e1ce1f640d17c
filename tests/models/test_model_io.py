"""save_pretrained / from_pretrained: bit-exact round trip and one-line errors."""

import json

import pytest
import torch

from xling.errors import XlingError
from xling.models.config import EncoderConfig
from xling.models.encoder import TransformerEncoder
from xling.models.io import read_model_config


class FakeVocab:
    def save(self, dir):
        (dir / "vocab.json").write_text('{"tokens": 100}', encoding="utf-8")


def make(pre_norm=True, tie=True):
    torch.manual_seed(0)
    cfg = EncoderConfig(vocab_size=100, n_langs=3, d_model=32, n_layers=2, n_heads=4, d_ff=64,
                        pre_norm=pre_norm, tie_embeddings=tie)
    return TransformerEncoder(cfg).eval()


@pytest.fixture
def saved(tmp_path):
    m = make()
    with torch.no_grad():  # make the LM bias non-trivial so it is checked too
        m.lm_head.bias.normal_()
    d = m.save_pretrained(tmp_path / "model", vocab=FakeVocab())
    return m, d


@pytest.mark.parametrize("pre_norm,tie", [(True, True), (False, False)])
def test_round_trip_bit_exact(tmp_path, pre_norm, tie):
    m = make(pre_norm, tie)
    d = m.save_pretrained(tmp_path / "m")
    m2 = TransformerEncoder.from_pretrained(d).eval()
    assert m2.config == m.config
    s1, s2 = m.state_dict(), m2.state_dict()
    assert s1.keys() == s2.keys()
    for k in s1:
        assert torch.equal(s1[k], s2[k]), k
    assert (m2.lm_head.weight is m2.tok_emb.weight) == tie
    t = torch.randint(5, 100, (2, 6))
    assert torch.equal(m.lm_logits(m(t)), m2.lm_logits(m2(t)))


def test_directory_contents(saved):
    m, d = saved
    assert sorted(p.name for p in d.iterdir()) == ["checksums.json", "config.json", "model.safetensors", "vocab.json"]
    meta = read_model_config(d)
    assert meta["model_type"] == "transformer_encoder"
    assert meta["config"]["d_model"] == 32
    assert not [p for p in d.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_overwrite_replaces_whole_dir(saved, tmp_path):
    m, d = saved
    m.save_pretrained(d)  # no vocab this time
    assert not (d / "vocab.json").exists()


def test_truncated_weights(saved):
    _, d = saved
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-100])
    with pytest.raises(XlingError, match=r"model\.safetensors.*sha256"):
        TransformerEncoder.from_pretrained(d)


def test_bit_flip(saved):
    _, d = saved
    w = d / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-10] ^= 0x01
    w.write_bytes(bytes(data))
    with pytest.raises(XlingError, match=r"model\.safetensors.*sha256"):
        TransformerEncoder.from_pretrained(d)


def test_corrupt_weights_with_matching_checksum(saved):
    _, d = saved
    w = d / "model.safetensors"
    w.write_bytes(b"not a safetensors file")
    from xling.utils.io import sha256_file
    (d / "checksums.json").write_text(json.dumps({"model.safetensors": sha256_file(w)}))
    with pytest.raises(XlingError, match=r"model\.safetensors: cannot load weights"):
        TransformerEncoder.from_pretrained(d)


def _edit_config_unrecorded(d, key, value):
    """Edit config.json of a directory whose checksums.json lists only the weights (as saved
    before config and vocabulary were covered), so the config itself is checked."""
    from xling.utils.io import sha256_file

    (d / "checksums.json").write_text(json.dumps({"model.safetensors": sha256_file(d / "model.safetensors")}))
    meta = json.loads((d / "config.json").read_text())
    meta["config"][key] = value
    (d / "config.json").write_text(json.dumps(meta))


def test_edited_config_is_a_checksum_error(saved):
    _, d = saved
    meta = json.loads((d / "config.json").read_text())
    meta["config"]["d_ff"] = 48
    (d / "config.json").write_text(json.dumps(meta))
    with pytest.raises(XlingError, match=r"config\.json: changed since the model was saved") as e:
        TransformerEncoder.from_pretrained(d)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("key,value,match", [
    ("d_modle", 32, r"config\.json.*d_modle"),  # an unknown key
    ("d_ff", 48, r"model\.safetensors: cannot load weights.*size mismatch"),  # shapes that do not fit
])
def test_bad_config_unrecorded(saved, key, value, match):
    _, d = saved
    _edit_config_unrecorded(d, key, value)
    with pytest.raises(XlingError, match=match) as e:
        TransformerEncoder.from_pretrained(d)
    assert "\n" not in str(e.value)


def test_bad_json_missing_files_wrong_type(saved, tmp_path):
    _, d = saved
    (d / "checksums.json").write_text("{oops")
    with pytest.raises(XlingError, match=r"checksums\.json: invalid JSON"):
        TransformerEncoder.from_pretrained(d)
    (d / "checksums.json").unlink()
    with pytest.raises(XlingError, match=r"checksums\.json: missing"):
        TransformerEncoder.from_pretrained(d)
    meta = json.loads((d / "config.json").read_text())
    meta["model_type"] = "lstm"
    (d / "config.json").write_text(json.dumps(meta))
    with pytest.raises(XlingError, match=r"config\.json: model_type 'lstm'"):
        TransformerEncoder.from_pretrained(d)
    with pytest.raises(XlingError, match="no such model directory"):
        TransformerEncoder.from_pretrained(tmp_path / "nope")


class _FlatBuffer(torch.nn.Module):
    """Two weights that are views of one flat buffer (as cuDNN lays out an LSTM's weights on a
    GPU), and a tied pair: safetensors' save_model refuses the first case."""

    def __init__(self) -> None:
        super().__init__()
        buf = torch.randn(12)
        self.a = torch.nn.Parameter(buf[:5])
        self.b = torch.nn.Parameter(buf[5:])
        self.emb = torch.nn.Embedding(4, 3)
        self.out = torch.nn.Linear(3, 4, bias=False)
        self.out.weight = self.emb.weight


def test_save_load_weights_of_a_flat_buffer_and_tied_weights(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_model

    from xling.models.io import load_weights, save_weights

    m = _FlatBuffer()
    with pytest.raises(RuntimeError, match="entire storage"):
        save_model(m, str(tmp_path / "refused.safetensors"))
    save_weights(m, tmp_path / "w.safetensors")
    with safe_open(str(tmp_path / "w.safetensors"), "pt") as f:
        assert sorted(f.keys()) == ["a", "b", "emb.weight"]  # the tied pair stored once
        assert f.metadata() == {"out.weight": "emb.weight"}
    m2 = _FlatBuffer()
    flat = m2.a.data_ptr()
    load_weights(m2, tmp_path / "w.safetensors")
    for (n, p), q in zip(m.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(p, q), n
    assert m2.out.weight is m2.emb.weight and m2.a.data_ptr() == flat  # loaded in place
    m3 = torch.nn.Linear(3, 4)
    with pytest.raises(ValueError, match="missing weight 'weight'"):
        load_weights(m3, tmp_path / "w.safetensors")
