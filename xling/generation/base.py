"""What every generation piece shares: the step-decoder contract, the search settings
and the hypothesis record.

Search (:mod:`xling.generation.search`) never sees a network, only a
:class:`StepDecoder`: a batch of N sources being decoded, which owns the model's
caches. It is built by :func:`xling.generation.decoders.step_decoder`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch

from xling.errors import XlingError


@runtime_checkable
class StepDecoder(Protocol):
    """One batch of N sources being decoded one token per step.

    Optional attributes, read with ``getattr``: ``max_target_len`` (int, or a sequence
    of N ints, one per source in the order given at construction): the most tokens,
    EOS excluded, the model can generate (its position budget); search caps the length
    ``a * src_len + b`` with it. ``device``: where ``prev`` is put (default CPU).
    """

    def step(self, prev: torch.Tensor) -> torch.Tensor:
        """prev (N,) long: the last token of each row (BOS at step 0) -> log-probs (N, V) float32.

        The returned tensor must be fresh: search edits it in place (bans, forced EOS)."""
        ...

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` (N',) long, in that order: expands to beams, reorders
        beams, drops finished rows (N' may be smaller or larger than N)."""
        ...


@dataclass
class Hypothesis:
    """One generated sequence."""

    tokens: list[int]  # generated token ids, without BOS and EOS
    score: float  # sum(token_logprobs) / (len(tokens) + 1) ** length_penalty
    token_logprobs: list[float] = field(default_factory=list)  # model log-prob of each token, then EOS's (len + 1)


@dataclass
class GenerationConfig:
    """Search settings: greedy (beam 1), beam search, or sampling.

    Scores are fairseq's: the sum of the model's log-probs of the tokens and the final
    EOS, divided by ``length ** length_penalty`` where length counts the EOS. With
    ``length_penalty`` 0 that is the raw log-probability (favours short outputs); 1 the
    per-token average; above 1 favours longer outputs still more.
    """

    beam: int = 1  # beam size; 1 = greedy search
    max_len_a: float = 1.2  # max target length = int(max_len_a * src_len + max_len_b) tokens (EOS excluded) ...
    max_len_b: int = 10  # ... further capped by the model's position budget; at the max, EOS is forced
    min_len: int = 1  # EOS is forbidden before this many tokens (0 allows empty outputs)
    length_penalty: float = 1.0  # exponent alpha of score = logprob / length**alpha (fairseq)
    no_repeat_ngram: int = 0  # never emit an n-gram of this size twice in one output; 0 = off
    early_stopping: bool = True  # beam: a source stops once `beam` hypotheses ended (fairseq); False: it goes on
    #   until no live hypothesis can still beat the worst of those (exact bound with the length penalty)
    sampling: bool = False  # draw each token from the (filtered) distribution instead of searching
    temperature: float = 1.0  # sampling: log-probs are divided by it (< 1 sharper, > 1 flatter)
    top_k: int = 0  # sampling: keep only the k most likely tokens; 0 = all
    top_p: float = 1.0  # sampling: keep the smallest set of tokens with probability mass >= top_p (nucleus); 1 = all
    n_best: int = 1  # hypotheses returned per source (beam: <= beam; sampling: independent samples)
    seed: int = 0  # sampling: seed of the torch.Generator (same seed and batching -> same samples)

    def __post_init__(self) -> None:
        def positive_int(name: str, value, minimum: int) -> None:
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise XlingError(f"generation {name}: must be an integer >= {minimum}, got {value!r}")

        positive_int("beam", self.beam, 1)
        positive_int("max_len_b", self.max_len_b, 0)
        positive_int("min_len", self.min_len, 0)
        positive_int("no_repeat_ngram", self.no_repeat_ngram, 0)
        positive_int("top_k", self.top_k, 0)
        positive_int("n_best", self.n_best, 1)
        positive_int("seed", self.seed, 0)
        if not self.max_len_a >= 0:
            raise XlingError(f"generation max_len_a: must be >= 0, got {self.max_len_a!r}")
        if self.max_len_a == 0 and self.max_len_b == 0:
            raise XlingError("generation max_len_a/max_len_b: both 0 leaves no room for any token")
        if not self.temperature > 0:
            raise XlingError(f"generation temperature: must be > 0, got {self.temperature!r}")
        if not 0 < self.top_p <= 1:
            raise XlingError(f"generation top_p: must be in (0, 1], got {self.top_p!r}")
        if self.sampling:
            if self.beam != 1:
                raise XlingError(f"generation: sampling draws single samples, use beam 1 (got beam {self.beam}); "
                                 "n_best gives several samples")
        else:
            changed = [n for n, v, d in (("temperature", self.temperature, 1.0), ("top_k", self.top_k, 0),
                                         ("top_p", self.top_p, 1.0)) if v != d]
            if changed:
                raise XlingError(f"generation {changed[0]}: only used with sampling (turn sampling on)")
            if self.n_best > self.beam:
                raise XlingError(f"generation n_best: {self.n_best} exceeds the beam size {self.beam}")

    def max_lens(self, src_lens: Sequence[int], cap: int | Sequence[int] | None = None) -> list[int]:
        """Per-source maximum target length: ``int(a * src_len + b)``, capped by ``cap``
        (an int, or one int per source), never below 0."""
        out = [int(self.max_len_a * n + self.max_len_b) for n in src_lens]
        if cap is not None:
            caps = [cap] * len(out) if isinstance(cap, int) else list(cap)
            if len(caps) != len(out):
                raise ValueError(f"max_target_len has {len(caps)} values for {len(out)} sources")
            out = [min(m, c) for m, c in zip(out, caps)]
        return [max(m, 0) for m in out]
