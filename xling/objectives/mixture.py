"""Mixing objectives and languages in one run.

A :class:`Task` is one objective on one language (``mlm-en``) or language pair
(``tlm-de-en``). :class:`MixtureBatches` is the stateful batch source the
trainer pulls from: at every micro-batch it samples a task (probabilities from
objective weights x alpha-smoothed data sizes, see :func:`task_probs`), takes
that task's next token-budget batch of the current epoch and lets the objective
build inputs + targets with fresh random masks. Its whole state (rng state,
epoch and position of every task) is JSON, so a resumed run continues exactly.

Weights may follow schedules (:mod:`xling.objectives.weights`): the trainer calls
:meth:`MixtureBatches.set_step` before each update, and the probabilities follow the
weights of that update (a weight of 0: the objective is not sampled).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from xling.data.batching import token_budget_batches
from xling.errors import XlingError
from xling.objectives.weights import WeightSchedule
from xling.tokenization.sampling import smoothed_probs


@dataclass
class Task:
    name: str  # e.g. "mlm-en", "tlm-de-en"
    objective: Any  # has make_batch(examples, lang, rng) and loss(model, batch)
    examples: list  # stream rows (np arrays) or (src, tgt) pairs
    lengths: np.ndarray  # tokens per example, for token-budget batching
    lang: Any  # language id, or a (l1, l2) pair of ids
    group: str  # objective group the weight applies to ("mlm", "tlm", ...)
    weight: float = 1.0  # weight of the group in the mixture (at the current update, with a schedule)
    clusters: np.ndarray | None = None  # (n,) optional: batches keep similar examples together (hard negatives)
    schedule: WeightSchedule | None = None  # the weight by update (None: constant ``weight``)
    domain: str = ""  # "" for data.corpus, else the name of the objective's own corpus (names end "@domain")


def task_probs(tasks: list[Task], alpha: float) -> np.ndarray:
    """P(task) = w_group / sum(w) x q(task within its group), with q XLM's
    alpha-smoothed proportions of the tasks' example counts."""
    groups: dict[str, list[int]] = {}
    for i, t in enumerate(tasks):
        groups.setdefault(t.group, []).append(i)
    weights = {g: tasks[idx[0]].weight for g, idx in groups.items()}
    total_w = sum(weights.values())
    if total_w <= 0:
        raise XlingError("objective weights must sum to more than 0")
    p = np.zeros(len(tasks))
    for g, idx in groups.items():
        q = smoothed_probs({tasks[i].name: len(tasks[i].examples) for i in idx}, alpha)
        for i in idx:
            p[i] = weights[g] / total_w * q[tasks[i].name]
    return p


class MixtureBatches:
    """Stateful iterator of micro-batches over a mixture of tasks, one per rank."""

    def __init__(
        self,
        tasks: list[Task],
        max_tokens: int,
        alpha: float = 0.5,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        max_sentences: int | None = None,
    ):
        if not tasks:
            raise XlingError("no training tasks: give at least one objective with data")
        self.tasks = tasks
        self.max_tokens = max_tokens
        self.max_sentences = max_sentences
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.alpha = alpha
        self.probs = task_probs(tasks, alpha)
        self.rng = np.random.default_rng([seed, rank])
        self.cursor = {t.name: {"epoch": 0, "pos": 0} for t in tasks}
        self._plans: dict[str, tuple[int, list[np.ndarray]]] = {}

    def _plan(self, i: int, epoch: int) -> list[np.ndarray]:
        """The batches of task i in epoch ``epoch`` for this rank (pure in seed, task, epoch)."""
        t = self.tasks[i]
        cached = self._plans.get(t.name)
        if cached and cached[0] == epoch:
            return cached[1]
        rng = np.random.default_rng([self.seed, i, epoch])
        batches = token_budget_batches(t.lengths, self.max_tokens, rng, self.max_sentences, groups=t.clusters)
        mine = batches[self.rank :: self.world_size] or batches
        self._plans[t.name] = (epoch, mine)
        return mine

    def set_step(self, step: int) -> None:
        """Weights (and so probabilities) of update ``step`` (1-based) for the scheduled tasks."""
        changed = False
        for t in self.tasks:
            if t.schedule is not None:
                w = t.schedule.at(step)
                changed |= w != t.weight
                t.weight = w
        if changed:
            if sum({t.group: t.weight for t in self.tasks}.values()) <= 0:
                raise XlingError(f"at update {step} every objective weight is 0 (check the weight schedules)")
            self.probs = task_probs(self.tasks, self.alpha)

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, Any]:
        i = int(self.rng.choice(len(self.tasks), p=self.probs))
        t = self.tasks[i]
        cur = self.cursor[t.name]
        plan = self._plan(i, cur["epoch"])
        if cur["pos"] >= len(plan):
            cur["epoch"] += 1
            cur["pos"] = 0
            plan = self._plan(i, cur["epoch"])
        idx = plan[cur["pos"]]
        cur["pos"] += 1
        batch = t.objective.make_batch([t.examples[j] for j in idx], t.lang, self.rng)
        batch["task"] = t.name
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "cursor": {k: dict(v) for k, v in self.cursor.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = set(self.cursor) - set(state.get("cursor", {}))
        if missing:
            raise XlingError(f"checkpoint's data state lacks tasks {sorted(missing)}: config changed?")
        self.rng.bit_generator.state = state["rng"]
        self.cursor = {k: dict(state["cursor"][k]) for k in self.cursor}
        self._plans.clear()
