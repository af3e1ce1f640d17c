"""sacrebleu-style signatures: every reported score says how it was made.

A signature is ``key:value`` fields joined by ``|``, e.g.
``xling-mlm|model:3fa2c1d0|data:9b1e77aa|split:test|seed:0|mask:0.15|v:0.1.0``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from xling import __version__


def short_hash(text: str | bytes, n: int = 8) -> str:
    if isinstance(text, str):
        text = text.encode("utf-8")
    return hashlib.sha256(text).hexdigest()[:n]


def model_hash(model_dir: str | Path) -> str:
    """Short hash of a saved model (its checksums.json, else its tensor file, else an ONNX
    export's record, which holds the sha256 of every file exported)."""
    model_dir = Path(model_dir)
    for name in ("checksums.json", "model.safetensors", "onnx_config.json"):
        p = model_dir / name
        if p.is_file():
            return short_hash(p.read_bytes())
    return "unsaved"


def signature(metric: str, **fields: object) -> str:
    """``metric|k1:v1|k2:v2|...|v:<xling version>`` (fields in the given order)."""
    parts = [f"xling-{metric}"] + [f"{k}:{v}" for k, v in fields.items()] + [f"v:{__version__}"]
    return "|".join(parts)
