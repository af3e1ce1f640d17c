"""The one config system: YAML -> dataclasses, overrides, unknown keys."""

from dataclasses import dataclass, field

import pytest

from xling.config import apply_overrides, from_dict, load_config, to_dict
from xling.errors import XlingError


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
