"""``xling train`` end to end through the CLI on the shipped fixture: corpus -> vocab -> MLM+TLM
training -> ``xling evaluate xlm``, exact resume, two processes under torchrun, per-objective
corpora, and the user errors of that path."""

import json
import logging

import pytest
import torch

from conftest import FIXTURE_DB, TINY_CONFIG
from xling.cli import main
from xling.models.encoder import TransformerEncoder

TINY = str(TINY_CONFIG)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("e2e")
    assert main(["corpus", "bible", "--langs", "en,fr,es", "--db", str(FIXTURE_DB), "--out", str(d / "corpus"), "--quiet"]) == 0
    assert main(["vocab", "--corpus", str(d / "corpus"), "--size", "500", "--out", str(d / "vocab")]) == 0
    return d


def _train(d, out, *extra):
    return main(["train", "--config", TINY, "--out", str(out), "--set", f"data.corpus={d / 'corpus'}",
                 "--set", f"data.vocab={d / 'vocab'}", *extra])


def _one_line_error(capsys, rc, match):
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err and err[-1].startswith("xling: error:") and match in err[-1], err
    assert "Traceback" not in "\n".join(err)


def test_train_evaluate_and_resume(workdir, capsys):
    run = workdir / "run"
    assert _train(workdir, run) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 6
    assert {"ppl/en", "ppl/fr"} <= set(summary["valid"])
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    tasks = {k for m in metrics for k in m if k.startswith("loss/")}
    assert tasks == {"loss/mlm-en", "loss/mlm-fr", "loss/tlm-en-fr"}, tasks
    assert (run / "curves.png").stat().st_size > 1000
    model = TransformerEncoder.from_pretrained(run / "model")
    assert model.config.d_model == 32

    # the same config and seed give a bit-identical model
    again = workdir / "again"
    assert _train(workdir, again) == 0
    twin = TransformerEncoder.from_pretrained(again / "model")
    for a, b in zip(model.state_dict().values(), twin.state_dict().values()):
        assert torch.equal(a, b)

    out = workdir / "eval.json"
    assert main(["evaluate", "xlm", "--model", str(run / "model"), "--corpus", str(workdir / "corpus"),
                 "--langs", "en,fr", "--pairs", "en-fr", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["signature"].startswith("xling-xlm-eval|model:")
    assert set(res["translation_probe"]) == {"en|fr", "fr|en"}
    assert res["mlm"]["en"]["n"] > 0


def test_resume_continues_exactly(workdir):
    from xling.config import load_config
    from xling.tasks.train import TrainConfig, run_training

    over = [f"data.corpus={workdir / 'corpus'}", f"data.vocab={workdir / 'vocab'}", "trainer.save_every=3"]
    cfg = load_config(TrainConfig, TINY, over)
    run_training(cfg, workdir / "a")
    # simulate an interruption after step 3: drop the final checkpoint and model, resume
    b = workdir / "b"
    from xling.tasks import train as pretrain

    cfg_b = load_config(TrainConfig, TINY, over)
    pretrain.run_training(cfg_b, b, stop_after=3)
    assert (b / "checkpoints" / "latest").read_text().strip().endswith("00000003")
    pretrain.run_training(load_config(TrainConfig, TINY, over), b, resume=True)
    la = [m["loss"] for m in map(json.loads, (workdir / "a" / "metrics.jsonl").read_text().splitlines()) if "lr" in m]
    lb = [m["loss"] for m in map(json.loads, (b / "metrics.jsonl").read_text().splitlines()) if "lr" in m]
    assert la == lb and len(la) == 6
    ma = TransformerEncoder.from_pretrained(workdir / "a" / "model")
    mb = TransformerEncoder.from_pretrained(b / "model")
    for x, y in zip(ma.state_dict().values(), mb.state_dict().values()):
        assert torch.equal(x, y)


def test_unknown_config_key(workdir, capsys):
    rc = _train(workdir, workdir / "bad1", "--set", "trainer.lrr=1")
    _one_line_error(capsys, rc, "trainer.lrr")
    assert not (workdir / "bad1").exists()


def test_unknown_language_in_objectives(workdir, capsys):
    rc = _train(workdir, workdir / "bad2", "--set", "objectives=[{type: mlm, langs: [en, xx]}]")
    _one_line_error(capsys, rc, "'xx'")


def test_corrupt_checkpoint_on_resume(workdir, capsys, caplog):
    """A damaged latest checkpoint: --resume falls back to the newest intact one with one warning
    naming both; when none is intact, a one-line error."""
    run = workdir / "corrupt"
    assert _train(workdir, run) == 0
    latest = (run / "checkpoints" / "latest").read_text().strip()
    assert latest == "step_00000006" and (run / "checkpoints" / "step_00000003").is_dir()
    f = run / "checkpoints" / latest / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])  # truncated
    caplog.clear()
    assert _train(workdir, run, "--resume") == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "damaged" in r.getMessage()]
    assert len(warnings) == 1 and str(f) in warnings[0] and "resuming from step_00000003" in warnings[0], warnings
    assert json.loads((run / "summary.json").read_text())["steps"] == 6
    for ckpt in (run / "checkpoints").glob("step_*"):
        g = ckpt / "model.safetensors"
        g.write_bytes(g.read_bytes()[: g.stat().st_size // 2])
    capsys.readouterr()
    rc = _train(workdir, run, "--resume")
    _one_line_error(capsys, rc, "model.safetensors")


def test_corrupt_model_dir_on_evaluate(workdir, capsys):
    run = workdir / "run"
    if not (run / "model").exists():
        pytest.skip("needs test_train_evaluate_and_resume")
    bad = workdir / "badmodel"
    import shutil

    shutil.copytree(run / "model", bad)
    data = bytearray((bad / "model.safetensors").read_bytes())
    data[-10] ^= 0xFF  # one flipped byte
    (bad / "model.safetensors").write_bytes(bytes(data))
    rc = main(["evaluate", "xlm", "--model", str(bad), "--corpus", str(workdir / "corpus"), "--langs", "en"])
    _one_line_error(capsys, rc, "model.safetensors")


@pytest.mark.timeout(120)
def test_pretraining_under_torchrun_two_processes(workdir):
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    out = workdir / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(port), "-m", "xling.cli", "train", "--config", TINY, "--out", str(out),
           "--set", f"data.corpus={workdir / 'corpus'}", "--set", f"data.vocab={workdir / 'vocab'}"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 6
    # tokens are summed over both ranks: twice the single-process count per step
    single = json.loads((workdir / "run" / "summary.json").read_text()) if (workdir / "run").exists() else None
    if single:
        assert summary["tokens_seen"] > single["tokens_seen"]
    TransformerEncoder.from_pretrained(out / "model")


def test_per_objective_corpora_feed_their_own_perplexity_rows(workdir):
    """MLM perplexity rows read each language from the corpus of the objective that names it
    (here es lives only in a second corpus; data.corpus has no es files)."""
    d = workdir
    for langs, name in (("en,fr", "corpus_enfr"), ("es", "corpus_es")):
        assert main(["corpus", "bible", "--langs", langs, "--db", str(FIXTURE_DB), "--out", str(d / name), "--quiet"]) == 0
    run = d / "two_corpora"
    objectives = f"objectives=[{{type: mlm, langs: [en]}}, {{type: mlm, langs: [es], corpus: {d / 'corpus_es'}}}]"
    assert main(["train", "--config", TINY, "--out", str(run), "--set", f"data.corpus={d / 'corpus_enfr'}",
                 "--set", f"data.vocab={d / 'vocab'}", "--set", objectives]) == 0
    valid = json.loads((run / "summary.json").read_text())["valid"]
    assert {"ppl/en", "ppl/es"} <= set(valid) and "ppl/fr" not in valid, valid
