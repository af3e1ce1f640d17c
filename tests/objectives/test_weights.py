"""Weight schedules (XLM's lambda syntax): values, parsing errors, all-zero mixtures, the mixture
following them, and exact resume."""

import numpy as np
import pytest

from xling.errors import XlingError
from xling.objectives.mixture import MixtureBatches, Task
from xling.objectives.mlm import MLMObjective
from xling.objectives.weights import first_all_zero, parse_weight

XLM_AE = "0:1,100000:0.1,300000:0"  # XLM's --lambda_ae example


def test_values_at_and_between_breakpoints_and_after_the_last():
    s = parse_weight(XLM_AE)
    assert [s.at(x) for x in (0, 1, 100000, 300000, 300001, 10**9)] == pytest.approx(
        [1.0, 1 - 0.9 / 100000, 0.1, 0.0, 0.0, 0.0])
    assert s.at(50000) == pytest.approx(0.55) and s.at(200000) == pytest.approx(0.05)
    late = parse_weight("10:0,20:2")  # before the first point: its value
    assert (late.at(1), late.at(15), late.at(25)) == (0.0, 1.0, 2.0)
    assert parse_weight(0.5).constant and parse_weight("0.5").at(123) == 0.5 and parse_weight(2).at(1) == 2.0
    assert not s.constant


@pytest.mark.parametrize("text, where", [
    ("0:1,10x:0.1", "item 2 '10x:0.1'"), ("0:1;5:0", "item 1"), ("0:1,5:0:3", "item 2"),
    ("5:1,5:0", "updates must increase"), ("0:-1", ">= 0"), ("0:nan", "finite"), ("", "expected a number"),
])
def test_a_schedule_that_does_not_parse_names_the_item(text, where):
    with pytest.raises(XlingError, match="objectives.mt weight") as e:
        parse_weight(text, "objectives.mt weight")
    assert where in str(e.value)


def test_all_zero_mixture_found_at_its_first_update():
    assert first_all_zero([parse_weight("0:1,100:0"), parse_weight("0:0,50:1,80:0")], 1000) == 100
    assert first_all_zero([parse_weight("0:1,100:0"), parse_weight("0:0,100:1")], 1000) is None
    assert first_all_zero([parse_weight(0.0)], 10) == 1
    assert first_all_zero([parse_weight("0:1,100:0")], 99) is None  # the run ends before


def _tasks():
    obj = MLMObjective(vocab_size=100)
    rows = [np.full(8, 10) for _ in range(50)]
    return [Task("ae-en", obj, rows, np.full(50, 8), 0, "ae", 1.0, schedule=parse_weight("0:1,100:0")),
            Task("bt-en", obj, rows, np.full(50, 8), 0, "bt", 0.0, schedule=parse_weight("0:0,100:1"))]


def _names(mix, steps):
    out = []
    for step in steps:
        mix.set_step(step)
        out.append(next(mix)["task"])
    return out


def test_the_mixture_follows_the_schedules():
    mix = MixtureBatches(_tasks(), max_tokens=16, seed=0)
    assert set(_names(mix, [1] * 50)) == {"ae-en"}  # bt's weight is 0 at update 1: never sampled
    assert set(_names(mix, [100] * 50)) == {"bt-en"}
    middle = _names(mix, [50] * 400)
    assert 150 < middle.count("ae-en") < 250


def test_resume_continues_the_schedule_exactly():
    full = _names(MixtureBatches(_tasks(), max_tokens=16, seed=3), range(1, 121))
    first = MixtureBatches(_tasks(), max_tokens=16, seed=3)
    head = _names(first, range(1, 61))
    state = first.state_dict()
    resumed = MixtureBatches(_tasks(), max_tokens=16, seed=3)
    resumed.load_state_dict(state)
    assert head + _names(resumed, range(61, 121)) == full


def test_set_step_refuses_an_all_zero_update():
    tasks = _tasks()
    tasks[1].schedule = parse_weight("0:0")
    mix = MixtureBatches(tasks, max_tokens=16, seed=0)
    with pytest.raises(XlingError, match="at update 100 every objective weight is 0"):
        mix.set_step(100)


def test_a_training_config_with_an_all_zero_update_is_refused(workspace):
    from xling.config import load_config
    from xling.tasks.train import TrainConfig, check_config

    cfg = load_config(TrainConfig, workspace.train_config, [
        "objectives=[{type: mlm, langs: [en], weight: '0:1,5:0'}, {type: tlm, langs: [en-fr], weight: 0}]",
        "trainer.max_steps=20"])
    with pytest.raises(XlingError, match="every weight is 0 at update 5"):
        check_config(cfg)
    with pytest.raises(XlingError, match=r"item 2 '5x:0'"):
        load_config(TrainConfig, workspace.train_config, ["objectives=[{type: mlm, langs: [en], weight: '0:1,5x:0'}]"])
