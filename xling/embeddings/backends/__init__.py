"""Encoder backends behind one protocol: whatever ``--model`` names, ``encode(texts, lang)``
gives float32 ``(n, dim)`` rows (:mod:`xling.embeddings.backends.base`).

    from xling.embeddings.backends import load_encoder
    enc = load_encoder("runs/laser/model")            # xling's own sentence embedder
    enc = load_encoder("models/LaBSE")                # a sentence-transformers directory
    enc = load_encoder("sentence-transformers/LaBSE")  # a hub id (cached, or online)
    enc = load_encoder("use-multilingual")             # the USE wheel, offline
    X = enc.encode(texts, "de", batch_size=64, normalize=True)

The modules below register one backend kind each, in detection order
(:mod:`xling.embeddings.backends.registry`).
"""

from xling.embeddings.backends import xling_dir, onnx, hf, use  # noqa: F401  (registration, in detection order)
from xling.embeddings.backends.base import Encoder, EncoderBase
from xling.embeddings.backends.registry import backends, load_encoder

__all__ = ["Encoder", "EncoderBase", "backends", "load_encoder"]
