"""Training checkpoints: safetensors + JSON only, written atomically, verified on load.

Layout of ``out_dir/checkpoints/``::

    step_00001000/
        model.safetensors       xling.models.io.save_weights (tied weights once, any device)
        optimizer.safetensors   every optimizer state tensor as "state.{param_index}.{name}"
        trainer_state.json      step, tokens, elapsed, per-rank RNG + batch-source state,
                                optimizer param groups, config, sha256 of both tensor files
        ...                     files added by save_extra (model config, vocab)
    latest                      text file naming the newest step directory

No pickle anywhere: RNG states are base64 / int lists, the optimizer's
non-tensor state is JSON. Loading checks the sha256 of both tensor files first,
so a truncated or corrupted file is a one-line :class:`XlingError` naming it.
"""

from __future__ import annotations

import base64
import json
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from xling.errors import XlingError
from xling.models.io import load_weights, save_weights
from xling.utils.io import atomic_dir, read_json, sha256_file, write_json_atomic, write_text_atomic

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "trainer_state.json"
LATEST_FILE = "latest"
_STEP_DIR = re.compile(r"^step_(\d{8,})$")


def step_dir_name(step: int) -> str:
    """Directory name of the checkpoint taken after ``step`` updates."""
    return f"step_{step:08d}"


# ----------------------------------------------------------------- optimizer state


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into flat tensors and a JSON-able rest."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entries in sd["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    groups = [
        {k: list(v) if isinstance(v, tuple) else v for k, v in group.items()}
        for group in sd["param_groups"]
    ]
    try:
        json.dumps([groups, scalars])
    except TypeError as e:
        raise TypeError(f"optimizer state is not JSON-serialisable: {e}") from None
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_tensors(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict
) -> None:
    """Inverse of :func:`optimizer_to_tensors`: load the state into ``optimizer``."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    for index, entries in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(entries)
    groups = [
        {k: tuple(v) if k == "betas" else v for k, v in group.items()}
        for group in meta["param_groups"]
    ]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# ----------------------------------------------------------------------- RNG state


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)


def capture_rng() -> dict[str, Any]:
    """Every global RNG state (torch CPU/CUDA, Python, NumPy legacy) as JSON."""
    np_state = np.random.get_state(legacy=False)
    np_state["state"]["key"] = np_state["state"]["key"].tolist()
    version, internal, gauss = random.getstate()
    out = {
        "torch": _b64(torch.get_rng_state()),
        "python": [version, list(internal), gauss],
        "numpy": np_state,
    }
    if torch.cuda.is_available():
        out["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return out


def restore_rng(state: dict[str, Any]) -> None:
    """Restore the states captured by :func:`capture_rng`."""
    torch.set_rng_state(_unb64(state["torch"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = dict(state["numpy"])
    key = np.asarray(np_state["state"]["key"], dtype=np.uint32)
    np_state["state"] = {**np_state["state"], "key": key}
    np.random.set_state(np_state)
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_unb64(s) for s in state["cuda"]])


# ------------------------------------------------------------------ save and load


def list_checkpoints(root: Path) -> list[Path]:
    """Step directories under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name)]
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))


