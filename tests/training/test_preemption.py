"""Stopping and resuming training: SIGTERM / SIGINT stop cleanly and resume bit-identically,
config errors leave no files, stale temporaries and damaged checkpoints are handled on
--resume, a resumed run with another config says what changed."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ddp_worker import signal_on_call
from test_trainer import assert_same_params, config, run, train_lines
from xling.cli import main
from xling.errors import XlingError
from xling.training import preemption
from xling.training.preemption import Stopped, stop_message
from xling.training.resume import config_changes
from xling.utils.io import _HOST

from conftest import ROOT, TINY_CONFIG

TINY = str(TINY_CONFIG)


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# ------------------------------------------------------------- signals (in process)


def test_a_signal_stops_after_the_step_with_a_checkpoint_and_resume_is_exact(tmp_path):
    cfg = config(save_every=0)  # max_steps=6; no periodic checkpoint: the stop writes one
    ref_model, _, _ = run(tmp_path / "ref", cfg)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    _, summary, _ = run(tmp_path / "b", cfg, loss_fn=signal_on_call(signal.SIGINT, {3}))
    assert (summary["stopped"], summary["signal"], summary["steps"]) == ("signal", "SIGINT", 3)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before  # restored
    assert (tmp_path / "b/checkpoints/latest").read_text().strip() == "step_00000003"
    assert json.loads((tmp_path / "b/summary.json").read_text()) == summary
    assert stop_message(summary) == ("xling: stopped by SIGINT at step 3; checkpoint saved, "
                                     "continue with --resume")
    model, second, _ = run(tmp_path / "b", cfg, resume=True, model_seed=5, data_seed=99)
    assert second["stopped"] == "max_steps" and "signal" not in second
    assert_same_params(model, ref_model)
    assert [r["loss"] for r in train_lines(tmp_path / "b")] == [r["loss"] for r in train_lines(tmp_path / "ref")]


def test_a_repeated_signal_is_the_same_one_a_later_one_aborts(tmp_path, monkeypatch):
    # two micro-batches per step: both signals come during step 2, as a launcher forwarding one would
    _, summary, _ = run(tmp_path / "a", config(save_every=0, grad_accum=2),
                        loss_fn=signal_on_call(signal.SIGTERM, {3, 4}))
    assert (summary["stopped"], summary["steps"]) == ("signal", 2)
    monkeypatch.setattr(preemption, "REPEAT_WINDOW_S", 0.0)  # now the second one is a new signal
    before = signal.getsignal(signal.SIGTERM)
    tmp_path = tmp_path / "b"
    with pytest.raises(Stopped) as e:
        run(tmp_path, config(save_every=0, grad_accum=2), loss_fn=signal_on_call(signal.SIGTERM, {3, 4}))
    assert e.value.code == 143 and e.value.aborted and "second SIGTERM" in str(e.value)
    assert not (tmp_path / "checkpoints").exists()  # aborted in step 2: nothing saved
    assert signal.getsignal(signal.SIGTERM) == before


def test_stop_message_without_a_checkpoint():
    message = stop_message({"stopped": "signal", "signal": "SIGTERM", "steps": 0, "checkpoint": None})
    assert message == "xling: stopped by SIGTERM at step 0; no checkpoint yet, start the run again"
    assert stop_message({"stopped": "max_steps"}) is None


# ------------------------------------------------------------ --resume housekeeping


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_resume_removes_stale_temporaries_of_a_killed_writer(tmp_path, caplog):
    run(tmp_path, config(max_steps=2, save_every=1))
    pid = dead_pid()
    stale_ckpt = tmp_path / "checkpoints" / f".step_00000009.{_HOST}-{pid}.k1ll3d.tmp"
    stale_ckpt.mkdir()
    (stale_ckpt / "model.safetensors").write_bytes(b"half a file")
    stale_best = tmp_path / f".best.{_HOST}-{pid}.k1ll3d.tmp"
    stale_best.write_bytes(b"half a file")
    live = tmp_path / "checkpoints" / f".step_00000009.{_HOST}-{os.getppid()}.l1ve.tmp"  # a running writer
    live.mkdir()
    with caplog.at_level(logging.WARNING):
        run(tmp_path, config(max_steps=3, save_every=1), resume=True)
    assert not stale_ckpt.exists() and not stale_best.exists() and live.exists()
    (line,) = [m for m in warnings_of(caplog) if "stale" in m]
    assert "removed 2 stale temporary file(s)" in line and "\n" not in line


def damage(run_dir: Path, how: str) -> Path:
    """Damage the newest checkpoint (step 4) of ``run_dir``; return what names it."""
    ckpt = run_dir / "checkpoints" / "step_00000004"
    if how == "truncated":
        f = ckpt / "model.safetensors"
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
        return f
    if how == "flipped":
        f = ckpt / "optimizer.safetensors"
        data = bytearray(f.read_bytes())
        data[-1] ^= 1
        f.write_bytes(bytes(data))
        return f
    if how == "state":
        f = ckpt / "trainer_state.json"
        f.write_text("{")
        return f
    import shutil  # "gone": `latest` names a directory that is not there

    shutil.rmtree(ckpt)
    return run_dir / "checkpoints" / "latest"


@pytest.mark.parametrize("how", ["truncated", "flipped", "state", "gone"])
def test_resume_falls_back_to_the_newest_intact_checkpoint(tmp_path, caplog, how):
    cfg = config(save_every=2, keep_checkpoints=2)
    ref_model, _, _ = run(tmp_path / "ref", cfg)
    run(tmp_path / "b", cfg, stop_after=4)  # checkpoints 2 and 4
    bad = damage(tmp_path / "b", how)
    with caplog.at_level(logging.WARNING):
        model, summary, _ = run(tmp_path / "b", cfg, resume=True)
    (line,) = [m for m in warnings_of(caplog) if "damaged" in m]
    assert str(bad) in line
    assert "resuming from step_00000002" in line and "\n" not in line
    assert summary["steps"] == 6
    assert_same_params(model, ref_model)  # step 2 resumed exactly
    assert [r["loss"] for r in train_lines(tmp_path / "b")] == [r["loss"] for r in train_lines(tmp_path / "ref")]


def test_rotation_after_a_fallback_keeps_the_new_checkpoint(tmp_path):
    """Resumed from step 2 past a damaged step 4, keep_checkpoints=1 must keep the new step 3
    (not the damaged, higher-numbered step 4), and a second resume continues from it."""
    cfg = config(save_every=2, keep_checkpoints=2)
    ref_model, _, _ = run(tmp_path / "ref", cfg)
    run(tmp_path / "b", cfg, stop_after=4)
    damage(tmp_path / "b", "truncated")
    run(tmp_path / "b", config(save_every=1, keep_checkpoints=1), resume=True, stop_after=3)
    root = tmp_path / "b" / "checkpoints"
    assert (root / "latest").read_text().strip() == "step_00000003" and (root / "step_00000003").is_dir()
    model, summary, _ = run(tmp_path / "b", cfg, resume=True)
    assert summary["steps"] == 6
    assert_same_params(model, ref_model)


def test_resume_with_no_intact_checkpoint_is_one_line_error(tmp_path):
    run(tmp_path, config(save_every=2, keep_checkpoints=2), stop_after=4)
    bad = damage(tmp_path, "truncated")
    older = tmp_path / "checkpoints/step_00000002/model.safetensors"
    older.write_bytes(older.read_bytes()[:-1])
    with pytest.raises(XlingError) as e:
        run(tmp_path, config(), resume=True)
    message = str(e.value)
    assert str(bad) in message and "sha256 mismatch" in message and "none of the 1 older" in message
    assert "\n" not in message


def test_config_changes_name_what_changed():
    old = {"objectives": [{"type": "mlm", "langs": ["en", "fr"], "weight": 1.0, "corpus": ""},
                          {"type": "tlm", "langs": ["en-fr"], "weight": 1.0, "corpus": ""}],
           "data": {"alpha": 0.5, "corpus": "c"}, "trainer": {"lr": 1.0}}
    new = {"objectives": old["objectives"][:1], "data": {"alpha": 0.3, "corpus": "c"}, "trainer": {"lr": 2.0}}
    assert config_changes(old, new) == ['data.alpha: 0.5 -> 0.3',
                                        'objectives: removed {"type":"tlm","langs":["en-fr"],"weight":1.0}']
    assert config_changes(old, json.loads(json.dumps(old))) == []


# --------------------------------------------------------- the pretraining task, CLI


@pytest.fixture(scope="module")
def workdir(workspace, tmp_path_factory):
    d = tmp_path_factory.mktemp("preempt")
    (d / "corpus").symlink_to(workspace.corpus)  # the shared corpus and vocabulary (tests/conftest.py)
    (d / "vocab").symlink_to(workspace.vocab)
    return d


def train_args(d: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--config", TINY, "--out", str(out), "--set", f"data.corpus={d / 'corpus'}",
            "--set", f"data.vocab={d / 'vocab'}", "--set", "trainer.num_threads=1", *extra]


LONG = ["--set", "trainer.max_steps=200", "--set", "trainer.grad_accum=4", "--set", "trainer.valid_every=50",
        "--set", "trainer.save_every=40"]


def steps_logged(run_dir: Path) -> int:
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return 0
    return sum(1 for x in lines if '"lr"' in x)


def interrupt(workdir: Path, run_dir: Path, signum: int) -> int:
    """``xling train`` in a subprocess, ``signum`` sent after 3 logged steps: checks the exit
    status (128 + signum), the one-line message and what is on disk; returns the stop step."""
    proc = subprocess.Popen([sys.executable, "-m", "xling.cli", *train_args(workdir, run_dir, *LONG)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.monotonic() + 120
    while steps_logged(run_dir) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err[-3000:]
    name = signal.Signals(signum).name
    summary = json.loads((run_dir / "summary.json").read_text())
    step = summary["steps"]
    assert (summary["stopped"], summary["signal"]) == ("signal", name) and 3 <= step < 200
    lines = err.strip().splitlines()
    assert lines[-1] == f"xling: stopped by {name} at step {step}; checkpoint saved, continue with --resume"
    assert "Traceback" not in err and out == ""
    assert (run_dir / "checkpoints/latest").read_text().strip() == f"step_{step:08d}"
    assert not (run_dir / "model").exists()  # not finished: no final model
    return step


@pytest.mark.timeout(120)
def test_sigint_stops_xling_train_with_status_130(workdir):
    interrupt(workdir, workdir / "sigint", signal.SIGINT)


@pytest.mark.timeout(240)
def test_sigterm_stops_xling_train_and_resume_is_bit_identical(workdir, caplog):
    ref = workdir / "ref"
    assert main(train_args(workdir, ref, *LONG)) == 0
    run_dir = workdir / "sig"
    interrupt(workdir, run_dir, signal.SIGTERM)
    with caplog.at_level(logging.WARNING):
        assert main(train_args(workdir, run_dir, *LONG, "--resume")) == 0
    assert not [m for m in warnings_of(caplog) if "differs" in m or "damaged" in m or "stale" in m]
    a, b = load_file(str(ref / "model/model.safetensors")), load_file(str(run_dir / "model/model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses = [[json.loads(x)["loss"] for x in (r / "metrics.jsonl").read_text().splitlines() if '"lr"' in x]
              for r in (ref, run_dir)]
    assert losses[0] == losses[1] and len(losses[0]) == 200


def test_resume_with_other_objectives_warns_naming_them(workdir, caplog):
    run_dir = workdir / "objectives"
    assert main(train_args(workdir, run_dir, "--set", "trainer.max_steps=3")) == 0
    with caplog.at_level(logging.WARNING):
        assert main(train_args(workdir, run_dir, "--set", "trainer.max_steps=6", "--resume",
                               "--set", "objectives=[{type: mlm, langs: [en, fr]}]")) == 0
    (line,) = [m for m in warnings_of(caplog) if "differs" in m]
    assert "step_00000003" in line and "objectives: removed" in line and '"tlm"' in line and "\n" not in line
    assert "max_steps" not in line  # changed too, on purpose: trainer settings are not reported


@pytest.mark.parametrize("bad", ["trainer.dtype=float16", "model.max_positions=16", "trainer.best_mode=lowest"])
def test_a_late_config_error_leaves_no_run_directory(workdir, capsys, bad):
    out = workdir / f"late_{bad.split('=')[0]}"
    assert main(train_args(workdir, out, "--set", bad)) == 2
    assert "xling: error:" in capsys.readouterr().err
    assert not out.exists()


def test_a_late_config_error_on_resume_leaves_the_run_untouched(workdir):
    run_dir = workdir / "untouched"
    assert main(train_args(workdir, run_dir, "--set", "trainer.max_steps=3")) == 0
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert main(train_args(workdir, run_dir, "--resume", "--set", "trainer.max_steps=6",
                           "--set", "trainer.dtype=float16")) == 2
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("bad, match", [({"trainer": {"dtype": "float16"}}, "dtype"),
                                        ({"data": {"max_len": 128}}, "max_positions=64")])
def test_a_late_classification_config_error_leaves_no_run_directory(workdir, bad, match):
    from xling.classification.train import ClassifyConfig, run_classification
    from xling.config import from_dict
    from xling.models.config import EncoderConfig
    from xling.models.encoder import TransformerEncoder
    from xling.tokenization.vocab import Vocab

    vocab = Vocab.load(workdir / "vocab")
    enc = TransformerEncoder(EncoderConfig(vocab_size=len(vocab), n_langs=len(vocab.languages), d_model=16,
                                           n_layers=1, n_heads=2, d_ff=32, max_positions=64))
    enc.save_pretrained(workdir / "xlm", vocab=vocab)
    base = {"init": str(workdir / "xlm"), "data": {"max_len": 16},
            "train": {"format": "bible", "path": str(workdir / "corpus"), "split": "train", "langs": ["en"]},
            "trainer": {"max_steps": 2, "progress": False}}
    cfg = from_dict(ClassifyConfig, {k: {**base.get(k, {}), **bad.get(k, {})} if k in bad else v
                                     for k, v in base.items()})
    out = workdir / f"cls_late_{match[:5]}"
    with pytest.raises(XlingError, match=match):
        run_classification(cfg, out, progress=False)
    assert not out.exists()
