"""Inputs cut to a model's maximum length: counted over a whole run, said once.

Library functions that cut token sequences (``SentenceEncoder.encode``, the classification
``Predictor``, ``generate_nbest``, mining with a model) take an optional ``truncation``
counter. Given one, they only add to it, and the caller (a command that encodes in chunks,
batches or sides) reports it once at the end::

    cut = Truncation()
    for chunk in chunks:
        enc.encode(chunk, lang, truncation=cut)
    if msg := cut.message():
        print(f"xling embed: {msg}", file=sys.stderr)

Without one, each call counts on its own and logs one warning (:func:`counting`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field


@dataclass
class Truncation:
    """Lines (sentences) longer than a model's limit, summed over calls."""

    cut: int = 0  # lines longer than the limit (cut to it)
    total: int = 0  # lines seen
    limit: int | None = None  # tokens kept (the smallest limit seen)
    parts: dict[str, int] = field(default_factory=dict)  # lines cut per source (file, pair), when a caller says

    def add(self, lengths: Iterable[int], limit: int, total: int | None = None) -> int:
        """Count token ``lengths`` over ``limit`` among ``total`` lines (default: one line per
        length); returns how many are cut."""
        lengths = list(lengths)
        n = sum(length > limit for length in lengths)
        self.cut += n
        self.total += len(lengths) if total is None else total
        self.limit = limit if self.limit is None else min(self.limit, limit)
        return n

    def message(self, what: str = "lines") -> str | None:
        """One line saying how many ``what`` were cut; None when none was."""
        if not self.cut:
            return None
        parts = f" ({', '.join(f'{k}: {n}' for k, n in self.parts.items())})" if len(self.parts) > 1 else ""
        return (f"{self.cut} of {self.total} {what} are longer than {self.limit} tokens (the model's maximum): "
                f"cut to {self.limit}{parts}")


@contextlib.contextmanager
def counting(truncation: Truncation | None, log: logging.Logger, what: str = "lines",
             prefix: str = "") -> Iterator[Truncation]:
    """``truncation`` itself when the caller counts (it reports); otherwise a fresh counter
    whose count is logged as one warning when the block ends (``prefix``: e.g. the language)."""
    if truncation is not None:
        yield truncation
        return
    own = Truncation()
    yield own
    if msg := own.message(what):
        log.warning("%s%s", prefix, msg)