def save_checkpoint(
    root: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    save_extra: Callable[[Path], None] | None = None,
    keep: int = 2,
) -> Path:
    """Write ``root/step_{step:08d}`` atomically, point ``latest`` at it, rotate.

    ``state`` (JSON-able) goes into trainer_state.json, completed with the
    optimizer's param groups and the sha256 of both tensor files. ``save_extra``
    runs last and may add files; ``keep`` most recent checkpoints up to ``step`` survive
    (``keep <= 0`` keeps all).
    """
    root = Path(root)
    target = root / step_dir_name(step)
    with atomic_dir(target) as tmp:
        save_weights(model, tmp / MODEL_FILE)
        tensors, meta = optimizer_to_tensors(optimizer)
        save_file(tensors, str(tmp / OPTIMIZER_FILE))
        if save_extra is not None:
            save_extra(tmp)
        full = dict(state, step=step, optimizer=meta)
        full["sha256"] = {n: sha256_file(tmp / n) for n in (MODEL_FILE, OPTIMIZER_FILE)}
        write_json_atomic(tmp / STATE_FILE, full)
    write_text_atomic(root / LATEST_FILE, target.name + "\n")
    if keep > 0:  # step directories past this one (a damaged or unnamed newer one) never push it out
        done = [p for p in list_checkpoints(root) if int(_STEP_DIR.match(p.name).group(1)) <= step]
        for old in done[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return target


def find_latest(root: Path) -> Path:
    """The checkpoint named by ``root/latest`` (else the highest step directory)."""
    root = Path(root)
    latest = root / LATEST_FILE
    if latest.is_file():
        name = latest.read_text(encoding="utf-8", errors="replace").strip()
        path = root / name
        if not _STEP_DIR.match(name) or not path.is_dir():
            raise XlingError(f"{latest}: names {name!r}, which is not a checkpoint directory")
        return path
    found = list_checkpoints(root)
    if not found:
        raise XlingError(f"{root}: no checkpoint to resume from")
    return found[-1]


def read_state(path: Path) -> dict[str, Any]:
    """Read and verify a checkpoint's trainer_state.json and tensor-file hashes."""
    path = Path(path)
    state_file = path / STATE_FILE
    state = read_json(state_file, missing="missing (incomplete checkpoint)")
    if not isinstance(state, dict) or not isinstance(state.get("sha256"), dict):
        raise XlingError(f"{state_file}: not a trainer state (no sha256 table)")
    for name in (MODEL_FILE, OPTIMIZER_FILE):
        file = path / name
        if not file.is_file():
            raise XlingError(f"{file}: missing (incomplete checkpoint)")
        if sha256_file(file) != state["sha256"].get(name):
            raise XlingError(f"{file}: sha256 mismatch (corrupt or truncated checkpoint file)")
    return state


def latest_intact(root: Path) -> tuple[Path, dict[str, Any], list[tuple[Path, str]]]:
    """The newest checkpoint that passes :func:`read_state`: the one ``latest`` names, else
    the next older step directories in turn. Returns ``(path, state, skipped)``, ``skipped``
    listing each newer damaged checkpoint with its one-line problem. When none is intact, the
    newest one's error is raised (noting that no older one is intact either)."""
    root = Path(root)
    skipped: list[tuple[Path, str]] = []
    try:
        newest = find_latest(root)
    except XlingError as e:  # `latest` names no checkpoint: fall back on the step directories
        if not list_checkpoints(root):
            raise
        skipped.append((root / LATEST_FILE, str(e)))
        newest = None
    found = list_checkpoints(root)
    if newest is None:
        candidates = found[::-1]
    else:
        limit = int(_STEP_DIR.match(newest.name).group(1))
        candidates = [newest] + [p for p in found[::-1] if int(_STEP_DIR.match(p.name).group(1)) < limit]
    for path in candidates:
        try:
            return path, read_state(path), skipped
        except XlingError as e:
            skipped.append((path, str(e)))
    first = skipped[0][1]
    if len(skipped) == 1:
        raise XlingError(first)
    raise XlingError(f"{first}; none of the {len(skipped) - 1} older checkpoint(s) in {root} is intact either")


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
    state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Verify and load a checkpoint into ``model`` (and ``optimizer``); return its state
    (``state``: what :func:`read_state` already returned for ``path``, not verified again)."""
    path = Path(path)
    state = read_state(path) if state is None else state
    try:
        load_weights(model, path / MODEL_FILE)
    except Exception as e:  # noqa: BLE001 - any failure here is a bad user file
        problem = _first_line(e)
        raise XlingError(f"{path / MODEL_FILE}: does not fit the model ({problem})") from None
    if optimizer is not None:
        try:
            tensors = load_file(str(path / OPTIMIZER_FILE))
            optimizer_from_tensors(optimizer, tensors, state["optimizer"])
        except Exception as e:  # noqa: BLE001
            raise XlingError(
                f"{path / OPTIMIZER_FILE}: does not fit the optimizer ({_first_line(e)})"
            ) from None
    return state
