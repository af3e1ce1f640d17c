"""The shared multilingual vocabulary: one SentencePiece model + an ordered language list.

A vocabulary directory holds ``spm.model`` (the SentencePiece model) and ``vocab.json``
(languages, special ids, size, training settings, per-language sampling statistics and
the sha256 of ``spm.model``). Special ids are fixed in every vocabulary::

    PAD=0 <pad>, UNK=1 <unk>, BOS=2 <s>, EOS=3 </s>, MASK=4 <mask>

vocab.json's ``backend`` says what segments the text: ``spm`` (the default, and every vocabulary
``xling vocab`` trains) or ``bpe``, BPE codes with a token list behind the same interface
(:class:`xling.tokenization.bpe.BpeVocab`, for converted XLM / MASS models) or ``hf``, a Hugging
Face ``tokenizer.json`` with its ids mapped onto xling's (:mod:`xling.tokenization.hf`, for
``xling convert hf``); :meth:`Vocab.load` returns the right one.

Design decisions (see :func:`train_vocab`):

- **Normalization is ``identity``** with ``remove_extra_whitespaces=False``: SentencePiece's
  default ``nmt_nfkc`` rewrites Chinese full-width punctuation (``，！（）：；？`` become
  ``,!():;?``), full-width Latin and half-width katakana, and collapses tabs/newlines, so
  ``decode(encode(x)) != x``. With identity the round trip is exact for any text except
  the character U+2581 (``▁``, SentencePiece's own space marker), which decodes to a space.
- **Byte fallback** is on: characters unseen in training become ``<0xNN>`` byte pieces, so
  ``<unk>`` practically never appears and decoding stays lossless.
- **``<mask>`` is a control symbol**, not a user-defined one: the literal text ``"<mask>"``
  (or ``"<s>"``, ``"</pad>"``...) in raw input is encoded as ordinary pieces, never as a
  special id, so input text cannot inject special tokens.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sentencepiece as spm

from xling.errors import XlingError, unknown
from xling.tokenization.sampling import sample_counts, smoothed_probs
from xling.tokenization.langs import check_langs
from xling.tokenization.normalize import check_normalizers, normalize
from xling.utils.integrity import verify_checksums
from xling.utils.io import atomic_path, read_json, read_lines, write_json_atomic

PAD, UNK, BOS, EOS, MASK = 0, 1, 2, 3, 4
SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>", "<mask>"]

MODEL_FILE = "spm.model"
META_FILE = "vocab.json"
FORMAT = "xling-vocab"
FORMAT_VERSION = 1
BACKENDS = ("spm", "bpe", "hf")  # vocab.json "backend" (absent: spm)
MODEL_TYPES = ("unigram", "bpe")
SPM_THREADS = 16  # fixed: the trained model depends on the thread count, not on the machine
FERTILITY_SAMPLE = 1000  # sentences per language used to measure tokens per sentence


class Vocab:
    """A SentencePiece model plus the ordered language list (language id = index)."""

    def __init__(self, model_proto: bytes, languages: Sequence[str], meta: Mapping[str, Any] | None = None,
                 *, source: str = "spm model"):
        """Wrap serialized SentencePiece ``model_proto``; ``meta`` is the rest of vocab.json."""
        self._proto = bytes(model_proto)
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(self._proto)
        except (RuntimeError, OSError):
            raise XlingError(f"{source}: not a valid SentencePiece model (corrupt or truncated)") from None
        pieces = [self._sp.id_to_piece(i) for i in range(min(len(SPECIAL_TOKENS), self._sp.get_piece_size()))]
        if pieces != SPECIAL_TOKENS:
            raise XlingError(f"{source}: special pieces are {pieces}, expected {SPECIAL_TOKENS}")
        self._init_common(languages, meta, source)

    def _init_common(self, languages: Sequence[str], meta: Mapping[str, Any] | None, source: str) -> None:
        """The languages, the rest of vocab.json and its normalize steps (every backend)."""
        languages = list(languages)
        if not languages or len(set(languages)) != len(languages) or not all(
                isinstance(c, str) and c for c in languages):
            raise XlingError(f"{source}: languages must be distinct non-empty codes, got {languages!r}")
        check_langs(languages, f"{source}: languages")
        self._languages = languages
        self._lang_ids = {c: i for i, c in enumerate(languages)}
        self.meta: dict[str, Any] = dict(meta or {})
        self._normalize = check_normalizers(self.meta.get("normalize"), source)

    # ------------------------------------------------------------------ files
    @classmethod
    def load(cls, directory: str | os.PathLike) -> Vocab:
        """Load ``vocab.json`` and the backend's files (``spm.model``, or those of
        :class:`~xling.tokenization.bpe.BpeVocab`) from ``directory`` (checksums verified; in a
        model directory, the files also against its checksums.json)."""
        directory = Path(directory)
        meta_path, model_path = directory / META_FILE, directory / MODEL_FILE
        if not meta_path.is_file():
            raise XlingError(f"{meta_path}: no such file (not a vocabulary directory?)")
        verify_checksums(directory, [META_FILE])
        meta = read_json(meta_path)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise XlingError(f"{meta_path}: not an xling vocabulary file (no \"format\": \"{FORMAT}\")")
        backend = meta.get("backend", "spm")
        if backend not in BACKENDS:
            raise XlingError(f"{meta_path}: unknown vocabulary backend {backend!r} (known: {', '.join(BACKENDS)})")
        if backend == "bpe":
            from xling.tokenization.bpe import BpeVocab

            return BpeVocab.load_files(directory, meta)
        if backend == "hf":
            from xling.tokenization.hf import HfVocab

            return HfVocab.load_files(directory, meta)
        if not model_path.is_file():
            raise XlingError(f"{model_path}: no such file (not a vocabulary directory?)")
        verify_checksums(directory, [MODEL_FILE])
        for key, kind in (("languages", list), ("size", int), ("spm_sha256", str)):
            if not isinstance(meta.get(key), kind):
                raise XlingError(f"{meta_path}: missing or invalid {key!r}")
        proto = model_path.read_bytes()
        if hashlib.sha256(proto).hexdigest() != meta["spm_sha256"]:
            raise XlingError(f"{model_path}: checksum mismatch with {META_FILE} (corrupt or replaced file)")
        vocab = cls(proto, meta["languages"], meta, source=str(model_path))
        if len(vocab) != meta["size"]:
            raise XlingError(f"{meta_path}: size {meta['size']} but {model_path} has {len(vocab)} pieces")
        return vocab

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``spm.model`` then ``vocab.json`` atomically; other files in ``directory`` stay."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / MODEL_FILE) as tmp:
            tmp.write_bytes(self._proto)
        write_json_atomic(directory / META_FILE, self.to_json())

    def to_json(self) -> dict[str, Any]:
        """The content of ``vocab.json``: format, languages, specials, size, checksum + meta."""
        return self._json({"spm_sha256": hashlib.sha256(self._proto).hexdigest()})

    def _json(self, backend: dict[str, Any]) -> dict[str, Any]:
        """vocab.json: what every backend writes, the ``backend`` entries, then the rest of meta."""
        out: dict[str, Any] = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "languages": list(self._languages),
            "size": len(self),
            "special": {name: i for i, name in enumerate(("pad", "unk", "bos", "eos", "mask"))},
            "special_tokens": list(SPECIAL_TOKENS),
            **backend,
        }
        for key, value in self.meta.items():
            out.setdefault(key, value)
        return out

    # -------------------------------------------------------------- languages
    @property
    def languages(self) -> list[str]:
        """The ordered language codes (a copy)."""
        return list(self._languages)

    def lang_id(self, code: str) -> int:
        """Index of language ``code``; unknown code -> XlingError naming the known ones."""
        try:
            return self._lang_ids[code]
        except KeyError:
            raise unknown("language code", code, self._languages) from None

    def lang_code(self, lang_id: int) -> str:
        """Language code of id ``lang_id``."""
        if not 0 <= lang_id < len(self._languages):
            raise XlingError(f"language id {lang_id} out of range (vocabulary has {len(self._languages)} languages)")
        return self._languages[lang_id]

    # ------------------------------------------------------------- tokens
    def encode(self, text: str, lang: str | None = None) -> list[int]:
        """Token ids of ``text`` (no BOS/EOS), after the vocabulary's ``normalize`` steps
        (:mod:`xling.tokenization.normalize`; ``lang``: the text's language, for steps that use it)."""
        if self._normalize:
            text = normalize(self._normalize, text, lang)
        return self._sp.encode(text, out_type=int)

    def encode_batch(self, texts: Sequence[str], lang: str | None = None) -> list[list[int]]:
        """Token ids of many texts at once (SentencePiece's multithreaded batch encode)."""
        if self._normalize:
            texts = [normalize(self._normalize, t, lang) for t in texts]
        return self._sp.encode(list(texts), out_type=int)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; special ids (pad, unk, bos, eos, mask) are skipped."""
        return self._sp.decode([int(i) for i in ids if int(i) >= len(SPECIAL_TOKENS)])

    def id_to_piece(self, token_id: int) -> str:
        """The SentencePiece piece of ``token_id`` (e.g. ``'▁the'``, ``'<0x41>'``)."""
        return self._sp.id_to_piece(int(token_id))

    def __len__(self) -> int:
        return self._sp.get_piece_size()

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)}, languages={self._languages})"

    pad_id = property(lambda self: PAD, doc="id of <pad> (0)")
    unk_id = property(lambda self: UNK, doc="id of <unk> (1)")
    bos_id = property(lambda self: BOS, doc="id of <s> (2)")
    eos_id = property(lambda self: EOS, doc="id of </s> (3)")
    mask_id = property(lambda self: MASK, doc="id of <mask> (4)")


# ---------------------------------------------------------------- training
def sample_sentences(texts_by_lang: Mapping[str, Sequence[str]], alpha: float, max_sentences: int,
                     rng: np.random.Generator) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Draw vocabulary-training sentences per language with XLM's exponential smoothing.

    ``total = min(sum of sizes, max_sentences)``; language ``l`` gets ``q_l * total``
    sentences (``q`` from :func:`smoothed_probs`), drawn without replacement and kept in
    corpus order. A language with fewer sentences than its share gives all it has
    (``capped``); the shortfall is not redistributed, so ``sampled_total`` may be below
    ``requested_total``. Languages are processed in sorted order (deterministic per ``rng``).
    Returns ``(sampled texts by language, statistics for vocab.json)``.
    """
    if not isinstance(max_sentences, int) or max_sentences <= 0:
        raise XlingError(f"max_sentences must be a positive integer, got {max_sentences!r}")
    counts = {lang: len(texts_by_lang[lang]) for lang in sorted(texts_by_lang)}
    q = smoothed_probs(counts, alpha)
    total = min(sum(counts.values()), max_sentences)
    n = sample_counts(counts, alpha, total)
    sampled: dict[str, list[str]] = {}
    per_lang: dict[str, Any] = {}
    for lang, size in counts.items():
        idx = np.sort(rng.choice(size, size=n[lang], replace=False))
        texts = texts_by_lang[lang]
        sampled[lang] = [texts[i] for i in idx.tolist()]
        want = q[lang] * total
        per_lang[lang] = {"available": size, "probability": q[lang], "wanted": want,
                          "sampled": n[lang], "capped": n[lang] < int(want)}
    stats = {"alpha": alpha, "max_sentences": max_sentences, "requested_total": total,
             "sampled_total": sum(n.values()), "languages": per_lang}
    return sampled, stats


def _train_spm(sentences: list[str], **options: Any) -> bytes:
    """Train SentencePiece in-process on ``sentences``; returns the serialized model."""
    writer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=writer, **options)
    except RuntimeError as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        msg = msg.split("] ", 1)[-1]  # drop "INTERNAL: src/...cc(NNN) [check]" prefix
        raise XlingError(f"sentencepiece training failed: {msg}") from None
    return writer.getvalue()


