"""The bad-input table: every subcommand against every family of bad input.

Each row of :data:`ROWS` is one valid invocation of a subcommand plus the roles of its options
(input files, language codes, the model, sizes, numbers, the output). :func:`cases` turns the
roles into cases from the families below; a case expecting an error asserts exit status 2,
exactly one line on stderr (log records counted), no traceback (in-process, any exception
fails the test) and no new file in the output location. ``test_every_subcommand_has_a_row``
walks the parser, so a new subcommand fails the suite until it has its row here.

Families: missing input, directory instead of file (and file instead of directory), empty
input, invalid UTF-8, a NUL byte, CRLF line endings (accepted: same result as LF), a 100k-
character line (accepted), a malformed language code (``../evil``), a well-formed code the
model or tool does not know, the wrong model kind, zero and negative sizes, NaN numbers,
unwritable outputs (a directory where a file goes, a file where a directory goes, a file as
parent), malformed ``--set`` values and ``--device``; for pickled checkpoints: not a checkpoint,
truncated, and one whose unpickling would run ``os.system`` (refused, never run).

``xling convert`` has one sub-command per format; none is registered yet, so the table registers
a test-only ``probe`` format (tests/helpers.py) to cover the command's shared parts.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURE_DB, Workspace
from helpers import (probe_converter, write_checkpoint, write_fairseq_model, write_laser_model, write_lists,
                     write_xlm_model)
from xling.cli import build_parser, main

TEXT = ["In the beginning God created the heaven and the earth.", "And the earth was without form, and void.",
        "And God said, Let there be light: and there was light.", "And God saw the light, that it was good."]
LONG_LINE = "a " * 50_000  # 100,000 characters


@dataclass
class Row:
    command: str  # "evaluate bleu"
    opts: Callable[[Workspace, Path, Path], dict]  # (workspace, inputs dir, output dir) -> {flag: value | None}
    inputs: dict[str, str] = field(default_factory=dict)  # flag -> text | corpus | npy | yaml | db | dir | pickle
    #   | dict (fairseq dict.txt) | file (a binary input of the format's own kind)
    langs: tuple[str, ...] = ()  # flags taking language codes
    unknown_lang: str = "sw"  # a well-formed code this command must refuse
    model: str | None = None  # flag taking a model directory
    sizes: tuple[str, ...] = ()  # flags taking positive integers
    floats: tuple[str, ...] = ()  # flags taking finite numbers
    out: tuple[str, str] | None = None  # (flag, "file" | "dir")
    sets: bool = False  # takes --set KEY=VALUE
    device: bool = False  # takes --device
    empty_ok: bool = False  # an input with no line at all is accepted (else a one-line error)


def _text(d: Path, name: str = "input.txt", lines=TEXT) -> Path:
    p = d / name
    p.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    return p


def _npy(d: Path, name: str, seed: int) -> Path:
    x = np.random.default_rng(seed).standard_normal((40, 8)).astype(np.float32)
    np.save(d / name, x)
    return d / name


def _lists(d: Path) -> Path:
    return write_lists(d / "debian")


def _rows() -> list[Row]:
    quiet = {"--quiet": None}
    return [
        Row("corpus bible", lambda w, i, o: {"--langs": "en,fr", "--db": FIXTURE_DB, "--out": o / "bible", **quiet},
            inputs={"--db": "db"}, langs=("--langs",), out=("--out", "dir")),
        Row("corpus debian-descriptions",
            lambda w, i, o: {"--langs": "en,de", "--lists": _lists(i), "--out": o / "deb", **quiet},
            inputs={"--lists": "dir"}, langs=("--langs",), unknown_lang="", sizes=("--min-words", "--max-words"),
            out=("--out", "dir")),
        Row("corpus import", lambda w, i, o: {"--lang": "de", "--train": _text(i), "--format": "text", "--out": o / "c"},
            inputs={"--train": "text"}, langs=("--lang",), unknown_lang="", out=("--out", "dir")),
        Row("vocab", lambda w, i, o: {"--corpus": w.corpus, "--langs": "en,fr", "--size": "300", "--out": o / "v"},
            inputs={"--corpus": "corpus"}, langs=("--langs",), sizes=("--size", "--max-sentences"),
            floats=("--alpha", "--character-coverage"), out=("--out", "dir")),
        Row("train", lambda w, i, o: {"--config": w.train_config, "--out": o / "run"},
            inputs={"--config": "yaml"}, out=("--out", "dir"), sets=True),
        Row("classify train", lambda w, i, o: {"--config": w.classify_config, "--out": o / "run"},
            inputs={"--config": "yaml"}, out=("--out", "dir"), sets=True),
        Row("classify predict", lambda w, i, o: {"--model": w.classifier, "--input": _text(i), "--lang": "fr",
                                                  "--out": o / "labels.txt"},
            inputs={"--input": "text"}, langs=("--lang",), model="--model", sizes=("--max-tokens", "--batch-size"),
            out=("--out", "file"), empty_ok=True),
        Row("evaluate xlm", lambda w, i, o: {"--model": w.xlm, "--corpus": w.corpus, "--langs": "en", "--pairs": "en-fr",
                                              "--out": o / "x.json"},
            inputs={"--corpus": "corpus"}, langs=("--langs",), model="--model", out=("--out", "file")),
        Row("evaluate bleu", lambda w, i, o: {"--hyp": _text(i), "--ref": _text(i, "ref.txt"), "--lang": "en",
                                               "--out": o / "bleu.json"},
            inputs={"--hyp": "text", "--ref": "text"}, langs=("--lang",), unknown_lang="xx", out=("--out", "file")),
        Row("evaluate rouge", lambda w, i, o: {"--hyp": _text(i), "--ref": _text(i, "ref.txt"), "--lang": "en",
                                                "--out": o / "rouge.json"},
            inputs={"--hyp": "text", "--ref": "text"}, langs=("--lang",), unknown_lang="qq", out=("--out", "file")),
        Row("evaluate mining", lambda w, i, o: {"--src-emb": _npy(i, "a.npy", 0), "--tgt-emb": _npy(i, "b.npy", 1),
                                                 "--out": o / "m.json", "--plot": o / "m.png"},
            inputs={"--src-emb": "npy", "--tgt-emb": "npy"}, sizes=("--k", "--nprobe"), floats=("--dev-fraction",),
            out=("--out", "file")),
        Row("evaluate mining", lambda w, i, o: {"--model": w.laser, "--corpus": w.corpus, "--pairs": "en-fr",
                                                 "--split": "train", "--out": o / "m.json"},
            inputs={"--corpus": "corpus"}, langs=("--pairs",), model="--model", sizes=("--batch-size", "--k"),
            out=("--out", "file")),
        Row("evaluate classification", lambda w, i, o: {"--model": w.classifier, "--data": w.corpus,
                                                         "--langs": "en,fr", "--out": o / "c.json", **quiet},
            inputs={"--data": "corpus"}, langs=("--langs", "--source"), model="--model",
            sizes=("--max-tokens", "--batch-size"), out=("--out", "file")),
        Row("translate", lambda w, i, o: {"--model": w.s2s, "--src-lang": "en", "--tgt-lang": "fr", "--input": _text(i),
                                           "--output": o / "t.txt", "--beam": "2", "--max-len-a": "0",
                                           "--max-len-b": "3", **quiet},
            inputs={"--input": "text"}, langs=("--src-lang", "--tgt-lang"), model="--model",
            sizes=("--beam", "--batch-size", "--max-tokens"), floats=("--lenpen", "--max-len-a"),
            out=("--output", "file"), device=True, empty_ok=True),
        Row("generate", lambda w, i, o: {"--model": w.s2s, "--lang": "en", "--input": _text(i), "--output": o / "g.txt",
                                          "--beam": "1", "--max-len-a": "0", "--max-len-b": "3", **quiet},
            inputs={"--input": "text"}, langs=("--lang",), model="--model", sizes=("--beam", "--n-best"),
            floats=("--lenpen",), out=("--output", "file"), device=True, empty_ok=True),
        Row("embed", lambda w, i, o: {"--model": w.laser, "--lang": "en", "--input": _text(i), "--out": o / "e.npy",
                                       **quiet},
            inputs={"--input": "text"}, langs=("--lang",), model="--model", sizes=("--batch-size", "--chunk"),
            out=("--out", "file"), device=True),
        Row("mine", lambda w, i, o: {"--model": w.laser, "--src": _text(i), "--src-lang": "en",
                                      "--tgt": _text(i, "tgt.txt", TEXT[::-1]), "--tgt-lang": "fr",
                                      "--out": o / "pairs.tsv", **quiet},
            inputs={"--src": "text", "--tgt": "text"}, langs=("--src-lang", "--tgt-lang"), model="--model",
            sizes=("--k", "--batch-size", "--chunk-size", "--nprobe"), floats=("--threshold",),
            out=("--out", "file")),
        Row("mine-corpus", _mine_corpus_opts, inputs={"--config": "yaml"}, sizes=("--workers",),
            out=("--out", "dir"), sets=True),
        Row("convert probe", lambda w, i, o: {"--input": write_checkpoint(i / "checkpoint.pt"), "--out": o / "probe"},
            inputs={"--input": "pickle"}, out=("--out", "dir")),
        Row("convert to-fairseq", _exportable_opts, inputs={"--input": "dir"}, model="--input", out=("--out", "dir")),
        Row("convert fairseq", _fairseq_opts, inputs={"--input": "pickle", "--dict": "dict", "--spm": "file"},
            langs=("--langs",), unknown_lang="", out=("--out", "dir")),
        Row("convert laser", _laser_opts, inputs={"--input": "pickle", "--spm": "file", "--cvocab": "dict"},
            langs=("--langs",), unknown_lang="", out=("--out", "dir")),
        Row("convert hf", _hf_opts, inputs={"--input": "dir"}, langs=("--langs",), unknown_lang="",
            out=("--out", "dir")),
        Row("convert to-hf", lambda w, i, o: {"--input": w.xlm, "--out": o / "hf"}, model="--input",
            out=("--out", "dir")),
        Row("convert xlm", _xlm_opts, inputs={"--input": "pickle", "--codes": "file"}, langs=("--langs",),
            unknown_lang="", out=("--out", "dir")),
        Row("export onnx", lambda w, i, o: {"--model": w.laser, "--out": o / "onnx", **quiet}, model="--model",
            out=("--out", "dir")),
    ]


def _mine_corpus_opts(w, i, o) -> dict:
    import yaml

    cfg = {"model": str(w.laser), "src": {"lang": "en", "files": [str(_text(i))]},
           "tgt": {"lang": "fr", "files": [str(_text(i, "tgt.txt", TEXT[::-1]))]}, "mining": {"k": 2}}
    (i / "mine.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return {"--config": i / "mine.yaml", "--out": o / "run", "--workers": "1", "--quiet": None}


def _exportable_opts(w, i, o) -> dict:
    from xling.convert.fairseq import convert

    files = write_fairseq_model(i / "fairseq")
    return {"--input": convert(files["checkpoint"], files["dict"], files["spm"], i / "xling"), "--out": o / "exported"}


def _fairseq_opts(w, i, o) -> dict:
    files = write_fairseq_model(i / "fairseq")
    return {"--input": files["checkpoint"], "--dict": files["dict"], "--spm": files["spm"], "--langs": "en,fr",
            "--out": o / "converted"}


def _xlm_opts(w, i, o) -> dict:
    files = write_xlm_model(i / "xlm", d_model=16, layers=1)
    return {"--input": files["checkpoint"], "--codes": files["codes"], "--langs": "en,fr", "--out": o / "converted"}


def _hf_opts(w, i, o) -> dict:
    from xling.convert.to_hf import export

    return {"--input": export(w.xlm, i / "hf"), "--langs": "en,fr", "--out": o / "converted"}


def _laser_opts(w, i, o) -> dict:
    files = write_laser_model(i / "laser", "laser3")  # its .cvocab is checked against the embedding
    return {"--input": files["checkpoint"], "--spm": files["spm"], "--cvocab": files["cvocab"], "--langs": "en,fr",
            "--out": o / "converted"}


ROWS = _rows()
WRONG_KIND = {"classify predict": "s2s", "convert to-hf": "s2s", "evaluate xlm": "laser", "evaluate mining": "s2s",
              "evaluate classification": "s2s", "translate": "laser", "generate": "laser", "embed": "classifier",
              "mine": "xlm", "convert to-fairseq": "xlm", "export onnx": "s2s"}


@pytest.fixture(autouse=True)
def _probe_format(monkeypatch):
    """``xling convert probe``, registered for this module's tests only."""
    from xling.convert import registry

    registry.converters()  # the real formats are imported first
    monkeypatch.setitem(registry._CONVERTERS, "probe", probe_converter())


