"""Sentence encoders exported with ``xling export onnx`` (:mod:`xling.export.onnx`), run by
onnxruntime: ``--model EXPORTED_DIR`` in ``xling embed``, ``xling mine``, ``xling evaluate
mining`` and frozen classification (needs the ``onnx`` extra: ``pip install "xling[onnx]"``).

An exported directory holds ``model.onnx``, the vocabulary (``spm.model`` + ``vocab.json``),
``onnx_config.json`` (inputs, special ids, languages, the sha256 of every file, verified here)
and a README. Texts are tokenized exactly as xling's own encoder does (the vocabulary's
normalisation, cut to ``max_len`` pieces, ``<s> x </s>``, sorted by length into batches), so
row i is text i and padding never changes a row; an exported classifier is refused here (it
outputs logits, not embeddings).
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xling.data.masking import pad_batch
from xling.embeddings.backends.base import EncoderBase, check_batch_size, encode_rows
from xling.embeddings.backends.registry import Backend, register_backend
from xling.errors import XlingError
from xling.utils.io import sha256_file
from xling.utils.truncation import Truncation, counting

log = logging.getLogger(__name__)

CONFIG_FILE = "onnx_config.json"
MODEL_FILE = "model.onnx"
FORMAT = "xling-onnx"
FORMAT_VERSION = 1
INSTALL = 'pip install "xling[onnx]" (or make onnx)'


def need(*packages: str) -> list[Any]:
    """The imported ``packages`` (onnx, onnxruntime); a missing one is one line saying how to install."""
    out = []
    for name in packages:
        try:
            out.append(importlib.import_module(name))
        except ImportError:
            raise XlingError(f"ONNX models need the {name.split('.')[0]} package: {INSTALL}") from None
    return out


def read_config(dir: str | Path) -> dict[str, Any]:
    """The ``onnx_config.json`` of an exported directory, every file it lists checked (sha256)."""
    dir = Path(dir)
    path = dir / CONFIG_FILE
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise XlingError(f"{path}: cannot read the export record ({type(e).__name__})") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT or not isinstance(cfg.get("files"), dict):
        raise XlingError(f"{path}: not an xling ONNX export record (no \"format\": \"{FORMAT}\")")
    if cfg.get("version", 0) > FORMAT_VERSION:
        raise XlingError(f"{path}: format version {cfg['version']} is newer than this xling reads ({FORMAT_VERSION})")
    for name, digest in cfg["files"].items():
        if not (dir / name).is_file():
            raise XlingError(f"{dir / name}: missing (listed in {CONFIG_FILE}; not a complete export)")
        if sha256_file(dir / name) != digest:
            raise XlingError(f"{dir / name}: changed since it was exported (sha256 mismatch with {CONFIG_FILE})")
    return cfg


def session(path: str | Path, threads: int | None = None, device: str = "cpu") -> Any:
    """An onnxruntime session on ``path``: CPU, or CUDA when ``device`` asks and onnxruntime has it;
    ``threads``: intra-op threads (None: onnxruntime's default, one per physical core)."""
    (ort,) = need("onnxruntime")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    if str(device).startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            log.warning("%s: this onnxruntime has no CUDA provider; running on the CPU", path)
        else:
            providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(str(path), opts, providers=providers)


def token_rows(vocab: Any, texts: Sequence[str], lang: str, max_len: int, truncation: Truncation,
               total: int | None = None) -> list[list[int]]:
    """``<s> x </s>`` id lists of ``texts`` as xling's encoder builds them: ``x`` cut to ``max_len``
    pieces (the cut ones counted into ``truncation``, out of ``total`` lines: default len(texts))."""
    ids = vocab.encode_batch(list(texts), lang=lang)
    truncation.add(map(len, ids), max_len, total=total)
    return [[vocab.bos_id, *x[:max_len], vocab.eos_id] for x in ids]


def run_rows(sess: Any, rows: Sequence[Sequence[int]], batch_size: int, pad_id: int = 0,
             lang_id: int | None = None) -> np.ndarray:
    """The first output of ``sess`` (n, ...) for token rows fed as ``tokens`` (B, S) int64 in
    batches of similar length (``lang_ids`` (B,) too when given), in the order of ``rows``."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    out: np.ndarray | None = None
    for a in range(0, len(order), batch_size):
        idx = order[a : a + batch_size]
        feeds = {"tokens": pad_batch([rows[i] for i in idx], pad_id)}  # (B, S)
        if lang_id is not None:
            feeds["lang_ids"] = np.full(len(idx), lang_id, dtype=np.int64)  # (B,)
        y = sess.run(None, feeds)[0]  # (B, ...)
        if out is None:
            out = np.empty((len(rows), *y.shape[1:]), dtype=np.float32)
        out[idx] = y
    return out if out is not None else np.zeros((0,), dtype=np.float32)


class OnnxEncoder(EncoderBase):
    """An exported sentence encoder (``kind: sentence_encoder``) behind the encoder protocol."""

    what = "exported encoder"

    def __init__(self, dir: str, device: str = "cpu", threads: int | None = None) -> None:
        from xling.tokenization.vocab import Vocab

        cfg = read_config(dir)
        if cfg.get("kind") != "sentence_encoder":
            raise XlingError(f"{dir}: an exported {cfg.get('kind')}, not a sentence encoder (it outputs "
                             f"{', '.join(o['name'] for o in cfg.get('outputs', []))}); export the encoder itself")
        self.name = str(dir)
        self.config = cfg
        self.languages = sorted(cfg["languages"])
        self.dim = int(cfg["dim"])
        self.max_len = int(cfg["max_len"])
        self.vocab = Vocab.load(dir)
        self.session = session(Path(dir) / MODEL_FILE, threads, device)
        self.lang_input = any(i["name"] == "lang_ids" for i in cfg["inputs"])

    def encode(self, texts: Sequence[str], lang: str, batch_size: int = 64, normalize: bool = False,
               truncation: Truncation | None = None) -> np.ndarray:
        """(len(texts), dim) float32 in input order (the protocol of :mod:`..base`)."""
        self.check_lang(lang)
        check_batch_size(batch_size)
        lang_id = self.vocab.lang_id(lang) if self.lang_input else None

        def embed(kept: list[str]) -> np.ndarray:  # (n', dim)
            rows = token_rows(self.vocab, kept, lang, self.max_len, cut, total=len(texts))
            return run_rows(self.session, rows, batch_size, self.vocab.pad_id, lang_id)

        with counting(truncation, log) as cut:
            return encode_rows(texts, self.dim, embed, normalize)


def is_export(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file() and (path / MODEL_FILE).is_file()


register_backend(Backend(kind="onnx", load=OnnxEncoder, detect=is_export,
                         looks_for=f"{CONFIG_FILE} with {MODEL_FILE} (xling export onnx)"))