def train_vocab(texts_by_lang: Mapping[str, Sequence[str]], out_dir: str | os.PathLike, vocab_size: int = 8000,
                alpha: float = 0.5, max_sentences: int = 300_000, seed: int = 0, model_type: str = "unigram",
                character_coverage: float = 0.9995) -> Vocab:
    """Train a shared SentencePiece vocabulary over several languages and save it to ``out_dir``.

    Sentences are sampled per language with :func:`sample_sentences` (alpha smoothing,
    seeded ``numpy`` Generator). The model has fixed special ids (pad 0, unk 1, bos 2,
    eos 3, ``<mask>`` 4 as a control symbol), byte fallback and identity normalization,
    so ``decode(encode(x)) == x``. Languages are stored sorted. Deterministic given ``seed``.
    vocab.json records the training settings, the per-language sampling statistics and the
    average tokens per sentence (fertility) on up to 1000 sampled sentences per language.
    """
    if not texts_by_lang:
        raise XlingError("train_vocab: no languages given")
    if model_type not in MODEL_TYPES:
        raise unknown("model type", model_type, MODEL_TYPES)
    if not isinstance(vocab_size, int) or vocab_size <= len(SPECIAL_TOKENS):
        raise XlingError(f"vocab_size must be an integer > {len(SPECIAL_TOKENS)}, got {vocab_size!r}")
    if not 0.0 < character_coverage <= 1.0:
        raise XlingError(f"character_coverage must be in (0, 1], got {character_coverage}")
    rng = np.random.default_rng(seed)
    sampled, stats = sample_sentences(texts_by_lang, alpha, max_sentences, rng)
    settings = {
        "vocab_size": vocab_size, "model_type": model_type, "character_coverage": character_coverage,
        "alpha": alpha, "max_sentences": max_sentences, "seed": seed,
        "normalization_rule_name": "identity", "remove_extra_whitespaces": False, "byte_fallback": True,
        "num_threads": SPM_THREADS, "sentencepiece_version": spm.__version__,
    }
    spm.set_random_generator_seed(seed)
    proto = _train_spm(
        [s for lang in sampled for s in sampled[lang]],
        vocab_size=vocab_size, model_type=model_type, character_coverage=character_coverage,
        pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS, control_symbols=[SPECIAL_TOKENS[MASK]],
        byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        input_sentence_size=0, max_sentence_length=1 << 16, num_threads=SPM_THREADS, minloglevel=2,
    )
    vocab = Vocab(proto, list(sampled), {"training": settings, "sampling": stats})
    vocab.meta["fertility"] = {
        lang: fertility(vocab, texts[:FERTILITY_SAMPLE]) for lang, texts in sampled.items()}
    vocab.save(out_dir)
    return vocab


