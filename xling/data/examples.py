"""Tokenized training examples from a corpus (Moses layout), and the ``data`` config section.

What the objective kinds (:mod:`xling.objectives.registry`) read: XLM stream rows of one
language, sentences, aligned sentence pairs in a direction, and (document, summary) pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xling.data.batching import make_stream
from xling.data.readers import load_corpus_split, load_parallel_split, mono_file, read_parallel
from xling.errors import XlingError
from xling.tokenization.vocab import Vocab


@dataclass
class DataConfig:
    corpus: str = ""  # corpus directory in the Moses layout (`xling corpus ...`)
    vocab: str = ""  # vocabulary directory (`xling vocab ...`); default with init: the init model's
    stream_len: int = 256  # tokens per MLM/CLM/UNILM stream row (XLM: 256)
    max_pair_len: int = 126  # TLM: each side truncated to this many tokens
    max_len: int = 126  # MASS sentences and seq2seq sources: tokens kept
    max_tgt_len: int = 126  # seq2seq targets (translation, summary): tokens kept
    max_tokens: int = 4096  # padded tokens per micro-batch
    alpha: float = 0.5  # language sampling smoothing within an objective (XLM: 0.5)
    valid_rows: int = 64  # stream rows per language used for validation perplexity
    valid_examples: int = 256  # sentences / pairs per task used for the validation loss

    def __post_init__(self) -> None:
        for name in ("stream_len", "max_pair_len", "max_len", "max_tgt_len", "max_tokens"):
            if getattr(self, name) < 1:
                raise XlingError(f"config data.{name}: must be >= 1, got {getattr(self, name)}")
        if self.alpha < 0 or self.valid_rows < 0 or self.valid_examples < 0:
            raise XlingError(f"config data: alpha, valid_rows and valid_examples must be >= 0, got "
                             f"{self.alpha}, {self.valid_rows}, {self.valid_examples}")


def stream_rows(vocab: Vocab, corpus: str, split: str, lang: str, stream_len: int) -> np.ndarray:
    """(N, stream_len) XLM stream rows of ``{split}.{lang}``."""
    return make_stream(vocab.encode_batch(load_corpus_split(corpus, split, lang), lang=lang), stream_len, vocab.eos_id)


def _arrays(ids: list[list[int]], max_len: int) -> list[np.ndarray]:
    return [np.asarray(x[:max_len], dtype=np.int64) for x in ids]


def sentences(vocab: Vocab, corpus: str, split: str, lang: str, max_len: int) -> list[np.ndarray]:
    """Tokenized sentences of ``{split}.{lang}``, each cut to ``max_len`` tokens."""
    return _arrays(vocab.encode_batch(load_corpus_split(corpus, split, lang), lang=lang), max_len)


def pairs(vocab: Vocab, corpus: str, split: str, src: str, tgt: str, max_len: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Aligned (src, tgt) token pairs of a parallel split, in the asked direction."""
    a, b = load_parallel_split(corpus, split, src, tgt)
    return list(zip(_arrays(vocab.encode_batch(a, lang=src), max_len), _arrays(vocab.encode_batch(b, lang=tgt), max_len)))


def summary_pairs(vocab: Vocab, corpus: str, split: str, lang: str, max_src: int, max_tgt: int):
    """(document, summary) token pairs from ``{split}.{lang}.desc`` / ``.syn``."""
    doc, syn = mono_file(corpus, split, lang, ".desc"), mono_file(corpus, split, lang, ".syn")
    if not (doc.is_file() and syn.is_file()):
        raise XlingError(f"{corpus}: no {split} summarization data for {lang!r} ({doc.name}, {syn.name}); "
                         f"build it with `xling corpus debian-descriptions`")
    texts = read_parallel(doc, syn)
    d = _arrays(vocab.encode_batch([t for t, _ in texts], lang=lang), max_src)
    s = _arrays(vocab.encode_batch([t for _, t in texts], lang=lang), max_tgt)
    return list(zip(d, s))


def nonempty(ex: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pairs whose two sides both hold a token."""
    return [(x, y) for x, y in ex if len(x) and len(y)]
