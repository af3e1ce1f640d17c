"""The backend registry: what ``--model`` may name, each kind declared once, in its own module.

A backend module (``xling/embeddings/backends/<kind>.py``) calls :func:`register_backend` at
import; ``backends/__init__.py`` imports the modules in detection order (xling, then
ONNX exports, then sentence-transformers, then plain transformers, then the named ones). :func:`load_encoder`
resolves ``--model``:

1. a name a backend registers (``use-multilingual``);
2. a directory: the first backend whose ``detect`` accepts its files; none is a one-line
   error listing what each looked for;
3. otherwise a Hugging Face hub id (``org/name``): the cached snapshot, or a download when
   online; offline and not cached is one line (:mod:`xling.embeddings.backends.hf`).

Backend modules import torch, transformers and other heavy packages inside their functions.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from xling.embeddings.backends.base import Encoder
from xling.errors import XlingError

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")  # what could be a hub model id


@dataclass(frozen=True)
class Backend:
    kind: str  # short name: xling, sentence-transformers, transformers, use
    load: Callable[[str, str], Encoder]  # (directory or name, device) -> encoder
    looks_for: str = ""  # the files detect() wants, for the error naming what was looked for
    detect: Callable[[Path], bool] | None = None  # whether a directory is of this kind (None: named only)
    names: tuple[str, ...] = ()  # --model values selecting it without a directory


_BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> Backend:
    """Add ``backend`` (a kind is registered once; detection follows registration order)."""
    if _BACKENDS.setdefault(backend.kind, backend) is not backend:
        raise ValueError(f"encoder backend {backend.kind!r} is registered twice")
    return backend


def backends() -> list[Backend]:
    """Every backend, in detection order (importing the modules that register them)."""
    import xling.embeddings.backends  # noqa: F401  (its __init__ imports every backend module)

    return list(_BACKENDS.values())


def detect_dir(path: Path, kinds: tuple[str, ...] | None = None) -> Backend:
    """The backend of a model directory; none is an XlingError listing what was looked for."""
    candidates = [b for b in backends() if b.detect is not None and (kinds is None or b.kind in kinds)]
    for b in candidates:
        if b.detect(path):
            return b
    looked = "; ".join(f"{b.looks_for} ({b.kind})" for b in candidates)
    raise XlingError(f"{path}: not a model directory xling knows; looked for {looked}")


def names() -> list[str]:
    """Every --model name that selects a backend without a directory."""
    return sorted(n for b in backends() for n in b.names)


def load_encoder(model: str | Path, device: str = "cpu") -> Encoder:
    """The encoder ``model`` names (see the module doc) on ``device``."""
    from xling.embeddings.backends.hf import hub_snapshot

    text = str(model)
    for b in backends():
        if text in b.names:
            return b.load(text, device)
    path = Path(model)
    if path.is_dir():
        return detect_dir(path).load(str(path), device)
    if path.exists():
        raise XlingError(f"{path}: a file, not a model directory")
    if text.startswith((".", "/", "~")) or not HUB_ID.fullmatch(text):
        raise XlingError(f"{text}: no such model directory (or encoder name: {', '.join(names())})")
    snapshot = hub_snapshot(text)
    enc = detect_dir(snapshot).load(str(snapshot), device)
    enc.name = f"{text}@{snapshot.name[:12]}"  # the hub id and the snapshot's commit, for signatures
    return enc