def fertility(vocab: Vocab, texts: Sequence[str]) -> dict[str, float]:
    """Average tokens per sentence and characters per token of ``texts`` (0 when empty)."""
    n_tokens = sum(len(ids) for ids in vocab.encode_batch(texts)) if texts else 0
    n_chars = sum(len(t) for t in texts)
    return {"sentences": len(texts), "tokens_per_sentence": n_tokens / len(texts) if texts else 0.0,
            "chars_per_token": n_chars / n_tokens if n_tokens else 0.0}


def corpus_languages(corpus_dir: str | os.PathLike) -> list[str]:
    """The ``languages`` list of a corpus's ``manifest.json``."""
    path = Path(corpus_dir) / "manifest.json"
    manifest = read_json(path, missing="no such file (name the languages explicitly)")
    langs = manifest.get("languages") if isinstance(manifest, dict) else None
    if not isinstance(langs, list) or not langs or not all(isinstance(c, str) for c in langs):
        raise XlingError(f"{path}: missing or invalid 'languages' list")
    return check_langs(langs, f"{path}: languages")


def train_vocab_from_corpus(corpus_dir: str | os.PathLike, langs: Sequence[str] | None, out_dir: str | os.PathLike,
                            **kw: Any) -> Vocab:
    """Train a vocabulary on the ``train.{lang}`` files of a Moses-layout corpus.

    Only training splits are read (never valid/test, so evaluation text cannot leak into
    the vocabulary). ``langs=None`` takes the languages of the corpus's manifest.json.
    Keyword arguments go to :func:`train_vocab`.
    """
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise XlingError(f"{corpus_dir}: no such corpus directory")
    langs = list(langs) if langs is not None else corpus_languages(corpus_dir)
    if not langs:
        raise XlingError(f"{corpus_dir}: no languages given")
    dup = sorted({c for c in langs if langs.count(c) > 1})
    if dup:
        raise XlingError(f"language {dup[0]!r} given twice")
    texts = {}
    for lang in langs:
        path = corpus_dir / f"train.{lang}"
        if not path.is_file():
            raise XlingError(f"{path}: no such file (language {lang!r} has no training text in this corpus)")
        texts[lang] = read_lines(path)
    return train_vocab(texts, out_dir, **kw)
