"""The one config system: YAML -> dataclasses, overrides, unknown keys."""

from dataclasses import dataclass, field

import pytest

from xling.config import apply_overrides, from_dict, load_config, to_dict
from xling.errors import XlingError

from conftest import ROOT


@dataclass
class Inner:
    lr: float = 1e-3
    steps: int = 10
    langs: list[str] = field(default_factory=list)


@dataclass
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    flag: bool = False


def test_nested_from_dict_and_back():
    cfg = from_dict(Outer, {"name": "y", "inner": {"lr": 1, "langs": ["en", "de"]}})
    assert cfg.inner.lr == 1.0 and isinstance(cfg.inner.lr, float)
    assert cfg.inner.langs == ["en", "de"] and cfg.inner.steps == 10
    assert to_dict(cfg) == {"name": "y", "inner": {"lr": 1.0, "steps": 10, "langs": ["en", "de"]}, "flag": False}


def test_unknown_key_names_key_and_nearest():
    with pytest.raises(XlingError) as e:
        from_dict(Outer, {"inner": {"stesp": 3}})
    msg = str(e.value)
    assert "inner.stesp" in msg and "inner.steps" in msg and "\n" not in msg


def test_wrong_type_is_an_error():
    with pytest.raises(XlingError, match="inner.steps"):
        from_dict(Outer, {"inner": {"steps": "many"}})


def test_overrides_parse_yaml_values(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: a\ninner:\n  steps: 3\n")
    cfg = load_config(Outer, p, ["inner.lr=3e-4", "inner.langs=[en,fr]", "flag=true"])
    assert cfg.inner.lr == 3e-4 and cfg.inner.langs == ["en", "fr"] and cfg.flag is True and cfg.inner.steps == 3
    with pytest.raises(XlingError, match="key=value"):
        apply_overrides({}, ["novalue"])
    with pytest.raises(XlingError, match="inner.bogus"):
        load_config(Outer, p, ["inner.bogus=1"])


def test_bad_yaml_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("a: [1, 2\n")
    with pytest.raises(XlingError, match="invalid YAML"):
        load_config(Outer, p)
    with pytest.raises(XlingError, match="no such config"):
        load_config(Outer, tmp_path / "missing.yaml")


@pytest.mark.parametrize("path", sorted((ROOT / "configs").rglob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    """Each config in configs/ is a valid TrainConfig (a classify_* one, a ClassifyConfig; a mine_* one, a
    MineCorpusConfig), with its model section a valid model config for its model_type."""
    from xling.classification.train import ClassifyConfig
    from xling.tasks.train import TrainConfig, check_config

    if path.name.startswith("classify"):
        load_config(ClassifyConfig, path)
        return
    if path.name.startswith("mine_"):  # xling mine-corpus
        from xling.mining.pipeline import MineCorpusConfig

        load_config(MineCorpusConfig, path)
        return
    from xling.models.config import EncoderConfig, Seq2SeqConfig

    cfg = load_config(TrainConfig, path)
    if cfg.data.corpus and (cfg.data.vocab or cfg.init):  # the benchmark configs get theirs from the script
        check_config(cfg)
    if not cfg.init and cfg.model_type in ("encoder", "seq2seq"):
        cls = Seq2SeqConfig if cfg.model_type == "seq2seq" else EncoderConfig
        from_dict(cls, {**cfg.model, "vocab_size": 100, "n_langs": 2}, "model.")
