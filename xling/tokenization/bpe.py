"""The BPE backend of :class:`~xling.tokenization.vocab.Vocab`: BPE merge codes + a token list.

The original XLM and MASS models segment words with fastBPE codes (one merge per line,
``left right count``, ``</w>`` marking a word's last symbol) into subwords joined by ``@@ ``,
and look the subwords up in their dictionary (``hel@@ lo``). A BPE vocabulary directory holds::

    vocab.json   "backend": "bpe", "bpe": {codes_sha256, tokens_sha256, separator, control}, the
                 languages and the "normalize" steps run before segmenting (Moses, lowercasing...)
    bpe.codes    the merge codes, as given (fastBPE's 3 columns or subword-nmt's 2; a
                 "#version:" header is skipped; merges apply in file order)
    bpe.tokens   the tokens, one per line, line i = id i; the first five are xling's specials

Segmenting is ``subword-nmt``'s ``apply_bpe`` (the algorithm of fastBPE's ``applybpe`` without a
vocabulary: the lowest-ranked pair merges first, ``</w>`` on the word's last character). A
subword missing from the token list is ``<unk>``. The first ``control`` ids (xling's five
specials, then tokens of the original model that its own code inserts, such as XLM's
``<special0..9>``) are never produced by :meth:`BpeVocab.encode`, whatever the text says, and
:meth:`BpeVocab.decode` skips them. Decoding joins the tokens and removes the ``@@ `` joints; it
does not undo the normalize steps (Moses tokenization, lowercasing).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from xling.errors import XlingError
from xling.tokenization.normalize import normalize
from xling.tokenization.vocab import META_FILE, SPECIAL_TOKENS, UNK, Vocab
from xling.utils.integrity import cover_files, verify_checksums
from xling.utils.io import atomic_path, write_json_atomic

CODES_FILE = "bpe.codes"
TOKENS_FILE = "bpe.tokens"
SEPARATOR = "@@"  # subwords that continue in the next one end with it (fastBPE, subword-nmt)

cover_files(CODES_FILE, TOKENS_FILE)  # a model directory's checksums.json covers them too


def parse_codes(text: str, where: str) -> list[tuple[str, str]]:
    """The merges of a codes file: lines ``left right`` or ``left right count`` (fastBPE), in
    order; a first line ``#version: ...`` (subword-nmt) is skipped. Anything else is an XlingError
    naming the line."""
    lines = text.split("\n")
    start = 1 if lines and lines[0].startswith("#version:") else 0
    merges = []
    for n, line in enumerate(lines[start:], start + 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) not in (2, 3) or (len(fields) == 3 and not fields[2].isdigit()):
            raise XlingError(f"{where}: line {n} is not a BPE merge ('left right' or fastBPE's 'left right count'): "
                             f"{line[:60]!r}")
        merges.append((fields[0], fields[1]))
    if not merges:
        raise XlingError(f"{where}: no BPE merges (an empty codes file)")
    return merges


def read_codes(path: str | os.PathLike) -> str:
    """The text of a codes file (UTF-8), checked with :func:`parse_codes`; a missing, unreadable
    or malformed file is an XlingError."""
    path = Path(path)
    if not path.is_file():
        raise XlingError(f"{path}: no such BPE codes file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise XlingError(f"{path}: not UTF-8 text (byte {e.start}); not a BPE codes file") from None
    parse_codes(text, str(path))
    return text


def _sha(data: str) -> str:
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


class BpeVocab(Vocab):
    """BPE codes + token list (+ the languages and normalize steps) behind :class:`Vocab`'s interface."""

    def __init__(self, codes: str, tokens: Sequence[str], languages: Sequence[str],
                 meta: Mapping[str, Any] | None = None, *, control: int = len(SPECIAL_TOKENS),
                 source: str = "bpe vocabulary"):
        """``codes``: the text of a codes file; ``tokens``: id -> token, xling's five specials
        first; ``control``: how many leading ids :meth:`encode` never produces (>= 5)."""
        from subword_nmt.apply_bpe import BPE

        merges = parse_codes(codes, f"{source}: {CODES_FILE}")
        tokens = list(tokens)
        if tokens[: len(SPECIAL_TOKENS)] != SPECIAL_TOKENS:
            raise XlingError(f"{source}: the tokens start with {tokens[:5]}, expected {SPECIAL_TOKENS}")
        bad = next((t for t in tokens if not isinstance(t, str) or not t or any(c.isspace() for c in t)), None)
        if bad is not None:
            raise XlingError(f"{source}: token {bad!r} is empty or holds whitespace")
        if len(set(tokens)) != len(tokens):
            dup = next(t for t in tokens if tokens.count(t) > 1)
            raise XlingError(f"{source}: token {dup!r} is listed twice")
        if not isinstance(control, int) or not len(SPECIAL_TOKENS) <= control <= len(tokens):
            raise XlingError(f"{source}: control must be an integer in [{len(SPECIAL_TOKENS)}, {len(tokens)}], "
                             f"got {control!r}")
        self._codes = codes
        self._tokens = tokens
        self._control = control
        self._ids = {t: i for i, t in enumerate(tokens) if i >= control}
        header = "#version: 0.2\n"  # fastBPE's layout: </w> joins the word's last character
        self._bpe = BPE(io.StringIO(header + "".join(f"{a} {b}\n" for a, b in merges)), separator=SEPARATOR)
        self._sp = self  # code written for the SentencePiece backend calls vocab._sp.id_to_piece / piece_to_id
        self._init_common(languages, meta, source)

    # ------------------------------------------------------------------ files
    @classmethod
    def load_files(cls, directory: str | os.PathLike, meta: dict[str, Any]) -> "BpeVocab":
        """The vocabulary of ``directory`` whose vocab.json (already read and verified) is ``meta``."""
        directory = Path(directory)
        where = directory / META_FILE
        bpe = meta.get("bpe")
        if not isinstance(bpe, dict) or not all(isinstance(bpe.get(k), str) for k in ("codes_sha256", "tokens_sha256")):
            raise XlingError(f"{where}: missing or invalid 'bpe' entry (codes_sha256, tokens_sha256)")
        if bpe.get("separator", SEPARATOR) != SEPARATOR:
            raise XlingError(f"{where}: BPE separator {bpe.get('separator')!r} is not supported (only {SEPARATOR!r})")
        for key, kind in (("languages", list), ("size", int)):
            if not isinstance(meta.get(key), kind):
                raise XlingError(f"{where}: missing or invalid {key!r}")
        files = {}
        for name, key in ((CODES_FILE, "codes_sha256"), (TOKENS_FILE, "tokens_sha256")):
            path = directory / name
            if not path.is_file():
                raise XlingError(f"{path}: no such file (a BPE vocabulary needs {CODES_FILE} and {TOKENS_FILE})")
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != bpe[key]:
                raise XlingError(f"{path}: checksum mismatch with {META_FILE} (corrupt or replaced file)")
            files[name] = data.decode("utf-8")
        verify_checksums(directory, [CODES_FILE, TOKENS_FILE])
        text = files[TOKENS_FILE]
        tokens = text[:-1].split("\n") if text.endswith("\n") else text.split("\n")
        vocab = cls(files[CODES_FILE], tokens, meta["languages"], meta, control=bpe.get("control", len(SPECIAL_TOKENS)),
                    source=str(directory))
        if len(vocab) != meta["size"]:
            raise XlingError(f"{where}: size {meta['size']} but {directory / TOKENS_FILE} has {len(vocab)} tokens")
        return vocab

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``bpe.codes``, ``bpe.tokens`` then ``vocab.json`` atomically; other files stay."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in ((CODES_FILE, self._codes), (TOKENS_FILE, self._tokens_text())):
            with atomic_path(directory / name) as tmp:
                tmp.write_bytes(text.encode("utf-8"))
        write_json_atomic(directory / META_FILE, self.to_json())

    def _tokens_text(self) -> str:
        return "".join(t + "\n" for t in self._tokens)

    def to_json(self) -> dict[str, Any]:
        """vocab.json: the common entries, ``backend: bpe`` and the checksums of the two files."""
        bpe = {"codes_sha256": _sha(self._codes), "tokens_sha256": _sha(self._tokens_text()),
               "separator": SEPARATOR, "control": self._control}
        return self._json({"backend": "bpe", "bpe": bpe})

    # ------------------------------------------------------------- tokens
    def encode(self, text: str, lang: str | None = None) -> list[int]:
        """Token ids of ``text`` (no BOS/EOS): the normalize steps (with ``lang``), whitespace
        words, BPE, token lookup (unknown subwords: ``<unk>``)."""
        if self._normalize:
            text = normalize(self._normalize, text, lang)
        ids = self._ids
        return [ids.get(p, UNK) for p in self._bpe.segment_tokens(text.split())]

    def encode_batch(self, texts: Sequence[str], lang: str | None = None) -> list[list[int]]:
        """Token ids of many texts (one language, ``lang``)."""
        return [self.encode(t, lang) for t in texts]

    def segment(self, text: str, lang: str | None = None) -> list[str]:
        """The subword strings of ``text`` (after the normalize steps), before the token lookup."""
        if self._normalize:
            text = normalize(self._normalize, text, lang)
        return self._bpe.segment_tokens(text.split())

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``: the tokens joined by spaces, ``@@ `` joints removed; control ids skipped."""
        text = " ".join(self._tokens[int(i)] for i in ids if self._control <= int(i) < len(self._tokens))
        text = text.replace(SEPARATOR + " ", "")
        return text[: -len(SEPARATOR)] if text.endswith(SEPARATOR) else text

    def id_to_piece(self, token_id: int) -> str:
        """The token of ``token_id`` (e.g. ``'hel@@'``)."""
        return self._tokens[int(token_id)]

    def piece_to_id(self, piece: str) -> int:
        """The id of token ``piece`` (the specials included); ``<unk>``'s for an unknown one."""
        if piece in self._ids:
            return self._ids[piece]
        return self._tokens.index(piece) if piece in self._tokens[: self._control] else UNK

    def get_piece_size(self) -> int:
        """Number of tokens (SentencePiece's name, for code reaching ``vocab._sp``)."""
        return len(self._tokens)

    @property
    def control(self) -> int:
        """How many leading ids are never produced by :meth:`encode`."""
        return self._control

    def __len__(self) -> int:
        return len(self._tokens)

    def __repr__(self) -> str:
        return f"BpeVocab(size={len(self)}, languages={self._languages}, normalize={self._normalize})"
