"""Objective weights that change during training: XLM's ``lambda`` schedules.

An objective's ``weight`` in a training config is a number (constant) or a schedule written as
XLM writes ``--lambda_ae``::

    weight: "0:1,100000:0.1,300000:0"    # (update, value) points

The weight is piecewise linear in the update count between the points, the first value before
the first point and the last value after the last one. A weight of 0 skips the objective (its
tasks are never sampled). Values are pure functions of the update number, so a resumed run
continues the schedule exactly. Quote a schedule in YAML (``1:30`` alone is a YAML integer).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

from xling.errors import XlingError


@dataclass(frozen=True)
class WeightSchedule:
    """(update, value) points, updates strictly increasing, values finite and >= 0."""

    points: tuple[tuple[int, float], ...]

    def at(self, step: int) -> float:
        """The weight at update ``step`` (1-based, as the trainer counts)."""
        xs = [x for x, _ in self.points]
        i = bisect.bisect_right(xs, step)
        if i == 0:
            return self.points[0][1]
        if i == len(xs):
            return self.points[-1][1]
        (x0, y0), (x1, y1) = self.points[i - 1], self.points[i]
        return y0 + (y1 - y0) * (step - x0) / (x1 - x0)

    @property
    def breakpoints(self) -> list[int]:
        return [x for x, _ in self.points]

    @property
    def constant(self) -> bool:
        return len({y for _, y in self.points}) == 1


def parse_weight(value: object, where: str = "weight") -> WeightSchedule:
    """A number or an ``"update:value,..."`` string as a :class:`WeightSchedule`; anything else is an
    XlingError naming ``where`` and the position of the first bad item."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        w = float(value)
        if not math.isfinite(w) or w < 0:
            raise XlingError(f"{where}: must be a finite number >= 0, got {value!r}")
        return WeightSchedule(((0, w),))
    if not isinstance(value, str) or not value.strip():
        raise XlingError(f"{where}: expected a number or a schedule like \"0:1,100000:0.1\", got {value!r}")
    text = value.strip()
    try:
        return parse_weight(float(text), where)
    except ValueError:
        pass
    points: list[tuple[int, float]] = []
    for n, item in enumerate(text.split(","), 1):
        parts = item.strip().split(":")
        try:
            if len(parts) != 2:
                raise ValueError
            x, y = int(parts[0]), float(parts[1])
        except ValueError:
            raise XlingError(f"{where}: schedule {value!r}, item {n} {item.strip()!r}: expected update:value, "
                             "e.g. 0:1,100000:0.1") from None
        if x < 0 or not math.isfinite(y) or y < 0:
            raise XlingError(f"{where}: schedule {value!r}, item {n} {item.strip()!r}: the update must be >= 0 "
                             "and the value a finite number >= 0")
        if points and x <= points[-1][0]:
            raise XlingError(f"{where}: schedule {value!r}, item {n} {item.strip()!r}: updates must increase "
                             f"(after {points[-1][0]})")
        points.append((x, y))
    return WeightSchedule(tuple(points))


def check_weight(value: object, where: str) -> None:
    """Config validator (``Annotated``): the value parses as a weight."""
    parse_weight(value, where)


def first_all_zero(schedules: Sequence[WeightSchedule], max_steps: int) -> int | None:
    """The first update in ``1..max_steps`` at which every weight is 0, or None. The sum of the
    weights is piecewise linear and never negative: on a segment it is 0 inside only if it is 0 at
    the segment's ends, so the breakpoints and the ends of the run are the only updates to check."""
    candidates = {1, max_steps} | {x for s in schedules for x in s.breakpoints if 1 <= x <= max_steps}
    return next((c for c in sorted(candidates) if sum(s.at(c) for s in schedules) <= 0), None)