class _Payload:
    """Unpickled with plain pickle, it would run a shell command that creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


@dataclass
class Case:
    family: str
    expect: str  # "error" | "ok" | "same" (ok, and the output equals the unchanged command's)
    mutate: Callable[[dict, Workspace, Path, Path], None]  # edits the options in place (may write inputs)


def _corrupt_corpus(src: Path, dst: Path, data: bytes) -> Path:
    shutil.copytree(src, dst)
    for p in dst.glob("*.en"):
        p.write_bytes(p.read_bytes() + data)
    return dst


def _input_cases(flag: str, kind: str, row: Row) -> list[Case]:
    def put(content: bytes | None = None, make_dir: bool = False, name: str = "bad"):
        def mutate(opts, w, i, o):
            p = i / f"{name}{Path(str(opts[flag])).suffix}"
            if make_dir:
                p.mkdir()
            elif content is not None:
                p.write_bytes(content)
            opts[flag] = p

        return mutate

    out = [Case("missing input", "error", put()), Case("directory instead of file", "error", put(make_dir=True))]
    if kind in ("corpus", "dir"):
        out = [Case("missing input", "error", put()), Case("file instead of directory", "error", put(b"x\n"))]
        if kind == "corpus":
            out.append(Case("invalid UTF-8 in the corpus", "error",
                            lambda opts, w, i, o: opts.update({flag: _corrupt_corpus(opts[flag], i / "bad", b"\xff\n")})))
            out.append(Case("NUL byte in the corpus", "error",
                            lambda opts, w, i, o: opts.update({flag: _corrupt_corpus(opts[flag], i / "bad", b"a\0b\n")})))
        return out
    if kind == "npy":
        return out + [Case("empty file", "error", put(b"")), Case("not a .npy file", "error", put(b"1 2 3\n"))]
    if kind == "db":
        return out + [Case("empty file", "error", put(b"")), Case("not a database", "error", put(b"garbage\n" * 50))]
    if kind == "file":  # a binary input of the format's own kind (e.g. a SentencePiece model)
        return out + [Case("empty file", "error", put(b"")), Case("not the expected format", "error", put(b"\x00x" * 40))]
    if kind == "dict":  # a fairseq dict.txt
        return out + [Case("empty file", "error", put(b"")), Case("invalid UTF-8", "error", put(b"caf\xe9 3\n")),
                      Case("NUL byte", "error", put(b"a\0b 3\n")), Case("malformed line", "error", put(b"a 3\nb\n")),
                      Case("a dictionary of another size", "error", put(b"a 3\nb 2\n"))]
    if kind == "pickle":
        def truncated(opts, w, i, o):
            data = Path(opts[flag]).read_bytes()
            (i / "truncated.pt").write_bytes(data[: len(data) // 2])
            opts[flag] = i / "truncated.pt"

        def payload(opts, w, i, o):  # run, it would leave a file in the output location
            import torch

            torch.save({"model": _Payload(o / "pwned")}, i / "payload.pt")
            opts[flag] = i / "payload.pt"

        return out + [Case("empty file", "error", put(b"")), Case("not a checkpoint", "error", put(b"1 2 3\n")),
                      Case("truncated checkpoint", "error", truncated), Case("pickle calling os.system", "error", payload)]
    # text-like inputs: text files and YAML configs
    def edit(fn):
        def mutate(opts, w, i, o):
            data = Path(opts[flag]).read_bytes()
            p = i / f"edited{Path(str(opts[flag])).suffix}"
            p.write_bytes(fn(data))
            opts[flag] = p

        return mutate

    out += [
        Case("empty file", "ok" if row.empty_ok else "error", put(b"")),
        Case("invalid UTF-8", "error", edit(lambda b: b + b"caf\xe9\n")),
        Case("NUL byte", "error", edit(lambda b: b.replace(b"\n", b"\0\n", 1))),
        Case("CRLF line endings", "same", edit(lambda b: b.replace(b"\n", b"\r\n"))),
    ]
    if kind == "text":
        out.append(Case("100k-character line", "ok", edit(lambda b: (LONG_LINE + "\n").encode() + b.split(b"\n", 1)[1])))
    if kind == "yaml":
        out += [Case("YAML syntax error", "error", edit(lambda b: b + b"trainer: [unclosed\n")),
                Case("YAML python tag", "error", edit(lambda b: b + b"evil: !!python/object/apply:os.system [ls]\n"))]
    return out


def _set(flag: str, value) -> Callable:
    return lambda o, w, i, d: o.update({flag: value})


def cases(row: Row) -> list[Case]:
    out: list[Case] = []
    for flag, kind in row.inputs.items():
        out += [Case(f"{flag}: {c.family}", c.expect, c.mutate) for c in _input_cases(flag, kind, row)]
    for flag in row.langs:
        bad = "../evil-en" if flag == "--pairs" else "../evil"
        out.append(Case(f"{flag}: malformed language code", "error", _set(flag, bad)))
        out.append(Case(f"{flag}: path in a language code", "error", _set(flag, "x/../../escaped")))
        if row.unknown_lang:
            code = f"{row.unknown_lang}-en" if flag == "--pairs" else row.unknown_lang
            out.append(Case(f"{flag}: unknown language", "error", _set(flag, code)))
    if row.model:
        wrong = WRONG_KIND[row.command]
        out.append(Case("wrong model kind", "error", lambda o, w, i, d: o.update({row.model: getattr(w, wrong)})))
        out.append(Case("model: not a directory", "error", lambda o, w, i, d: o.update({row.model: _text(i, "m.txt")})))
    for flag in row.sizes:
        out += [Case(f"{flag} 0", "error", _set(flag, "0")), Case(f"{flag} -1", "error", _set(flag, "-1")),
                Case(f"{flag} not a number", "error", _set(flag, "many"))]
    for flag in row.floats:
        out += [Case(f"{flag} nan", "error", _set(flag, "nan")), Case(f"{flag} inf", "error", _set(flag, "inf"))]
    if row.out:
        flag, kind = row.out

        def parent_file(o, w, i, d):
            (d / "afile").write_text("x\n")
            o[flag] = d / "afile" / "out"

        def dir_for_file(o, w, i, d):
            (d / "adir").mkdir()
            o[flag] = d / "adir"

        def file_for_dir(o, w, i, d):
            (d / "afile").write_text("x\n")
            o[flag] = d / "afile"

        out.append(Case(f"{flag}: parent is a file", "error", parent_file))
        out.append(Case(f"{flag}: an existing " + ("directory" if kind == "file" else "file"), "error",
                        dir_for_file if kind == "file" else file_for_dir))
    if row.sets:
        for value in ("trainer.lr=[1,", "trainer.lr=\tx: y", "trainer.lr=!!python/object/apply:os.system [ls]",
                      "trainer.lr=nan", "trainer.lr=-inf", "trainer.max_steps=0.5", "nosuchsection.x=1", "=3",
                      "masking.p_mask=0.95"):
            out.append(Case(f"--set {value!r}", "error", lambda o, w, i, d, v=value: o.update({"--set": v})))
    if row.device:
        out.append(Case("--device banana", "error", _set("--device", "banana")))
        out.append(Case("--device cuda:7", "error", _set("--device", "cuda:7")))
    return out


def _argv(command: str, opts: dict) -> list[str]:
    argv = command.split()
    for flag, value in opts.items():
        argv += [flag] if value is None else [flag, str(value)]
    return argv


def _files(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*")}


def run(argv: list[str], capsys, caplog) -> tuple[int, list[str], str]:
    """Exit status, stderr lines (log records at WARNING and above included), stdout."""
    capsys.readouterr()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        rc = main(argv)
    cap = capsys.readouterr()
    lines = [ln for ln in cap.err.splitlines() if ln.strip()]
    lines += [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    return rc, lines, cap.out


PARAMS = [pytest.param(r, c, id=f"{r.command} [{k}] {c.family}")
          for k, r in enumerate(ROWS) for c in cases(r)]


def _output(row: Row, opts: dict, stdout: str) -> bytes | str | dict:
    if row.out and Path(opts[row.out[0]]).is_file():
        path = Path(opts[row.out[0]])
        if path.suffix == ".json":  # results name their input files: compare the rest
            return {k: v for k, v in json.loads(path.read_text(encoding="utf-8")).items() if k != "files"}
        return path.read_bytes()
    return stdout


@pytest.mark.parametrize("row,case", PARAMS)
def test_bad_input(row: Row, case: Case, workspace, tmp_path, capsys, caplog):
    ins, outs = tmp_path / "in", tmp_path / "out"
    ins.mkdir()
    outs.mkdir()
    opts = row.opts(workspace, ins, outs)
    base = dict(opts)
    case.mutate(opts, workspace, ins, outs)
    before = _files(outs)
    rc, err, stdout = run(_argv(row.command, opts), capsys, caplog)
    if case.expect == "error":
        assert rc == 2, (rc, err)
        assert len(err) == 1 and err[0].startswith("xling: error: "), err
        assert "Traceback" not in err[0]
        assert _files(outs) == before, "a failed command left files behind"
    else:
        assert rc == 0, (rc, err)
        if case.family.endswith("100k-character line") and row.model:  # cut to the model's length: said once
            assert sum("longer than" in line for line in err) == 1, err
        if case.expect == "same":
            got = _output(row, opts, stdout)
            ref_out = tmp_path / "ref"
            ref_out.mkdir()
            base2 = row.opts(workspace, ins, ref_out)
            base2 = {k: (v if k in row.inputs else base2[k]) for k, v in base.items()}
            rc2, err2, stdout2 = run(_argv(row.command, base2), capsys, caplog)
            assert rc2 == 0, err2
            if row.out and row.out[1] == "file":
                assert got == _output(row, base2, stdout2)


def _leaves(parser, prefix=()) -> set[str]:
    import argparse

    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {" ".join(prefix)}
    return set().union(*(_leaves(p, (*prefix, name)) for a in subs for name, p in a.choices.items()))


def test_every_subcommand_has_a_row():
    assert _leaves(build_parser()) == {r.command for r in ROWS}
