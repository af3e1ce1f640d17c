"""xling's own sentence embedders (``xling train``, model_type: sentence): today's behaviour,
:class:`xling.embeddings.api.SentenceEncoder` itself, which follows the encoder protocol."""

from __future__ import annotations

import json
from pathlib import Path

from xling.embeddings.backends.registry import Backend, register_backend


def is_xling_dir(path: Path) -> bool:
    """A checksums.json, or a config.json holding xling's ``config`` mapping."""
    if (path / "checksums.json").is_file():
        return True
    try:
        data = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("config"), dict) and "model_type" in data


def load(dir: str, device: str):
    from xling.embeddings.api import SentenceEncoder

    return SentenceEncoder.from_pretrained(dir, device=device)


register_backend(Backend(kind="xling", load=load, detect=is_xling_dir,
                         looks_for="checksums.json or config.json with a 'config' mapping"))
