"""Training metrics: windowed averages, a JSON-lines log and loss-curve plots.

``out_dir/metrics.jsonl`` holds one JSON object per line:

- training lines: ``{"step", "lr", "loss", "grad_norm", <stat averages>,
  "tokens_per_s", "tokens_seen", "elapsed_s"}``
- validation lines: ``{"step", "split": "valid", <metrics>, "elapsed_s"}``

Stat convention (what a ``loss_fn`` returns next to its loss): every stat is
averaged over the micro-batches of the logging window that reported it (and over
ranks), except ``"tokens"``, the number of input tokens of the micro-batch, which
is summed and gives ``tokens_per_s`` and ``tokens_seen`` (all ranks together).
A stat is a Python number or a one-element tensor; tensors are summed on their device
(:class:`StatWindow`) and read back once per log line, so reporting them costs no
host-device sync per micro-batch.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from xling.utils.io import atomic_path, write_lines_atomic

TOKENS = "tokens"


class StatWindow:
    """Sums and counts of the stats reported since the last log line.

    A stat is a Python number or a one-element tensor. Tensors are detached and summed in
    float64 on their own device, without a host sync; :meth:`to_json` reads every sum back
    at once. float64 sums equal Python's float sums of the same values (float32 stats
    included) and keep token counts exact (below 2**53).
    """

    def __init__(self) -> None:
        self.sums: dict[str, float | torch.Tensor] = {}  # a 0-d float64 tensor once a tensor was added
        self.counts: dict[str, int] = {}

    def add(self, stats: dict[str, Any]) -> None:
        """Record one micro-batch's (or step's) stats."""
        for key, value in stats.items():
            if isinstance(value, torch.Tensor):
                value = value.detach().reshape(()).to(torch.float64)
            else:
                value = float(value)
            self.sums[key] = self.sums.get(key, 0.0) + value
            self.counts[key] = self.counts.get(key, 0) + 1

    def floats(self) -> dict[str, float]:
        """The sums as Python floats: one device-to-host copy per device holding sums."""
        out = {k: v for k, v in self.sums.items() if not isinstance(v, torch.Tensor)}
        by_device: dict[torch.device, list[str]] = {}
        for key, value in self.sums.items():
            if isinstance(value, torch.Tensor):
                by_device.setdefault(value.device, []).append(key)
        for keys in by_device.values():
            out.update(zip(keys, torch.stack([self.sums[k] for k in keys]).tolist()))
        return {k: out[k] for k in self.sums}

    def empty(self) -> bool:
        """True when nothing was recorded since the last reset."""
        return not self.counts

    def reset(self) -> None:
        self.sums.clear()
        self.counts.clear()

    def to_json(self) -> dict[str, Any]:
        """Sums (as floats: the window's host sync) and counts, merged over ranks with :meth:`merge`."""
        return {"sums": self.floats(), "counts": dict(self.counts)}

    @staticmethod
    def merge(parts: list[dict[str, Any]]) -> tuple[dict[str, float], float]:
        """Combine ranks' :meth:`to_json`: (averaged stats, total tokens)."""
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for part in parts:
            for key, value in part["sums"].items():
                sums[key] = sums.get(key, 0.0) + value
                counts[key] = counts.get(key, 0) + part["counts"][key]
        tokens = sums.pop(TOKENS, 0.0)
        counts.pop(TOKENS, None)
        return {k: sums[k] / counts[k] for k in sums}, tokens


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Records of a metrics.jsonl; unparsable lines (e.g. a torn last line) are skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
    return records


class MetricsLog:
    """Appends JSON lines to ``path`` (one per log or validation event)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, record: dict[str, Any]) -> None:
        """Append one record as a line and flush it to disk."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")

    def truncate(self, step: int) -> None:
        """Keep only records with ``step <= step`` (rewritten atomically)."""
        if not self.path.exists():
            return
        records = read_metrics(self.path)
        kept = [json.dumps(r, ensure_ascii=False) for r in records if r["step"] <= step]
        write_lines_atomic(self.path, kept)


def _numeric(record: dict[str, Any], key: str) -> bool:
    value = record.get(key)
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def plot_curves(metrics_jsonl: str | Path, png_path: str | Path) -> None:
    """Plot training losses (total and ``loss/*``) and validation metrics vs step, one
    validation panel per metric family (the prefix before ``/``: ppl, acc, ce...), so
    that metrics of different scales do not flatten each other."""
    from matplotlib.figure import Figure  # no pyplot: leaves the global backend alone

    records = read_metrics(metrics_jsonl)
    train = [r for r in records if "split" not in r]
    valid = [r for r in records if r.get("split") == "valid"]
    valid_keys = sorted({k for r in valid for k in r if k not in ("step", "split", "elapsed_s")})
    families: dict[str, list[str]] = {}
    for key in valid_keys:
        families.setdefault(key.split("/", 1)[0], []).append(key)
    fig = Figure(figsize=(6 * (1 + max(len(families), 1)), 4.5))
    axes = list(fig.subplots(1, 1 + max(len(families), 1)))
    loss_keys = ["loss"] + sorted({k for r in train for k in r if k.startswith("loss/")})
    for key in loss_keys:
        points = [(r["step"], r[key]) for r in train if _numeric(r, key)]
        if points:
            axes[0].plot(*zip(*points), label=key, linewidth=1.5 if key == "loss" else 1.0)
    axes[0].set_title("training loss")
    axes[1].set_title("validation")
    for ax, (family, keys) in zip(axes[1:], families.items()):
        for key in keys:
            points = [(r["step"], r[key]) for r in valid if _numeric(r, key)]
            if points:
                ax.plot(*zip(*points), marker="o", markersize=3, label=key)
        ax.set_title(f"validation {family}")
        if family == "ppl":
            ax.set_yscale("log")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
