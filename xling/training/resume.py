"""What ``--resume`` checks and tidies before training continues (used by the Trainer).

- :func:`remove_temps`: temporaries of writers killed mid-write (``kill -9`` during a
  checkpoint) are removed from the run directory and its ``checkpoints/``; one log line says
  how many (:func:`xling.utils.io.remove_stale_temps` only touches those of dead processes of
  this host).
- :func:`warn_skipped`: a damaged newest checkpoint (truncated file, sha256 mismatch) is
  skipped for the newest intact one (:func:`xling.training.checkpoint.latest_intact`), with
  one warning line naming both.
- :func:`config_changes` / :func:`warn_config_changes`: the task's whole config travels in
  each checkpoint (``run_config`` of the trainer state); resuming with a different one (other
  objectives, corpus, masking...) is allowed but warned about in one line naming what changed.
  The ``trainer`` section is left out: its changes (longer ``max_steps``, another lr
  schedule) are meant to apply after resuming.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from xling.utils.io import remove_stale_temps

log = logging.getLogger(__name__)

IGNORED_SECTIONS = ("trainer",)
_SHOWN = 3  # changed keys spelled out in the warning
_WIDTH = 90  # characters of a value shown


def remove_temps(out_dir: Path, ckpt_root: Path) -> list[Path]:
    """Remove stale temporaries under ``out_dir`` and ``ckpt_root``; log how many."""
    removed = remove_stale_temps(ckpt_root) + remove_stale_temps(out_dir)
    if removed:
        names = ", ".join(p.name for p in removed[:2]) + (" ..." if len(removed) > 2 else "")
        log.warning("xling: removed %d stale temporary file(s) of an interrupted write from %s (%s)",
                    len(removed), out_dir, names)
    return removed


def warn_skipped(skipped: list[tuple[Path, str]], used: Path) -> None:
    """One warning line for the damaged checkpoints skipped in favour of ``used``."""
    if not skipped:
        return
    path, problem = skipped[0]
    more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
    log.warning("xling: warning: checkpoint %s is damaged (%s)%s; resuming from %s, the newest intact one",
                path, problem, more, used.name)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _compact(value: Any) -> Any:
    """Drop empty / default-looking entries of dicts so objectives read short."""
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items() if v not in ("", None, [], {}, 0)}
    if isinstance(value, list):
        return [_compact(v) for v in value]
    return value


def _show(value: Any) -> str:
    text = json.dumps(_compact(value), ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= _WIDTH else text[: _WIDTH - 3] + "..."


def _describe(key: str, old: Any, new: Any) -> str:
    if isinstance(old, list) and isinstance(new, list):
        removed = [x for x in old if x not in new]
        added = [x for x in new if x not in old]
        parts = ([f"removed {_show(x)}" for x in removed] + [f"added {_show(x)}" for x in added]) or [
            f"{_show(old)} -> {_show(new)}"]  # same entries, another order
        return f"{key}: {', '.join(parts)}"
    return f"{key}: {_show(old)} -> {_show(new)}"


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Descriptions of the keys (dotted; lists as a whole) whose values differ, outside
    :data:`IGNORED_SECTIONS`."""
    old = {k: v for k, v in old.items() if k not in IGNORED_SECTIONS}
    new = {k: v for k, v in new.items() if k not in IGNORED_SECTIONS}
    a, b = _flatten(old), _flatten(new)
    missing = object()
    out = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key, missing), b.get(key, missing)
        if x != y:
            out.append(_describe(key, None if x is missing else x, None if y is missing else y))
    return out


def warn_config_changes(old: dict[str, Any] | None, new: dict[str, Any] | None, checkpoint: Path) -> list[str]:
    """Warn in one line when the resumed ``checkpoint`` was written under another config."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return []
    changes = config_changes(old, json.loads(json.dumps(new)))  # as stored: tuples are lists
    if changes:
        shown = "; ".join(changes[:_SHOWN]) + (f"; and {len(changes) - _SHOWN} more" if len(changes) > _SHOWN else "")
        log.warning("xling: warning: resuming %s with a config that differs from the one it was trained with: %s",
                    checkpoint, shown)
    return changes
