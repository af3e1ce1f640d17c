"""Hugging Face encoders: sentence-transformers directories, plain transformers directories,
and hub ids (needs the ``hf`` extra: ``pip install 'xling[hf]'``).

- **sentence-transformers** (a ``modules.json``): ``SentenceTransformer(dir).encode``, so the
  pooling, dense layers and normalisation are the ones its own configuration declares.
- **transformers** (a ``config.json`` and ``model.safetensors`` without ``modules.json``):
  ``AutoTokenizer`` + ``AutoModel`` (the encoder of an encoder-decoder), **mean pooling** over
  the real tokens of the last hidden states, not normalised (said once when loaded); the
  length limit is sentence-transformers' (``min(max_position_embeddings, model_max_length)``).
- Weights are read from safetensors only (xling never unpickles a user's file), and no code
  from the model directory runs (``trust_remote_code`` stays off).
- **Languages**: the ``language:`` list of the model card (README.md) when it declares one;
  otherwise codes cannot be checked (one warning).
- **Hub ids** (``sentence-transformers/LaBSE``): the cached snapshot, else a download of its
  configuration, tokenizer and safetensors files when online; offline (``HF_HUB_OFFLINE=1``,
  or the hub unreachable) and not cached is one line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from xling.embeddings.backends.base import EncoderBase
from xling.embeddings.backends.registry import Backend, register_backend
from xling.errors import XlingError
from xling.tokenization.langs import is_lang
from xling.utils.truncation import Truncation

log = logging.getLogger(__name__)

WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "README.md"]  # what a download fetches


def _one_line(e: BaseException) -> str:
    from xling.models.io import _one_line as one_line

    return one_line(e)


def _need(package: str):
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError:
        raise XlingError(f"Hugging Face models need the {package} package: pip install 'xling[hf]'") from None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def hub_snapshot(name: str) -> Path:
    """The local snapshot of hub model ``name``: cached, or downloaded when online."""
    hub = _need("huggingface_hub")
    missing = f"{name}: no such model directory, and no Hugging Face hub model of that name is cached"
    with contextlib.suppress(Exception):
        return Path(hub.snapshot_download(name, allow_patterns=HUB_FILES, local_files_only=True))
    if _offline():
        raise XlingError(f"{missing} (offline: HF_HUB_OFFLINE is set)")
    try:
        return Path(hub.snapshot_download(name, allow_patterns=HUB_FILES))
    except Exception as e:  # unreachable hub, unknown or gated repository: one line, no retry
        raise XlingError(f"{missing}, nor could it be downloaded ({_one_line(e).split(';')[0][:160]})") from None


def card_languages(dir: Path) -> list[str] | None:
    """The ``language:`` codes of a model card's YAML header (``zh-TW`` as ``zh_TW``), or None."""
    import yaml

    try:
        text = (dir / "README.md").read_text(encoding="utf-8")
        head = yaml.safe_load(text.split("---", 2)[1]) if text.startswith("---") else None
    except (OSError, UnicodeDecodeError, IndexError, yaml.YAMLError):
        return None
    langs = head.get("language") if isinstance(head, dict) else None
    langs = [langs] if isinstance(langs, str) else langs if isinstance(langs, list) else []
    codes = []
    for code in map(str, langs):
        base, _, region = code.replace("-", "_").partition("_")
        codes.append(f"{base.lower()}_{region.upper()}" if region else base.lower())
    return sorted({c for c in codes if is_lang(c)}) or None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """transformers' load reports and progress bars off while loading."""
    from transformers.utils import logging as tlog

    level = tlog.get_verbosity()
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        tlog.set_verbosity(level)
        tlog.enable_progress_bar()


def _check_weights(dir: Path) -> None:
    if not any((dir / w).is_file() for w in WEIGHTS) and any(dir.glob("*.bin")):
        raise XlingError(f"{dir}: only pickled weights (*.bin); xling loads safetensors only "
                         "(convert them with transformers' save_pretrained(safe_serialization=True))")


