"""An on-disk cache of one encoder's vectors, addressed by content: each (language, text) is
encoded once, ever, whatever run, task or order asks for it; the vectors are read back as a
memory map.

Distillation (:mod:`xling.objectives.distill`) asks its teacher for the pivot sentences of
every task through it, so a resumed or repeated run never calls the teacher again, and loads
it only when some sentence is missing. The directory holds::

    meta.json     {"encoder": name, "dim": d, "count": n, "format": 1}
    keys.npy      (n, 16) uint8: blake2b-128 of "lang\\ttext", row i of vectors.npy
    vectors.npy   (n, d) float32, read with mmap_mode="r"

New vectors are appended by writing the three files anew (temp file, then rename; ``meta.json``
last, so a run killed while writing leaves the previous, complete cache). A cache made by an
encoder of another dimension is refused, naming both.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from xling.errors import XlingError
from xling.utils.io import atomic_path, read_json, write_json_atomic

log = logging.getLogger(__name__)
FORMAT = 1


def text_key(lang: str, text: str) -> bytes:
    """16 bytes naming (lang, text)."""
    return hashlib.blake2b(f"{lang}\t{text}".encode("utf-8"), digest_size=16).digest()


def cache_root() -> Path:
    """``$XLING_CACHE/vectors`` (default ``~/.cache/xling/vectors``)."""
    return Path(os.environ.get("XLING_CACHE") or Path.home() / ".cache" / "xling") / "vectors"


def model_fingerprint(model: str) -> str:
    """12 hex digits naming an encoder's files (a directory: every file's path and size, and the
    bytes of its JSON files) or its name (a named encoder or a hub id), for a default cache path."""
    h = hashlib.sha256(model.encode("utf-8"))
    path = Path(model)
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f"{f.relative_to(path)}\0{f.stat().st_size}\0".encode("utf-8"))
            if f.suffix == ".json" and f.stat().st_size < 1 << 20:
                h.update(f.read_bytes())
    return h.hexdigest()[:12]


def default_cache_dir(model: str) -> Path:
    """Where the vectors of ``model`` are cached when the config names no directory."""
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(model).name or model)[-40:]
    return cache_root() / f"{slug}-{model_fingerprint(str(Path(model).resolve()) if Path(model).is_dir() else model)}"


class VectorCache:
    """The cached vectors of one encoder in ``directory`` (see the module doc).

    ``load`` gives the encoder (``encode(texts, lang, batch_size=...)``, ``dim``, ``name``) and is
    called only when a text is missing; ``encoded`` counts the texts it was asked to encode."""

    def __init__(self, directory: str | os.PathLike, load: Callable[[], object], name: str,
                 batch_size: int = 64, progress: bool = True) -> None:
        self.dir = Path(directory)
        self.name = name  # the encoder, as the config names it (recorded in meta.json)
        self._load = load
        self._encoder = None
        self.batch_size = batch_size
        self.progress = progress
        self.encoded = 0
        self._rows: dict[bytes, int] = {}
        self._vectors: np.ndarray | None = None
        self.dim: int | None = None
        self._open()

    def _open(self) -> None:
        meta_path = self.dir / "meta.json"
        if not meta_path.is_file():
            return
        meta = read_json(meta_path)
        if meta.get("format") != FORMAT:
            raise XlingError(f"{meta_path}: a vector cache of format {meta.get('format')!r}, this xling reads {FORMAT}")
        try:
            keys = np.load(self.dir / "keys.npy")
            vectors = np.load(self.dir / "vectors.npy", mmap_mode="r")
        except (OSError, ValueError) as e:
            raise XlingError(f"{self.dir}: unreadable vector cache ({e}); delete it to rebuild") from None
        if keys.shape != (meta["count"], 16) or vectors.shape != (meta["count"], meta["dim"]):
            raise XlingError(f"{self.dir}: vector cache files disagree with meta.json; delete it to rebuild")
        self._rows = {bytes(k): i for i, k in enumerate(keys)}
        self._vectors, self.dim = vectors, int(meta["dim"])
        self._made_by = meta.get("encoder", "?")

    @property
    def vectors(self) -> np.ndarray:
        """(n, dim) float32, memory-mapped: row :meth:`rows` gave."""
        if self._vectors is None:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        return self._vectors

    def __len__(self) -> int:
        return len(self._rows)

    def _encoder_dim(self) -> int:
        if self._encoder is None:
            self._encoder = self._load()
            dim = int(self._encoder.dim)
            if self.dim is not None and dim != self.dim:
                raise XlingError(f"{self.dir}: cached vectors are {self.dim}-d (made by {self._made_by}), "
                                 f"but {self.name} gives {dim}-d ones; name another cache directory or delete it")
        return int(self._encoder.dim)

    def rows(self, texts: Sequence[str], lang: str) -> np.ndarray:
        """(len(texts),) int64: the row of each text's vector, encoding (once) the missing ones."""
        keys = [text_key(lang, t) for t in texts]
        first = {k: t for k, t in zip(keys, texts) if k not in self._rows}  # missing keys, first-seen order
        if first:
            self._append(list(first), list(first.values()), lang)
        return np.array([self._rows[k] for k in keys], dtype=np.int64)

    def _append(self, keys: list[bytes], texts: list[str], lang: str) -> None:
        dim = self._encoder_dim()
        log.info("%s: encoding %d new %s sentences into %s", self.name, len(texts), lang, self.dir)
        new = self._encode(texts, lang)  # (m, dim)
        self.encoded += len(texts)
        old = np.asarray(self.vectors, dtype=np.float32) if self._vectors is not None else np.zeros((0, dim), np.float32)
        old_keys = np.frombuffer(b"".join(self._rows), dtype=np.uint8).reshape(-1, 16)
        all_keys = np.concatenate([old_keys, np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(-1, 16)])
        self.dir.mkdir(parents=True, exist_ok=True)
        for name, arr in (("vectors.npy", np.concatenate([old, new])), ("keys.npy", all_keys)):
            with atomic_path(self.dir / name) as tmp, open(tmp, "wb") as f:
                np.save(f, arr)
        write_json_atomic(self.dir / "meta.json", {"format": FORMAT, "encoder": self.name, "dim": dim,
                                                   "count": int(len(all_keys))})
        self._vectors = None
        self._open()

    def _encode(self, texts: list[str], lang: str) -> np.ndarray:
        from tqdm import tqdm

        out = []
        step = max(self.batch_size * 16, 1024)
        with tqdm(total=len(texts), unit="sent", desc=f"teacher {lang}", disable=not self.progress) as bar:
            for a in range(0, len(texts), step):
                out.append(np.asarray(self._encoder.encode(texts[a : a + step], lang, batch_size=self.batch_size),
                                      dtype=np.float32))
                bar.update(len(out[-1]))
        return np.concatenate(out) if out else np.zeros((0, self._encoder.dim), np.float32)
