"""Save and load any xling model as a directory of safetensors + JSON (no pickle).

Layout of a model directory::

    config.json        {"model_type": ..., "format_version": 1, "config": {...}, "extra": {...}}
    model.safetensors  the weights (tied weights stored once, see :func:`save_weights`)
    checksums.json     {"config.json": "<sha256>", "model.safetensors": ..., "spm.model": ..., "vocab.json": ...}
    (vocabulary files) written by ``vocab.save(dir)`` when a vocabulary is given

checksums.json covers the configuration and the vocabulary as well as the weights: an
edit that keeps tensor shapes (``n_heads``, ``pooling``, the language list) would otherwise
load silently and change outputs. Loading verifies every file the record lists (records of
older versions list only the weights, and still load; :mod:`xling.utils.integrity`).

A model class used with these helpers has a class attribute ``model_type`` (str) and a
constructor taking its config dataclass. Every loading failure (missing file, corrupt or
truncated weights, bad JSON, unknown config key, shape mismatch) is a one-line XlingError
naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import safetensors
import safetensors.torch
import torch
from torch import nn

from xling.config import from_dict, to_dict
from xling.errors import XlingError
from xling.tokenization.vocab import META_FILE as VOCAB_META_FILE, MODEL_FILE as VOCAB_MODEL_FILE
from xling.utils.integrity import CHECKSUMS_FILE, read_checksums, record_checksums, verify_checksums
from xling.utils.io import atomic_dir, read_json, write_json_atomic

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
COVERED_FILES = (CONFIG_FILE, WEIGHTS_FILE, VOCAB_MODEL_FILE, VOCAB_META_FILE)  # in checksums.json when present
FORMAT_VERSION = 1

M = TypeVar("M", bound=nn.Module)


def save_weights(model: nn.Module, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Write ``model.state_dict()`` to the safetensors file ``path``, from any device.

    Tied weights (one tensor under several names) are stored once, under the first name in
    sorted order, and the other names go into the metadata, as ``safetensors.torch.save_model``
    does (so its ``load_model`` reads the file). Unlike ``save_model``, weights that are views
    of one flat buffer without being tied (cuDNN's LSTM weights on a GPU) are saved, each
    copied out on its own."""
    groups: dict[tuple, list[str]] = {}
    state = model.state_dict()
    for name, t in state.items():
        key = (t.device, t.dtype, t.data_ptr(), tuple(t.shape), tuple(t.stride()))
        groups.setdefault(key, []).append(name)
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}  # tied name -> the name it is stored under
    for names in groups.values():
        keep, *others = sorted(names)
        tensors[keep] = state[keep].detach().to("cpu", copy=True).contiguous()  # its own storage
        aliases.update(dict.fromkeys(others, keep))
    meta = {**aliases, **(metadata or {})} or None  # the caller's entries win, as in save_model
    safetensors.torch.save_file(dict(sorted(tensors.items())), str(path), metadata=meta)


