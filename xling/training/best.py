"""Keep the weights of the best validation so far (``trainer.best_metric``).

The trainer hands every validation to :meth:`BestKeeper.update`; when the chosen metric
improves, the model's weights are written to ``RUN/best/model.safetensors`` (atomically,
with ``best.json``: step, metric, value). The value and step travel in each checkpoint's
trainer state, so a resumed run keeps comparing against the best of the whole run. At the
end of training the trainer loads the best weights back (:meth:`BestKeeper.restore`), so the
final model a task saves is the best one, while checkpoints keep the latest weights for
``--resume``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from xling.errors import XlingError
from xling.models.io import load_weights, save_weights
from xling.utils.io import atomic_dir, read_json, write_json_atomic

MODES = ("min", "max")
BEST_DIR = "best"
WEIGHTS = "model.safetensors"
INFO = "best.json"


class BestKeeper:
    """Tracks ``metric`` (lower is better for ``mode="min"``) and its weights under ``out_dir/best``."""

    def __init__(self, metric: str, mode: str, out_dir: str | Path) -> None:
        self.metric, self.mode = metric, mode
        self.dir = Path(out_dir) / BEST_DIR
        self.step: int | None = None  # step of the best validation so far
        self.value: float | None = None

    def better(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.value is None:
            return True
        return value < self.value if self.mode == "min" else value > self.value

    def update(self, metrics: dict[str, float], step: int, model: torch.nn.Module, save: bool = True) -> bool:
        """Record ``metrics`` of ``step``; if the metric improved, keep it and (``save``: rank 0)
        write the weights. Returns whether it improved."""
        if self.metric not in metrics:
            known = ", ".join(sorted(metrics)) or "none"
            raise XlingError(f"trainer best_metric={self.metric!r}: not a validation metric (this run reports: {known})")
        value = float(metrics[self.metric])
        if not self.better(value):
            return False
        if save:
            with atomic_dir(self.dir) as tmp:
                save_weights(model, tmp / WEIGHTS)
                write_json_atomic(tmp / INFO, {"step": step, "metric": self.metric, "mode": self.mode, "value": value})
        self.step, self.value = step, value
        return True

    def state(self) -> dict[str, Any] | None:
        """For the trainer state and the summary: None until a validation has been kept."""
        if self.step is None:
            return None
        return {"step": self.step, "metric": self.metric, "mode": self.mode, "value": self.value}

    def load_state(self, state: dict[str, Any] | None) -> None:
        """Continue from a checkpoint's :meth:`state` (ignored when it tracked another metric)."""
        if state and state.get("metric") == self.metric and state.get("mode") == self.mode:
            self.step, self.value = int(state["step"]), float(state["value"])

    def restore(self, model: torch.nn.Module) -> bool:
        """Load the best weights into ``model``; False when none were kept."""
        if self.step is None:
            return False
        info = read_json(self.dir / INFO)
        if not isinstance(info, dict) or info.get("step") != self.step:
            raise XlingError(f"{self.dir / INFO}: does not record the best step {self.step} of this run's state")
        try:
            load_weights(model, self.dir / WEIGHTS)
        except Exception as e:  # noqa: BLE001 - a damaged file on disk
            raise XlingError(f"{self.dir / WEIGHTS}: cannot load the best weights ({e})") from None
        return True
