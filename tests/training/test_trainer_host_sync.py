"""The loss contract's stats stay on the device: no host sync per micro-batch or step.

A ``loss_fn`` may return its stats as tensors; the trainer accumulates them (and the loss,
and ``grad_norm``) on the device and turns them into Python numbers only when it logs (or
checkpoints). These tests count the tensor -> Python conversions made outside torch during
``Trainer.train`` and check that the logged averages equal the float-based ones.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from ddp_worker import ToyBatches, ToyModel
from xling.errors import XlingError
from xling.training.metrics import read_metrics
from xling.training.trainer import Trainer, TrainerConfig

TORCH_DIRS = tuple({str(Path(torch.__file__).parent), str(Path(torch.__file__).resolve().parent)})
CONVERSIONS = ("item", "tolist", "__float__", "__int__", "__bool__", "__index__", "cpu", "numpy")


def config(**changes) -> TrainerConfig:
    base = dict(lr=0.01, warmup_steps=2, max_steps=8, log_every=8, valid_every=0, save_every=0,
                num_threads=1, progress=False, device="cpu")
    return TrainerConfig(**{**base, **changes})


def tensor_loss(model, batch: dict) -> tuple[torch.Tensor, dict]:
    """The toy MSE with every stat a tensor (the device-side contract)."""
    pred = model(batch["x"])  # (B, 3)
    loss = nn.functional.mse_loss(pred, batch["y"])
    with torch.no_grad():
        close = ((pred - batch["y"]).abs() < 0.5).float().mean()  # a float32 "accuracy"
        rows = (batch["x"][:, 0] == batch["x"][:, 0]).sum()  # int64 row count
    return loss, {f"loss/{batch['task']}": loss.detach(), "acc/toy": close, "tokens": rows}


def count_conversions(monkeypatch) -> list[str]:
    """Patch torch.Tensor so that every tensor -> Python conversion made by code outside torch
    (the trainer, the loss_fn) is recorded as ``file:line``."""
    seen: list[str] = []
    for name in CONVERSIONS:
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, _original=original, **kwargs):
            caller = sys._getframe(1)
            if not caller.f_code.co_filename.startswith(TORCH_DIRS):
                seen.append(f"{caller.f_code.co_filename}:{caller.f_lineno}")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapper)
    return seen


def conversions_during_train(monkeypatch, out: Path, cfg: TrainerConfig) -> list[str]:
    trainer = Trainer(ToyModel(seed=0), tensor_loss, ToyBatches(seed=3, batch_size=4), cfg, out)
    with monkeypatch.context() as m:
        seen = count_conversions(m)
        trainer.train()
    return list(seen)


def test_no_host_sync_per_micro_batch_or_step(tmp_path, monkeypatch):
    """One log and one checkpoint each: 2, 8 and 8x3 micro-batches make the same conversions."""
    few = conversions_during_train(monkeypatch, tmp_path / "a", config(max_steps=2))
    steps = conversions_during_train(monkeypatch, tmp_path / "b", config())
    micro = conversions_during_train(monkeypatch, tmp_path / "c", config(grad_accum=3))
    assert len(few) == len(steps) == len(micro), (few, steps, micro)
    logging = [s for s in micro if "checkpoint.py" not in s]  # the checkpoint's RNG states aside
    assert len(logging) <= 8, logging  # a handful per log line, none per micro-batch
    lines = [r for r in read_metrics(tmp_path / "c/metrics.jsonl") if "split" not in r]
    assert [r["step"] for r in lines] == [8] and lines[0]["tokens_seen"] == 8 * 3 * 4


def test_logged_averages_equal_the_float_based_ones(tmp_path, monkeypatch):
    """Every logged stat equals the average of the per-micro-batch Python floats (the old
    contract), computed the old way; ``tokens`` sums stay exact integers."""
    micro: list[dict[str, float]] = []
    norms: list[float] = []

    def recording_loss(model, batch):
        loss, stats = tensor_loss(model, batch)
        micro.append({"loss": loss.item(), **{k: float(v) for k, v in stats.items()}})
        return loss, stats

    clip = torch.nn.utils.clip_grad_norm_

    def recording_clip(*args, **kwargs):
        norm = clip(*args, **kwargs)
        norms.append(float(norm))
        return norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording_clip)
    accum, log_every, max_steps = 2, 3, 7  # windows of 3, 3 and 1 step(s)
    cfg = config(max_steps=max_steps, log_every=log_every, grad_accum=accum, clip_norm=0.5)
    Trainer(ToyModel(seed=0, dropout=0.2), recording_loss, ToyBatches(seed=3, batch_size=4), cfg,
            tmp_path).train()
    lines = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "split" not in r]
    assert [r["step"] for r in lines] == [3, 6, 7]
    assert len(micro) == max_steps * accum and len(norms) == max_steps
    tokens_seen = 0.0
    for line in lines:
        first = line["step"] - (line["step"] - 1) % log_every - 1  # steps first+1 .. step
        window = range(first, line["step"])
        step_losses = []
        for s in window:
            total = 0.0
            for m in micro[s * accum:(s + 1) * accum]:
                total += m["loss"]
            step_losses.append(total / accum)
        mb = micro[first * accum:line["step"] * accum]
        assert line["loss"] == sum(step_losses, 0.0) / len(step_losses)
        assert line["grad_norm"] == sum(norms[first:line["step"]], 0.0) / len(window)
        for key in ("loss/toy", "acc/toy"):
            assert line[key] == sum((m[key] for m in mb), 0.0) / len(mb), key
        tokens_seen += sum(m["tokens"] for m in mb)
        assert line["tokens_seen"] == tokens_seen == 4 * accum * line["step"]


def _poisoned(step: int, value: float):
    """tensor_loss, with the loss multiplied by ``value`` (nan / inf) at micro-batch ``step``."""
    calls = []

    def loss_fn(model, batch):
        calls.append(1)
        loss, stats = tensor_loss(model, batch)
        return (loss * value if len(calls) == step else loss), stats

    return loss_fn


def test_divergence_is_caught_at_log_time_and_names_its_step(tmp_path):
    with pytest.raises(XlingError, match=r"^loss is nan at step 2\b.*training diverged") as e:
        Trainer(ToyModel(seed=0), _poisoned(2, float("nan")), ToyBatches(seed=3), config(log_every=4),
                tmp_path).train()
    assert "\n" not in str(e.value)
    assert not (tmp_path / "checkpoints").exists()  # the diverged weights were never saved


def test_divergence_is_checked_before_a_checkpoint_between_logs(tmp_path):
    with pytest.raises(XlingError, match=r"^loss is inf at step 3\b"):
        Trainer(ToyModel(seed=0), _poisoned(3, float("inf")), ToyBatches(seed=3), config(log_every=8, save_every=4),
                tmp_path).train()
    assert not (tmp_path / "checkpoints" / "step_00000004").exists()


def test_checkpoint_between_logs_counts_the_pending_tokens(tmp_path):
    """A checkpoint in the middle of a logging window holds every token seen so far."""
    cfg = config(max_steps=8, log_every=4, save_every=3)
    Trainer(ToyModel(seed=0), tensor_loss, ToyBatches(seed=3), cfg, tmp_path / "a").train()
    state = json.loads((tmp_path / "a/checkpoints/step_00000006/trainer_state.json").read_text())
    assert state["tokens_seen"] == 6 * 8 and state["ranks"][0]["tokens_seen"] == 6 * 8
    ref = [r for r in read_metrics(tmp_path / "a/metrics.jsonl") if "split" not in r]
    assert [r["step"] for r in ref] == [4, 8] and ref[-1]["tokens_seen"] == 8 * 8
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in ref)
