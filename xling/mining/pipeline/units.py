"""Units of work and their completion records.

A unit is one stage applied to one shard (or to a whole side, or to everything): a pure
function from files to files. It writes each output under a temporary name and renames
it (:func:`xling.utils.io.atomic_path`), then writes ``done/<stage>/<key>.json``:

    {"unit": "embed/src/00003", "settings": "<sha256 of the stage's settings>",
     "inputs": {"prepare/src/00003": "<digest>", "dedup/src/00003.keep.npy": "<sha256>"},
     "outputs": {"embed/src/00003.npy": {"size": 2048128, "sha256": "..."}},
     "digest": "<sha256 of the outputs' hashes>", "rows": 1000, "counts": {...}, "seconds": 1.9}

A rerun skips a unit whose record holds the same settings hash and input digests and whose
outputs still have their recorded sizes; anything else is recomputed. Digests are of the
outputs' content, so a recomputed unit with the same result leaves later stages valid; an
input may also be one output file of a unit (its own sha256), not the whole unit.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xling.utils.io import sha256_file, write_json_atomic

StageFn = Callable[[Path, "Unit"], dict]
STAGES: dict[str, StageFn] = {}  # stage name -> function(run directory, unit) -> {"rows": n, counts...}


def stage(name: str) -> Callable[[StageFn], StageFn]:
    """Register a stage function under ``name``."""

    def register(fn: StageFn) -> StageFn:
        STAGES[name] = fn
        return fn

    return register


def settings_hash(settings: Any) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Unit:
    stage: str  # stage name (a key of STAGES)
    key: str  # "src/00003", "fwd/00000", "src", "all"
    outputs: tuple[str, ...]  # files it writes, relative to the run directory
    settings: dict  # the settings its result depends on (hashed into the record)
    inputs: dict[str, str] = field(default_factory=dict)  # upstream unit or input file -> digest
    args: dict = field(default_factory=dict)  # what the function needs beyond settings (paths, ranges)

    @property
    def name(self) -> str:
        return f"{self.stage}/{self.key}"

    def record_path(self, run: Path) -> Path:
        return run / "done" / self.stage / f"{self.key}.json"


def read_record(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def valid_record(run: Path, unit: Unit) -> dict | None:
    """The unit's record if it is finished for these settings and inputs, else None."""
    rec = read_record(unit.record_path(run))
    if not rec or rec.get("settings") != settings_hash(unit.settings) or rec.get("inputs") != unit.inputs:
        return None
    outputs = rec.get("outputs") or {}
    if set(outputs) != set(unit.outputs):
        return None
    for rel, out in outputs.items():
        try:
            if (run / rel).stat().st_size != out["size"]:
                return None
        except (OSError, TypeError, KeyError):
            return None
    return rec


def run_unit(run: str, unit: Unit) -> dict:
    """Run one unit (in any process) and write its record; returns the record."""
    from xling.mining.pipeline import stages  # noqa: F401  (registers the stage functions)

    root = Path(run)
    start = time.perf_counter()
    counts = STAGES[unit.stage](root, unit)
    outputs = {rel: {"size": (root / rel).stat().st_size, "sha256": sha256_file(root / rel)} for rel in unit.outputs}
    rec = {"unit": unit.name, "settings": settings_hash(unit.settings), "inputs": unit.inputs, "outputs": outputs,
           "digest": settings_hash(outputs),
           "rows": int(counts.pop("rows", 0)), "counts": counts, "seconds": round(time.perf_counter() - start, 4),
           "pid": os.getpid()}
    write_json_atomic(unit.record_path(root), rec)
    return rec