def _load(dir: str, kind: str, package: str, load: Callable[[Any], Any]) -> Any:
    """``load(the imported package)`` quietly; any failure is one line naming the directory."""
    module = _need(package)
    _check_weights(Path(dir))
    try:
        with _quiet():
            return load(module)
    except Exception as e:
        raise XlingError(f"{dir}: cannot load as a {kind} model: {_one_line(e)[:300]}") from None


class _HFEncoder(EncoderBase):
    what = "model"

    def __init__(self, dir: Path) -> None:
        self.name = str(dir)
        self.languages = card_languages(dir)
        self.max_len: int | None = None
        self.tokenizer = None

    def count_cut(self, texts: list[str], truncation: Truncation) -> None:
        """Adds the texts longer than ``max_len`` tokens (special tokens included) to ``truncation``."""
        if self.tokenizer is not None and self.max_len:
            lengths = map(len, self.tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"])
            truncation.add(lengths, self.max_len)


class SentenceTransformerEncoder(_HFEncoder):
    """``SentenceTransformer(dir)``: its own modules, pooling and normalisation."""

    def __init__(self, dir: str, device: str = "cpu") -> None:
        super().__init__(Path(dir))
        self.model = _load(dir, "sentence-transformers", "sentence_transformers", lambda st: st.SentenceTransformer(
            dir, device=device, local_files_only=True, trust_remote_code=False, model_kwargs={"use_safetensors": True}))
        self.model.eval()
        self.tokenizer = getattr(self.model, "tokenizer", None)
        self.max_len = self.model.max_seq_length
        self.dim = self.model.get_embedding_dimension() or self.embed(["a"], 1, Truncation()).shape[1]

    def embed(self, texts: list[str], batch_size: int, truncation: Truncation) -> np.ndarray:
        self.count_cut(texts, truncation)
        return self.model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)


class TransformersEncoder(_HFEncoder):
    """``AutoModel`` + mean pooling over the real tokens of the last hidden states."""

    def __init__(self, dir: str, device: str = "cpu") -> None:
        super().__init__(Path(dir))
        self.tokenizer, model = _load(dir, "transformers", "transformers", lambda tr: (
            tr.AutoTokenizer.from_pretrained(dir, local_files_only=True),
            tr.AutoModel.from_pretrained(dir, local_files_only=True, use_safetensors=True)))
        if getattr(model.config, "is_encoder_decoder", False):
            model = model.get_encoder()
        self.model = model.eval().to(device)
        self.device = device
        limits = [getattr(model.config, "max_position_embeddings", None), getattr(self.tokenizer, "model_max_length", None)]
        self.max_len = min((int(x) for x in limits if x and x < 10**6), default=None)
        self.dim = int(model.config.hidden_size)
        log.warning("%s: a transformers model without sentence-transformers modules: mean pooling over its "
                    "last hidden states, not normalised", dir)

    def embed(self, texts: list[str], batch_size: int, truncation: Truncation) -> np.ndarray:
        import torch

        self.count_cut(texts, truncation)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths share a batch
        with torch.no_grad():
            for a in range(0, len(order), batch_size):
                idx = order[a : a + batch_size]
                batch = self.tokenizer([texts[i] for i in idx], padding=True, truncation=self.max_len is not None,
                                       max_length=self.max_len, return_tensors="pt").to(self.device)
                h = self.model(**batch).last_hidden_state  # (b, T, D)
                mask = batch["attention_mask"].unsqueeze(-1).to(h.dtype)  # (b, T, 1)
                out[idx] = ((h * mask).sum(1) / mask.sum(1).clamp(min=1)).float().cpu().numpy()  # (b, D)
        return out


def _is_st(dir: Path) -> bool:
    return (dir / "modules.json").is_file()


def _is_transformers(dir: Path) -> bool:
    if not (dir / "config.json").is_file():
        return False
    try:
        json.loads((dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return any((dir / w).is_file() for w in WEIGHTS) or any(dir.glob("*.bin"))


register_backend(Backend(kind="sentence-transformers", load=SentenceTransformerEncoder, detect=_is_st,
                         looks_for="modules.json"))
register_backend(Backend(kind="transformers", load=TransformersEncoder, detect=_is_transformers,
                         looks_for="config.json with model.safetensors"))
