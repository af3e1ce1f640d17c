"""TLM/CLM inputs, the task mixture's alpha sampling, and exact data-state resume."""

import numpy as np
import torch

from xling.data.masking import IGNORE
from xling.objectives.clm import CLMObjective
from xling.objectives.mixture import MixtureBatches, Task, task_probs
from xling.objectives.mlm import MLMObjective, TLMObjective, concat_pair


def test_tlm_positions_restart_and_segment_langs():
    tokens, positions, langs = concat_pair(np.array([10, 11, 12]), np.array([20, 21]), 0, 3, bos_id=2, eos_id=3)
    assert tokens.tolist() == [2, 10, 11, 12, 3, 2, 20, 21, 3]
    assert positions.tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3]
    assert langs.tolist() == [0, 0, 0, 0, 0, 3, 3, 3, 3]


def test_tlm_batch_masks_both_halves_and_pads():
    obj = TLMObjective(vocab_size=100, swap=False)
    rng = np.random.default_rng(0)
    pairs = [(np.arange(10, 30), np.arange(40, 60)), (np.arange(10, 15), np.arange(40, 43))]
    in_first = in_second = 0
    for _ in range(50):
        b = obj.make_batch(pairs, (1, 2), rng)
        tgt = b["targets"][0]
        langs = b["langs"][0]
        in_first += int(((tgt != IGNORE) & (langs == 1)).sum())
        in_second += int(((tgt != IGNORE) & (langs == 2)).sum())
        # the short pair is padded after its 12 real tokens: positions and langs padded with 0
        assert b["tokens"].shape == (2, 44)
        assert (b["tokens"][1, 12:] == 0).all()
        assert b["positions"][1, :12].tolist() == list(range(7)) + list(range(5))
    assert in_first > 50 and in_second > 50
    assert abs(in_first - in_second) / (in_first + in_second) < 0.2


def test_tlm_swap_puts_each_language_first():
    obj = TLMObjective(vocab_size=100)
    rng = np.random.default_rng(0)
    firsts = [int(obj.make_batch([(np.array([10]), np.array([20]))], (1, 2), rng)["langs"][0, 0]) for _ in range(200)]
    assert 60 < firsts.count(1) < 140 and firsts.count(1) + firsts.count(2) == 200


def test_clm_targets_are_next_tokens():
    b = CLMObjective().make_batch([np.array([3, 10, 11, 12]), np.array([3, 20, 0, 0])], 0, None)
    assert b["tokens"].tolist() == [[3, 10, 11], [3, 20, 0]]
    assert b["targets"].tolist() == [[10, 11, 12], [20, IGNORE, IGNORE]]
    assert b["attn_mask"].tolist() == [[True, False, False], [True, True, False], [True, True, True]]


def _tasks(sizes, group="mlm", weight=1.0):
    obj = MLMObjective(vocab_size=100)
    tasks = []
    for i, (name, n) in enumerate(sizes.items()):
        rows = [np.full(8, 10 + i) for _ in range(n)]
        tasks.append(Task(f"{group}-{name}", obj, rows, np.full(n, 8), i, group, weight))
    return tasks


def test_task_probs_alpha_smoothing_and_weights():
    sizes = {"en": 900, "de": 90, "zh": 10}
    p = task_probs(_tasks(sizes), alpha=0.5)
    q = np.sqrt(np.array([0.9, 0.09, 0.01]))
    assert np.allclose(p, q / q.sum())
    assert np.allclose(task_probs(_tasks(sizes), alpha=1.0), [0.9, 0.09, 0.01])
    assert np.allclose(task_probs(_tasks(sizes), alpha=0.0), [1 / 3] * 3)
    mixed = _tasks({"en": 100}, "mlm", 3.0) + _tasks({"de-en": 10, "en-fr": 10}, "tlm", 1.0)
    assert np.allclose(task_probs(mixed, 0.5), [0.75, 0.125, 0.125])


def test_mixture_samples_follow_probs():
    tasks = _tasks({"en": 900, "de": 90, "zh": 10})
    mix = MixtureBatches(tasks, max_tokens=16, alpha=0.5, seed=0)
    names = [next(mix)["task"] for _ in range(4000)]
    freq = np.array([names.count(t.name) for t in tasks]) / len(names)
    assert np.abs(freq - mix.probs).max() < 0.025


def test_mixture_resume_gives_identical_batches():
    tasks = _tasks({"en": 50, "de": 7})
    a = MixtureBatches(tasks, max_tokens=24, seed=3)
    for _ in range(37):
        next(a)
    state = a.state_dict()
    import json

    state = json.loads(json.dumps(state))  # must survive JSON
    want = [next(a) for _ in range(30)]
    b = MixtureBatches(tasks, max_tokens=24, seed=3)
    b.load_state_dict(state)
    got = [next(b) for _ in range(30)]
    for x, y in zip(want, got):
        assert x["task"] == y["task"]
        assert torch.equal(x["tokens"], y["tokens"]) and torch.equal(x["targets"], y["targets"])


def test_mixture_epochs_visit_every_example_with_new_masks():
    tasks = _tasks({"en": 12})
    for i, r in enumerate(tasks[0].examples):
        r[:] = np.arange(10, 18) + i * 8
    mix = MixtureBatches(tasks, max_tokens=8 * 3, seed=0)  # 3 rows per batch, 4 batches per epoch
    epoch1 = [next(mix) for _ in range(4)]
    rows1 = sorted(int(t[0]) for b in epoch1 for t in torch.where(b["targets"] != IGNORE, b["targets"], b["tokens"]))
    assert len(rows1) == 12 and len(set(rows1)) == 12
    epoch2 = [next(mix) for _ in range(4)]
    m1 = torch.cat([b["targets"] for b in epoch1]).ne(IGNORE).sum()
    assert mix.cursor["mlm-en"]["epoch"] == 1
    assert not all(torch.equal(x["targets"], y["targets"]) for x, y in zip(epoch1, epoch2)) and m1 > 0
