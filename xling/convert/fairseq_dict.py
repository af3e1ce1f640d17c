"""fairseq dictionaries (``dict.txt``, ``dict.{src,tgt}.txt``), read and written as fairseq does.

The file format (``fairseq/data/dictionary.py``, ``Dictionary.add_from_file`` / ``save``):

- one entry per line, ``<token> <count>``: the line is right-stripped, then split on its LAST
  space, so a token may contain spaces; the count is an integer;
- a trailing `` #fairseq:overwrite`` flag lets a line redefine a token that is already in the
  dictionary (a special symbol, or an earlier line): the token is appended again with a new
  index, which :meth:`FairseqDict.index` then returns; without the flag a repeated token is an
  error;
- the four specials ``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3 are added by the code before
  the file's entries and are not written; reading adds them, writing skips them;
- ``madeupword0000``, ``madeupword0001`` ... (count 0) pad the size to a multiple of 8 when fairseq
  builds a dictionary (``Dictionary.finalize`` -> ``pad_to_multiple_``); they are ordinary entries
  of the file afterwards. Tasks may append more symbols after loading (mBART language tags
  ``[xx_XX]`` then ``<mask>``): :meth:`FairseqDict.add_symbol`.

    d = FairseqDict.load("dict.en.txt")          # one-line XlingError naming file:line when malformed
    d.index("▁the"); d.symbols[d.index("x")]     # unknown tokens -> UNK (3), as in fairseq
    FairseqDict.from_tokens(pieces).save(path)   # specials + pieces + madeupword padding, atomic
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xling.errors import XlingError
from xling.utils.io import read_lines, write_lines_atomic

SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")  # fairseq's bos, pad, eos, unk: indices 0-3, never in the file
BOS, PAD, EOS, UNK = range(4)
NSPECIAL = len(SPECIALS)
OVERWRITE = "#fairseq:overwrite"  # flag after the count: this line redefines a token already present
PADDING_FACTOR = 8  # fairseq-preprocess's default --padding-factor
MADEUP = "madeupword{:04d}"  # padding symbols (count 0)


@dataclass
class FairseqDict:
    """A fairseq dictionary: ``symbols[i]`` is the token of index ``i`` (the specials first),
    ``counts[i]`` its count. A token may appear twice (``#fairseq:overwrite``); its index is
    the last one. Change it through :meth:`add_symbol` / :meth:`pad_to_multiple` (they keep the
    index in step)."""

    symbols: list[str] = field(default_factory=lambda: list(SPECIALS))
    counts: list[int] = field(default_factory=lambda: [1] * NSPECIAL)  # fairseq counts each special once
    _indices: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if tuple(self.symbols[:NSPECIAL]) != SPECIALS:
            raise ValueError(f"a fairseq dictionary starts with {SPECIALS}, got {self.symbols[:NSPECIAL]}")
        if len(self.counts) != len(self.symbols):
            raise ValueError(f"{len(self.symbols)} symbols but {len(self.counts)} counts")
        self._indices = {s: i for i, s in enumerate(self.symbols)}  # a repeated token: its last index

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, token: str) -> bool:
        return token in self._indices

    def index(self, token: str) -> int:
        """The index of ``token``; an unknown token is ``<unk>`` (3), as fairseq gives it."""
        return self._indices.get(token, UNK)

    def add_symbol(self, token: str, count: int = 1, overwrite: bool = False) -> int:
        """fairseq's ``add_symbol``: a token already present gets ``count`` added (unless
        ``overwrite``: then it is appended again); a new one is appended. Returns its index."""
        if token in self._indices and not overwrite:
            i = self._indices[token]
            self.counts[i] += count
            return i
        self._indices[token] = len(self.symbols)
        self.symbols.append(token)
        self.counts.append(count)
        return len(self.symbols) - 1

    def pad_to_multiple(self, factor: int = PADDING_FACTOR) -> None:
        """Append ``madeupword0000``... (count 0) until the size is a multiple of ``factor``
        (fairseq's ``pad_to_multiple_``; a name already present is skipped)."""
        i = 0
        while factor > 1 and len(self) % factor:
            self.add_symbol(MADEUP.format(i), 0)
            i += 1

    @classmethod
    def from_tokens(cls, tokens: Iterable[str], counts: Sequence[int] | None = None,
                    padding_factor: int = PADDING_FACTOR, what: str = "vocabulary") -> FairseqDict:
        """The specials, then ``tokens`` in order (count 1 each unless ``counts``), padded to a
        multiple of ``padding_factor`` as fairseq pads a dictionary it builds. A repeated token
        (a special included) is an XlingError naming it and ``what``."""
        tokens = list(tokens)
        counts = [1] * len(tokens) if counts is None else list(counts)
        if len(counts) != len(tokens):
            raise ValueError(f"{len(tokens)} tokens but {len(counts)} counts")
        d = cls()
        for token, count in zip(tokens, counts):
            if token in d:
                where = "a fairseq special symbol" if d.index(token) < NSPECIAL else "repeated"
                raise XlingError(f"{what}: token {token!r} is {where}; a fairseq dictionary holds each token once")
            _check_token(token, what)
            d.add_symbol(token, count)
        d.pad_to_multiple(padding_factor)
        return d

    @classmethod
    def load(cls, path: str | os.PathLike) -> FairseqDict:
        """Read a ``dict.txt`` as fairseq does (the specials added first). Invalid UTF-8, a
        malformed line, a repeated token without the overwrite flag and a file without entries
        are one-line XlingErrors naming the file (and line)."""
        path = Path(path)
        if path.is_dir():
            raise XlingError(f"{path}: is a directory, expected a fairseq dictionary (dict.txt)")
        d = cls()
        first_line: dict[str, int] = {}
        for n, raw in enumerate(read_lines(path, allow_empty=True), 1):
            token, count, overwrite = _parse(raw, path, n)
            if token in d and not overwrite:
                earlier = "a special symbol fairseq adds itself" if d.index(token) < NSPECIAL \
                    else f"already on line {first_line[token]}"
                raise XlingError(f"{path}:{n}: duplicate token {token!r} ({earlier}; "
                                 f"add {OVERWRITE} to redefine it)")
            first_line.setdefault(token, n)
            d.add_symbol(token, count, overwrite=overwrite)
        if len(d) == NSPECIAL:
            raise XlingError(f"{path}: empty dictionary (no '<token> <count>' lines)")
        return d

    def lines(self) -> list[str]:
        """The file's lines as fairseq writes them (``<token> <count>``, no specials), with the
        overwrite flag on a token that repeats an earlier one, so that the file loads back."""
        seen = set(SPECIALS)
        out = []
        for token, count in zip(self.symbols[NSPECIAL:], self.counts[NSPECIAL:]):
            _check_token(token, "fairseq dictionary")
            out.append(f"{token} {count}" + (f" {OVERWRITE}" if token in seen else ""))
            seen.add(token)
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write ``dict.txt`` atomically (:meth:`lines`)."""
        write_lines_atomic(path, self.lines())


def _parse(raw: str, path: Path, n: int) -> tuple[str, int, bool]:
    """``(token, count, overwrite)`` of one line, split as fairseq splits it."""
    line = raw.rstrip()
    overwrite = False
    parts = line.rsplit(" ", 1)
    if len(parts) == 2 and parts[1] == OVERWRITE:
        overwrite = True
        parts = parts[0].rsplit(" ", 1)
    try:
        if len(parts) != 2 or "\r" in raw:  # fairseq reads a lone CR as a line break
            raise ValueError
        return parts[0], int(parts[1]), overwrite
    except ValueError:
        shown = raw if len(raw) <= 60 else raw[:60] + "..."
        raise XlingError(f"{path}:{n}: malformed dictionary line {shown!r} "
                         f"(expected '<token> <count>' [{OVERWRITE}])") from None


def _check_token(token: str, what: str) -> None:
    if "\n" in token or "\r" in token:
        raise XlingError(f"{what}: token {token!r} contains a line break; a dict.txt cannot hold it")
