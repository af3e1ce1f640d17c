"""Learning-rate schedules: linear warmup, then a decay; one pure function.

Steps are counted from 1: ``lr_at(step, cfg)`` is the learning rate used by the
``step``-th optimizer update (the first update is step 1). The trainer sets it on
every parameter group before each update, so the schedule needs no state of its
own: resuming at step ``N`` resumes the schedule too.

Warmup (``warmup_steps = W > 0``): ``lr * step / W`` for ``step <= W``. After it:

- ``linear``:       ``lr * (max_steps - step) / (max_steps - W)``, 0 at ``max_steps``
- ``cosine``:       ``lr * 0.5 * (1 + cos(pi * p))`` with ``p = (step - W) / (max_steps - W)``
- ``inverse_sqrt``: ``lr * sqrt(max(W, 1) / step)`` (continuous at ``W``)
- ``constant``:     ``lr``

Past ``max_steps`` the decaying schedules stay at 0.
"""

from __future__ import annotations

import math
from typing import Any

from xling.errors import XlingError, unknown

SCHEDULES = ("linear", "cosine", "inverse_sqrt", "constant")


def check_schedule(cfg: Any) -> None:
    """Raise XlingError for an unknown schedule name or inconsistent step counts."""
    if cfg.schedule not in SCHEDULES:
        raise unknown("schedule", cfg.schedule, SCHEDULES)
    if cfg.warmup_steps < 0 or cfg.max_steps < 0:
        raise XlingError(
            f"warmup_steps={cfg.warmup_steps}, max_steps={cfg.max_steps}: must be >= 0"
        )


def lr_at(step: int, cfg: Any) -> float:
    """Learning rate of the ``step``-th update (1-based) under ``cfg``.

    ``cfg`` needs ``lr``, ``warmup_steps``, ``max_steps`` and ``schedule``
    (a :class:`xling.training.trainer.TrainerConfig` has them).
    """
    check_schedule(cfg)
    base, warmup, total = float(cfg.lr), int(cfg.warmup_steps), int(cfg.max_steps)
    step = max(int(step), 1)
    if warmup > 0 and step <= warmup:
        return base * step / warmup
    if cfg.schedule == "constant":
        return base
    if cfg.schedule == "inverse_sqrt":
        return base * math.sqrt(max(warmup, 1) / step)
    span = total - warmup
    if span <= 0:
        return 0.0
    progress = min(max((step - warmup) / span, 0.0), 1.0)
    if cfg.schedule == "linear":
        return base * (1.0 - progress)
    return base * 0.5 * (1.0 + math.cos(math.pi * progress))  # cosine
