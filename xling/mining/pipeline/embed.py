"""The ``embed`` stage: a shard's kept lines -> a float16 (or float32) ``.npy`` on disk.

The sentence encoder is loaded the way ``xling embed`` and ``xling mine --model`` load it
(:func:`xling.embeddings.backends.load_encoder`: an xling, sentence-transformers or transformers
directory, a hub id, ``use-multilingual``), once per worker process, and encodes in chunks
(``normalize=True``, as ``xling mine``) straight into a memory-mapped ``.npy``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xling.mining.files import ENCODE_CHUNK
from xling.mining.pipeline.prepare import shard_texts
from xling.mining.pipeline.units import Unit, stage
from xling.utils.io import atomic_path

_ENCODERS: dict = {}  # (model, device) -> encoder: one per worker process


def load_encoder(model: str, device: str | None = None):
    """The sentence encoder ``model`` names (cached: the last one loaded in this process)."""
    from xling.embeddings.backends import load_encoder as load

    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    key = (model, device)
    if key not in _ENCODERS:
        _ENCODERS.clear()
        _ENCODERS[key] = load(model, device=device)
    return _ENCODERS[key]


def embed_output(key: str) -> str:
    return f"embed/{key}.npy"


@stage("embed")
def embed(run: Path, unit: Unit) -> dict:
    from xling.utils.truncation import Truncation

    s, a = unit.settings, unit.args
    texts = shard_texts(run, unit.key)
    enc = load_encoder(a["model"], a["device"])
    dtype = np.dtype(s["dtype"])
    cut = Truncation()
    with atomic_path(run / embed_output(unit.key)) as tmp:
        if not texts:
            with open(tmp, "wb") as f:
                np.save(f, np.zeros((0, enc.dim), dtype=dtype))
        else:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(len(texts), enc.dim))  # (n, d)
            for start in range(0, len(texts), ENCODE_CHUNK):
                chunk = texts[start : start + ENCODE_CHUNK]
                out[start : start + len(chunk)] = enc.encode(chunk, s["lang"], batch_size=a["batch_size"],
                                                             normalize=True, truncation=cut)
            out.flush()
            del out
    return {"rows": len(texts), "truncated": cut.cut}


def side_rows(run: Path, side: str) -> tuple[np.ndarray, list[str]]:
    """A finished run's embeddings (n, d) and kept lines of one side, shard after shard: the rows
    the later stages number, as ``xling mine --src-emb X --src Y`` would read them."""
    keys = sorted(f"{side}/{p.stem}" for p in (Path(run) / "embed" / side).glob("*.npy"))
    emb = np.concatenate([np.load(Path(run) / embed_output(k)) for k in keys])
    return emb, [t for k in keys for t in shard_texts(Path(run), k)]
