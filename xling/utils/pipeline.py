"""Helpers for scripts that chain ``xling`` commands (the quickstart, benchmarks).

Each step runs the real CLI in a subprocess (what a user would type), and finished
steps are reused, so an interrupted pipeline resumes where it stopped.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def xling(*args: str, check: bool = True) -> int:
    """Run ``xling ARGS`` (this interpreter), echoing the command; its exit status."""
    print("$ xling " + " ".join(args), flush=True)
    return subprocess.run([sys.executable, "-m", "xling.cli", *args], check=check, cwd=ROOT).returncode


def train_once(config: str | Path, run: Path, *sets: str) -> dict:
    """``xling train`` unless ``run`` already holds a final model (resuming a partial
    run); returns the run's summary.json."""
    if not (run / "model" / "config.json").is_file():
        args = ["train", "--config", str(config), "--out", str(run)]
        for s in sets:
            args += ["--set", s]
        if (run / "checkpoints" / "latest").is_file():
            args.append("--resume")
        xling(*args)
    return json.loads((run / "summary.json").read_text())


def head(src: Path, dst: Path, n: int) -> Path:
    """Copy the first ``n`` lines of ``src`` to ``dst``; returns ``dst``."""
    lines = src.read_text(encoding="utf-8").splitlines()[:n]
    dst.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    return dst
