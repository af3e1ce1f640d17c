"""xling/convert/registry.py and `xling convert` (xling/commands/convert.py): one sub-command per
registered format, --list, unknown formats as one line. No real format exists yet: the tests
register the probe format of tests/helpers.py."""

from __future__ import annotations

import json

import pytest

from helpers import probe_converter, write_checkpoint
from xling.cli import main
from xling.convert import registry
from xling.convert.registry import Converter, converter, converters, register_converter
from xling.errors import XlingError


@pytest.fixture
def probe(monkeypatch):
    converters()  # the real formats first
    monkeypatch.setitem(registry._CONVERTERS, "probe", probe_converter())


@pytest.fixture
def no_formats(monkeypatch):
    converters()
    monkeypatch.setattr(registry, "_CONVERTERS", {})


def _run(argv, capsys) -> tuple[int, list[str], str]:
    capsys.readouterr()
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.err.splitlines(), cap.out


def test_registered_converters_are_well_formed():
    for name, c in converters().items():
        assert c.name == name and c.help and callable(c.run) and callable(c.add_arguments)


def test_a_name_is_registered_once(monkeypatch):
    monkeypatch.setattr(registry, "_CONVERTERS", {})
    c = probe_converter()
    assert register_converter(c) is c and register_converter(c) is c  # the same object again is fine
    with pytest.raises(ValueError, match="registered twice"):
        register_converter(probe_converter())
    with pytest.raises(ValueError, match="single word"):
        Converter(name="--input", help="x", run=lambda a: 0)


def test_unknown_format_names_the_known_ones(probe):
    with pytest.raises(XlingError, match="did you mean 'probe'"):
        converter("prob")


def test_list_and_unknown_format_on_the_command_line(probe, capsys):
    rc, err, out = _run(["convert", "--list"], capsys)
    assert rc == 0 and not err and any(line.split()[0] == "probe" for line in out.splitlines())
    rc, err, _ = _run(["convert", "prob", "--input", "x.pt", "--out", "o"], capsys)
    assert rc == 2 and len(err) == 1 and "'probe'" in err[0], err
    rc, err, _ = _run(["convert"], capsys)
    assert rc == 2 and err == ["xling: error: convert: name a FORMAT (xling convert --list shows them)"]


def test_without_formats(no_formats, capsys):
    rc, err, out = _run(["convert", "--list"], capsys)
    assert rc == 0 and out.strip() == "no formats are available yet"
    rc, err, _ = _run(["convert", "fairseq", "--input", "x.pt", "--out", "o"], capsys)
    assert rc == 2 and len(err) == 1 and "no formats are available yet" in err[0], err


def test_a_format_runs_with_input_and_out(probe, tmp_path, capsys):
    ckpt = write_checkpoint(tmp_path / "checkpoint.pt")
    rc, err, _ = _run(["convert", "probe", "--input", str(ckpt), "--out", str(tmp_path / "out")], capsys)
    assert rc == 0, err
    assert json.loads((tmp_path / "out" / "tensors.json").read_text()) == {"encoder.embed_tokens.weight": [8, 4]}
    (tmp_path / "afile").write_text("x\n")  # --out is typed: checked before anything is read
    rc, err, _ = _run(["convert", "probe", "--input", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "afile")],
                      capsys)
    assert rc == 2 and len(err) == 1 and "afile" in err[0] and "not a directory" in err[0], err
