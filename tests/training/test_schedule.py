"""Learning-rate schedules against hand-computed values, and their use by the Trainer."""

from __future__ import annotations

import json
import math

import pytest

from ddp_worker import ToyBatches, ToyModel, mse_loss
from xling.errors import XlingError
from xling.training.schedule import lr_at
from xling.training.trainer import Trainer, TrainerConfig


def cfg(schedule: str, warmup: int = 4, total: int = 12) -> TrainerConfig:
    return TrainerConfig(lr=1.0, warmup_steps=warmup, max_steps=total, schedule=schedule)


@pytest.mark.parametrize("schedule", ["linear", "cosine", "inverse_sqrt", "constant"])
def test_warmup_is_linear_from_zero(schedule):
    c = cfg(schedule)
    assert [lr_at(s, c) for s in (1, 2, 3, 4)] == [0.25, 0.5, 0.75, 1.0]


def test_linear_decays_to_zero_at_max_steps():
    c = cfg("linear")
    assert lr_at(8, c) == 0.5  # (12 - 8) / (12 - 4)
    assert lr_at(11, c) == 0.125
    assert lr_at(12, c) == 0.0 and lr_at(20, c) == 0.0
    assert lr_at(1, cfg("linear", warmup=0, total=4)) == 0.75  # no warmup


def test_cosine_hand_values():
    c = cfg("cosine")
    assert lr_at(6, c) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))  # 0.8536
    assert lr_at(8, c) == pytest.approx(0.5)
    assert lr_at(12, c) == pytest.approx(0.0, abs=1e-12)


def test_inverse_sqrt_and_constant():
    c = cfg("inverse_sqrt")
    assert lr_at(9, c) == pytest.approx(2 / 3)  # sqrt(4 / 9)
    assert lr_at(16, c) == pytest.approx(0.5)
    assert lr_at(100, cfg("inverse_sqrt", warmup=0)) == pytest.approx(0.1)
    assert lr_at(100, cfg("constant")) == 1.0


def test_unknown_schedule_is_one_line_error():
    with pytest.raises(XlingError, match="unknown schedule 'cosin'.*cosine") as e:
        lr_at(1, cfg("cosin"))
    assert "\n" not in str(e.value)


def test_trainer_applies_the_schedule(tmp_path):
    c = TrainerConfig(lr=0.01, warmup_steps=2, max_steps=5, schedule="cosine", log_every=1,
                      save_every=0, num_threads=1, progress=False, device="cpu")
    trainer = Trainer(ToyModel(), mse_loss, ToyBatches(batch_size=4), c, tmp_path)
    trainer.train()
    assert all(g["lr"] == lr_at(5, c) for g in trainer.optimizer.param_groups)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in lines] == [lr_at(s, c) for s in range(1, 6)]
