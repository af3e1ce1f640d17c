"""Helpers for scripts that chain ``xling`` commands (the quickstart, benchmarks).

Each step runs the real CLI in a subprocess (what a user would type), and finished
steps are reused, so an interrupted pipeline resumes where it stopped. Not part of the
``xling`` package: benchmarks (run as ``python benchmarks/NAME.py``) import it as
``pipeline``; ``scripts/quickstart.py`` puts this folder on ``sys.path`` first.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import math
import os
import platform
import shutil
import struct
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository (this file is benchmarks/pipeline.py)


def xling(*args: str, check: bool = True) -> int:
    """Run ``xling ARGS`` (this interpreter), echoing the command; its exit status."""
    print("$ xling " + " ".join(args), flush=True)
    return subprocess.run([sys.executable, "-m", "xling.cli", *args], check=check, cwd=ROOT).returncode


def ensure_debian(out: Path, langs: str = "en", *extra: str) -> str | None:
    """Build the Debian descriptions corpus ``out`` (``xling corpus debian-descriptions --langs
    LANGS EXTRA``) unless it is there; as root, ``apt-get update`` first fetches the translated
    lists that are missing. None when the corpus is there, else why not (one line)."""
    args = ("corpus", "debian-descriptions", "--langs", langs, *extra, "--out", str(out), "--quiet")
    if (Path(out) / "manifest.json").is_file() or xling(*args, check=False) == 0:
        return None
    apt_langs = langs.replace("zh", "zh_CN")  # apt's name for xling's zh
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq", "-o", f"Acquire::Languages={apt_langs}"], check=False)
        if xling(*args, check=False) == 0:
            return None
    return (f"Debian's translated descriptions ({langs}) are not on this machine; run "
            f"`sudo apt-get update -o Acquire::Languages=\"{apt_langs}\"`")


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


def trained_minutes(run: Path) -> float:
    """Training minutes recorded by ``run``'s latest checkpoint (0 without one)."""
    latest = run / "checkpoints" / "latest"
    if not latest.is_file():
        return 0.0
    state = run / "checkpoints" / latest.read_text(encoding="utf-8").strip() / "trainer_state.json"
    try:
        return float(json.loads(state.read_text(encoding="utf-8"))["elapsed_s"]) / 60
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0  # an unreadable checkpoint: `xling train --resume` says what is wrong


def train_for(config: str | Path, run: Path, minutes: float, *sets: str) -> dict:
    """:func:`train_once` with a budget of ``minutes`` of training in all: a resumed run
    gets what its latest checkpoint left of it (``trainer.max_minutes`` counts one call),
    so an interrupted benchmark stage does not train longer than its siblings."""
    left = max(minutes - trained_minutes(run), 0.01)  # > 0: the trainer still takes a step and saves
    return train_once(config, run, f"trainer.max_minutes={left:.4f}", "trainer.progress=false", *sets)


def n_parameters(model_dir: Path) -> int:
    """Parameters stored in ``model_dir/model.safetensors`` (tied tensors once), read from
    the file's header without loading torch."""
    with open(Path(model_dir) / "model.safetensors", "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    return sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what platform knows."""
    cpu = platform.processor() or platform.machine()
    try:
        names = [x.split(":", 1)[1].strip() for x in Path("/proc/cpuinfo").read_text().splitlines()
                 if x.startswith("model name")]
        return names[0] if names else cpu
    except OSError:
        return cpu


def gpu_models() -> str | None:
    """The machine's NVIDIA GPUs ("1x NVIDIA H200"; nvidia-smi), else None."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    names = [x.strip() for x in done.stdout.splitlines() if x.strip()]
    return f"{len(names)}x {names[0]}" if done.returncode == 0 and names else None


def run_meta(**extra) -> dict:
    """Date, machine (CPU model, cores, GPUs, OS, Python, torch) and command of a benchmark run."""
    cpu = cpu_model()
    try:
        torch_v = f", torch {importlib.metadata.version('torch')}"
    except importlib.metadata.PackageNotFoundError:
        torch_v = ""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = gpu_models()
    gpu = f", {gpu}" if gpu else ""
    machine = f"{cpu}, {cores} cores{gpu}, {platform.system()}, python {platform.python_version()}{torch_v}"
    return {"date": datetime.date.today().isoformat(), "machine": machine,
            "command": " ".join(["python", *sys.argv]), **extra}
