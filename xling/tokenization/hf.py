"""The ``hf`` backend of :class:`~xling.tokenization.vocab.Vocab`: a Hugging Face ``tokenizers``
tokenizer (``tokenizer.json``) behind xling's fixed special ids.

A model imported from Hugging Face (``xling convert hf``) keeps its own tokenizer: WordPiece
(BERT, mBERT, LaBSE), Unigram or BPE (XLM-R, RoBERTa), with its own normalisation. Its ids are
mapped to xling's, which fix ``<pad> <unk> <s> </s> <mask>`` at 0..4: the tokenizer's tokens for
those five (pad, unk, cls/bos, sep/eos, mask) come first, then every other row of the model in
its original order. ``rows[xling id]`` is the original id (the embedding row the converter
takes); a special the tokenizer lacks (or shares with an earlier one) takes the original
``<unk>`` row and is never produced. A vocabulary directory holds::

    vocab.json           "backend": "hf", "hf": {tokenizer_sha256, specials (the original id of
                         each xling special, or null), size (rows of the model's table)}, languages
    hf_tokenizer.json    the tokenizer.json, as given (named so that an xling model directory is
                         never taken for a Hugging Face one)

Encoding calls the tokenizer without its post-processor (no ``[CLS]`` / ``[SEP]``: xling adds
``<s>`` / ``</s>`` itself) and with ``encode_special_tokens`` on, so the text ``"[MASK]"`` or
``"<mask>"`` in user input is segmented like any other text and never becomes a special id (the
contract of every xling vocabulary; Hugging Face would match it). A model whose vocabulary holds
the special pieces (Unigram) may still segment such text into one: it is encoded as ``<unk>``.
Decoding maps back and lets the tokenizer's decoder join the pieces (special ids skipped).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from xling.errors import XlingError
from xling.tokenization.vocab import META_FILE, SPECIAL_TOKENS, UNK, Vocab
from xling.utils.integrity import cover_files, verify_checksums
from xling.utils.io import atomic_path, write_json_atomic

TOKENIZER_FILE = "hf_tokenizer.json"

cover_files(TOKENIZER_FILE)  # a model directory's checksums.json covers it too


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise XlingError("a Hugging Face tokenizer needs the tokenizers package: pip install 'xling[hf]'") from None
    return tokenizers


def id_rows(specials: Sequence[int | None], size: int, where: str) -> tuple[list[int], list[int]]:
    """``(rows, absent)``: the original row of every xling id (the five specials, then the other
    rows 0..size-1 in order) and the xling specials that have no row of their own (their row is
    the original ``<unk>``'s)."""
    if len(specials) != len(SPECIAL_TOKENS):
        raise XlingError(f"{where}: {len(specials)} special ids given, expected {len(SPECIAL_TOKENS)}")
    unk = specials[UNK]
    if not isinstance(unk, int) or not 0 <= unk < size:
        raise XlingError(f"{where}: the tokenizer has no unknown token inside the model's {size} rows")
    rows, absent, taken = [], [], set()
    for i, s in enumerate(specials):
        if s is not None and not (isinstance(s, int) and 0 <= s < size):
            raise XlingError(f"{where}: special id {s!r} ({SPECIAL_TOKENS[i]}) outside the model's {size} rows")
        if s is None or s in taken:
            rows.append(unk)
            absent.append(i)
        else:
            rows.append(s)
            taken.add(s)
    rows += [j for j in range(size) if j not in taken]
    return rows, absent


class HfVocab(Vocab):
    """A ``tokenizers`` tokenizer + the id mapping (+ languages) behind :class:`Vocab`'s interface."""

    def __init__(self, tokenizer_json: str, specials: Sequence[int | None], size: int, languages: Sequence[str],
                 meta: Mapping[str, Any] | None = None, *, source: str = "hf tokenizer"):
        """``tokenizer_json``: the text of a tokenizer.json; ``specials``: its id of xling's pad, unk,
        bos, eos and mask (None: it has none); ``size``: rows of the model's embedding table."""
        import numpy as np

        try:
            self._tok = _tokenizers().Tokenizer.from_str(tokenizer_json)
        except Exception as e:  # tokenizers raises a bare Exception on bad JSON
            raise XlingError(f"{source}: not a Hugging Face tokenizer.json ({str(e).splitlines()[0][:120]})") from None
        n_tok = self._tok.get_vocab_size(with_added_tokens=True)
        if n_tok > size:
            raise XlingError(f"{source}: the tokenizer has {n_tok} tokens, more than the model's {size} rows")
        self._tok.encode_special_tokens = True  # "<mask>" in text is text (module doc)
        self._json_text = tokenizer_json
        self._specials = [None if s is None else int(s) for s in specials]
        self._size = size
        self._rows, self._absent = id_rows(self._specials, size, source)
        to_xling = np.empty(size, dtype=np.int64)
        for i in reversed(range(len(self._rows))):  # the first xling id of a row wins (specials before copies)
            to_xling[self._rows[i]] = i
        self._to_xling = to_xling
        self._encoded = to_xling.copy()  # what encode returns: a special piece from the text itself is <unk>
        self._encoded[[r for i, r in enumerate(self._rows[:len(SPECIAL_TOKENS)]) if i != UNK]] = UNK
        self._sp = self  # code written for the SentencePiece backend calls vocab._sp.id_to_piece / piece_to_id
        self._init_common(languages, meta, source)

    @property
    def rows(self) -> list[int]:
        """The original id (embedding row) of every xling id."""
        return list(self._rows)

    @property
    def absent(self) -> list[int]:
        """xling special ids the original tokenizer has no token of its own for."""
        return list(self._absent)

    @property
    def tokenizer_json(self) -> str:
        """The tokenizer.json text, as given."""
        return self._json_text

    # ------------------------------------------------------------------ files
    @classmethod
    def load_files(cls, directory: str | os.PathLike, meta: dict[str, Any]) -> "HfVocab":
        """The vocabulary of ``directory`` whose vocab.json (already read and verified) is ``meta``."""
        directory = Path(directory)
        where = directory / META_FILE
        hf = meta.get("hf")
        if (not isinstance(hf, dict) or not isinstance(hf.get("tokenizer_sha256"), str)
                or not isinstance(hf.get("size"), int) or not isinstance(hf.get("specials"), list)):
            raise XlingError(f"{where}: missing or invalid 'hf' entry (tokenizer_sha256, specials, size)")
        if not isinstance(meta.get("languages"), list):
            raise XlingError(f"{where}: missing or invalid 'languages'")
        path = directory / TOKENIZER_FILE
        if not path.is_file():
            raise XlingError(f"{path}: no such file (a Hugging Face vocabulary needs it)")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != hf["tokenizer_sha256"]:
            raise XlingError(f"{path}: checksum mismatch with {META_FILE} (corrupt or replaced file)")
        verify_checksums(directory, [TOKENIZER_FILE])
        return cls(data.decode("utf-8"), hf["specials"], hf["size"], meta["languages"], meta, source=str(directory))

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``hf_tokenizer.json`` then ``vocab.json`` atomically; other files stay."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / TOKENIZER_FILE) as tmp:
            tmp.write_bytes(self._json_text.encode("utf-8"))
        write_json_atomic(directory / META_FILE, self.to_json())

    def to_json(self) -> dict[str, Any]:
        """vocab.json: the common entries, ``backend: hf`` and the tokenizer's checksum and id mapping."""
        sha = hashlib.sha256(self._json_text.encode("utf-8")).hexdigest()
        return self._json({"backend": "hf", "hf": {"tokenizer_sha256": sha, "specials": self._specials,
                                                   "size": self._size}})

    # ------------------------------------------------------------- tokens
    def encode(self, text: str, lang: str | None = None) -> list[int]:
        """Token ids of ``text`` (no BOS/EOS): the tokenizer's ids, mapped to xling's."""
        return self._encoded[self._tok.encode(text, add_special_tokens=False).ids].tolist()

    def encode_batch(self, texts: Sequence[str], lang: str | None = None) -> list[list[int]]:
        """Token ids of many texts (the tokenizer's parallel batch encode)."""
        encs = self._tok.encode_batch(list(texts), add_special_tokens=False)
        return [self._encoded[e.ids].tolist() for e in encs]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` by the tokenizer's decoder; xling's special ids are skipped."""
        n = len(SPECIAL_TOKENS)
        return self._tok.decode([self._rows[int(i)] for i in ids if n <= int(i) < len(self._rows)],
                                skip_special_tokens=True)

    def id_to_piece(self, token_id: int) -> str:
        """The tokenizer's token of ``token_id`` (xling's names for the five specials; "" for a row
        the tokenizer has no token for)."""
        token_id = int(token_id)
        if token_id < len(SPECIAL_TOKENS):
            return SPECIAL_TOKENS[token_id]
        return self._tok.id_to_token(self._rows[token_id]) or ""

    def piece_to_id(self, piece: str) -> int:
        """The xling id of token ``piece`` (xling's special names included); ``<unk>``'s when unknown."""
        if piece in SPECIAL_TOKENS:
            return SPECIAL_TOKENS.index(piece)
        j = self._tok.token_to_id(piece)
        return UNK if j is None else int(self._to_xling[j])

    def get_piece_size(self) -> int:
        """Number of ids (SentencePiece's name, for code reaching ``vocab._sp``)."""
        return len(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        return f"HfVocab(size={len(self)}, languages={self._languages})"