def load_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a file of :func:`save_weights` (or ``save_model``) into ``model`` in place, strictly:
    every weight found under its own name or, when tied, under the name the metadata gives;
    no tensor left over; shapes equal. Weights are copied into the existing tensors, so a
    model on a GPU (a flat cuDNN buffer included) keeps its device and layout.
    Raises ValueError naming the first problem (and safetensors' own errors for a bad file)."""
    with safetensors.safe_open(str(path), framework="pt") as f:
        aliases = f.metadata() or {}
        stored = {name: f.get_tensor(name) for name in f.keys()}
    used = set()
    state = model.state_dict()
    for name, t in state.items():
        src_name = name if name in stored else aliases.get(name)
        if src_name not in stored:
            raise ValueError(f"missing weight {name!r}")
        src = stored[src_name]
        if src.shape != t.shape:
            raise ValueError(f"size mismatch for {name!r}: {tuple(src.shape)} stored, {tuple(t.shape)} in the model")
        with torch.no_grad():
            t.copy_(src)
        used.add(src_name)
    if extra := sorted(set(stored) - used):
        raise ValueError(f"unexpected weight {extra[0]!r}")


def _model_type(model_cls: type) -> str:
    return getattr(model_cls, "model_type", model_cls.__name__)


def save_model_dir(
    model: nn.Module,
    config: Any,
    dir: str | os.PathLike,
    extra_json: dict[str, Any] | None = None,
    vocab: Any = None,
) -> Path:
    """Write ``model`` (weights), its ``config`` dataclass, checksums and ``vocab`` to ``dir``.

    The directory is built under a temporary name and renamed into place, so ``dir`` is
    either the complete old one or the complete new one. ``extra_json`` (JSON-able) is
    stored under "extra" in config.json; ``vocab`` is any object with ``.save(dir)``.
    """
    dir = Path(dir)
    with atomic_dir(dir) as tmp:
        weights = tmp / WEIGHTS_FILE
        save_weights(model, weights, metadata={"model_type": _model_type(type(model))})
        write_model_meta(type(model), config, tmp, extra_json=extra_json, vocab=vocab)
    return dir


def write_model_meta(
    model_cls: type, config: Any, dir: str | os.PathLike, extra_json: dict[str, Any] | None = None, vocab: Any = None
) -> None:
    """Add config.json (and the vocabulary), then checksums.json covering them and the
    weights, next to an existing ``dir/model.safetensors`` (e.g. a training checkpoint,
    through the trainer's ``save_extra``), making ``dir`` a loadable model directory."""
    dir = Path(dir)
    meta = {
        "model_type": _model_type(model_cls),
        "format_version": FORMAT_VERSION,
        "config": to_dict(config),
        "extra": extra_json or {},
    }
    write_json_atomic(dir / CONFIG_FILE, meta)
    if vocab is not None:
        vocab.save(dir)
    record_checksums(dir, COVERED_FILES)  # last: it covers every file written above


def _read_json(path: Path) -> Any:
    return read_json(path, missing="missing (not a complete model directory)")


def read_model_config(dir: str | os.PathLike) -> dict[str, Any]:
    """The parsed config.json of a model directory (keys model_type, config, extra),
    verified against checksums.json when the record lists it."""
    dir = Path(dir)
    if not dir.is_dir():
        raise XlingError(f"{dir}: no such model directory")
    path = dir / CONFIG_FILE
    data = _read_json(path)
    verify_checksums(dir, [CONFIG_FILE])
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict) or "model_type" not in data:
        raise XlingError(f"{path}: not an xling model config (needs 'model_type' and a 'config' mapping)")
    return data


def _one_line(e: BaseException) -> str:
    return "; ".join(s.strip() for s in str(e).splitlines() if s.strip()) or type(e).__name__


def load_model_dir(model_cls: type[M], config_cls: type, dir: str | os.PathLike, device: str = "cpu") -> M:
    """Build ``model_cls(config)`` from a directory written by :func:`save_model_dir`.

    Verifies that the files exist, the model type matches, the config keys are valid and
    every file checksums.json lists (weights, config, vocabulary) still has its recorded
    sha256, then loads the weights strictly.
    """
    dir = Path(dir)
    meta = read_model_config(dir)
    config_path = dir / CONFIG_FILE
    expected = _model_type(model_cls)
    if meta["model_type"] != expected:
        raise XlingError(f"{config_path}: model_type {meta['model_type']!r}, expected {expected!r}")
    try:
        config = from_dict(config_cls, meta["config"])
    except XlingError as e:
        raise XlingError(f"{config_path}: {e}") from None
    weights = dir / WEIGHTS_FILE
    if not weights.is_file():
        raise XlingError(f"{weights}: missing (not a complete model directory)")
    sums = read_checksums(dir, required=True)
    if WEIGHTS_FILE not in sums:
        raise XlingError(f"{dir / CHECKSUMS_FILE}: no sha256 recorded for {WEIGHTS_FILE}")
    verify_checksums(dir, sums=sums)
    model = model_cls(config)
    try:
        load_weights(model, weights)
    except (safetensors.SafetensorError, RuntimeError, ValueError, OSError) as e:
        raise XlingError(f"{weights}: cannot load weights ({_one_line(e)})") from None
    return model.to(device)
