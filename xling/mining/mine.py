"""Margin-based bitext mining on embeddings (LASER's ``mine_bitexts``, vectorised).

    pairs = mine(src_emb, tgt_emb, k=4, margin="ratio", mode="max", threshold=1.06)
    pairs.src, pairs.tgt, pairs.score      # (p,) each, sorted by score descending

``src_emb`` / ``tgt_emb`` are arrays ``(n, d)`` / ``(m, d)`` or ``.npy`` paths (read in
chunks). Each side is searched for the k nearest neighbours of the other by cosine
(:mod:`xling.mining.index`); candidates are the k neighbours, scored by the margin
(:mod:`xling.mining.margin`). Retrieval modes (LASER's definitions):

- ``forward``: every source with its best-scoring target candidate;
- ``backward``: every target with its best-scoring source candidate;
- ``intersection``: the pairs that are best in both directions;
- ``max``: the forward and backward pairs together, taken in descending score order
  while neither sentence is already used (a greedy one-to-one matching).

The threshold keeps ``score >= threshold`` in every mode (in ``max`` mode filtering
before or after the matching gives the same pairs). A pair found in both directions
is reported once. ``k`` larger than a side is an error (not clamped: the margin's
meaning depends on k).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from xling.errors import unknown
from xling.mining.index import (DEFAULT_CHUNK, DEFAULT_EF_SEARCH, DEFAULT_NPROBE, Embeddings, as_embeddings,
                                build_index, check_dims, check_index, check_k, search)
from xling.mining.margin import best_candidates, candidate_scores, check_margin, neighbour_mean

log = logging.getLogger(__name__)

MODES = ("forward", "backward", "intersection", "max")
SIZE_RATIO_WARN = 10  # warn when one side is this many times larger than the other


@dataclass
class Pairs:
    """Mined pairs, sorted by score descending (ties by source, then target row)."""

    src: np.ndarray  # (p,) int64 source rows
    tgt: np.ndarray  # (p,) int64 target rows
    score: np.ndarray  # (p,) float32 margin scores

    def __len__(self) -> int:
        return len(self.score)

    @classmethod
    def sorted(cls, src: np.ndarray, tgt: np.ndarray, score: np.ndarray) -> "Pairs":
        order = np.lexsort((tgt, src, -score.astype(np.float64)))
        return cls(src[order].astype(np.int64), tgt[order].astype(np.int64), score[order].astype(np.float32))


@dataclass
class Neighbours:
    """k nearest neighbours by cosine in both directions (positions of the other side)."""

    fwd_sims: np.ndarray | None  # (n, k) float32: sources -> targets, nearest first
    fwd_ids: np.ndarray | None  # (n, k) int64, -1 where not found
    bwd_sims: np.ndarray | None  # (m, k) float32: targets -> sources
    bwd_ids: np.ndarray | None  # (m, k) int64
    n_src: int
    n_tgt: int

    @property
    def fwd_mean(self) -> np.ndarray | None:  # (n,)
        return None if self.fwd_sims is None else neighbour_mean(self.fwd_sims, self.fwd_ids)

    @property
    def bwd_mean(self) -> np.ndarray | None:  # (m,)
        return None if self.bwd_sims is None else neighbour_mean(self.bwd_sims, self.bwd_ids)


def needed_directions(margin: str, mode: str) -> tuple[bool, bool]:
    """(forward search needed, backward search needed) for a margin and mode."""
    if margin != "absolute" or mode in ("intersection", "max"):
        return True, True
    return mode == "forward", mode == "backward"


def check_scoring(margin: str, mode: str) -> None:
    """A known margin and retrieval mode."""
    check_margin(margin)
    if mode not in MODES:
        raise unknown("mode", mode, MODES)


def check_settings(n_src: int, n_tgt: int, d: int, *, k: int = 4, margin: str = "ratio", mode: str = "max",
                   index: str = "Flat", train_size: int | None = None, names: tuple[str, str] = ("source", "target"),
                   filtered: bool = False, **_other) -> None:
    """Every check of :func:`mine` that needs no vector, from the sizes alone (``n_src``,
    ``n_tgt`` sentences of dimension ``d``, called ``names``): margin, mode, ``k`` against
    both sides, the faiss index against the side(s) it will be built on. Mining with a model
    runs it before encoding anything. ``_other``: mining options checked where they are used."""
    check_scoring(margin, mode)
    check_k(k, n_tgt, names[1], filtered)
    check_k(k, n_src, names[0], filtered)
    fwd, bwd = needed_directions(margin, mode)
    for wanted, n, name in ((fwd, n_tgt, names[1]), (bwd, n_src, names[0])):  # forward search indexes the targets
        if wanted:
            check_index(index, d, n, name, train_size)


def neighbours(src: Embeddings, tgt: Embeddings, k: int, index: str = "Flat", *, forward: bool = True,
               backward: bool = True, nprobe: int = DEFAULT_NPROBE, ef_search: int = DEFAULT_EF_SEARCH,
               train_size: int | None = None, seed: int = 0, chunk_size: int = DEFAULT_CHUNK,
               progress: bool = False) -> Neighbours:
    """kNN in the asked directions; one index in memory at a time."""
    check_dims(src, tgt)
    check_k(k, tgt)
    check_k(k, src)
    kw = dict(nprobe=nprobe, ef_search=ef_search, train_size=train_size, seed=seed, chunk_size=chunk_size, progress=progress)
    result = []
    for wanted, queries, corpus, name in ((forward, src, tgt, "forward"), (backward, tgt, src, "backward")):
        if not wanted:
            result += [None, None]
            continue
        built = build_index(corpus, index, **kw)
        sims, ids = search(built, queries, k, chunk_size=chunk_size, progress=progress, desc=f"search {name}")
        del built
        missing = int((ids[:, -1] < 0).sum())
        if missing:
            log.warning("%s search: %d of %d queries got fewer than %d neighbours from index %r (raise nprobe / efSearch)",
                        name, missing, len(ids), k, index)
        result += [sims, ids]
    return Neighbours(*result, n_src=src.n, n_tgt=tgt.n)


def _found(i: np.ndarray, j: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    keep = j >= 0
    return i[keep], j[keep], s[keep]


def greedy_match(src: np.ndarray, tgt: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Indices of the candidates that a greedy one-to-one matching keeps when it takes them
    in descending score order (ties: lower source, then lower target row first).

    Vectorised: each round keeps every live candidate that comes first among the live
    ones at both its source and its target (it is what the greedy loop keeps: nothing
    before it can take either sentence), then drops the candidates of used sentences.
    With a strict total order this gives exactly the greedy matching."""
    order = np.lexsort((tgt, src, -score.astype(np.float64)))
    s, t = src[order], tgt[order]
    used_s = np.zeros(int(s.max(initial=-1)) + 1, dtype=bool)
    used_t = np.zeros(int(t.max(initial=-1)) + 1, dtype=bool)
    live = np.arange(len(order))
    kept = []
    while live.size:
        ls, lt = s[live], t[live]
        first_s = np.zeros(live.size, dtype=bool)
        first_s[np.unique(ls, return_index=True)[1]] = True  # live is in order: first = best
        first_t = np.zeros(live.size, dtype=bool)
        first_t[np.unique(lt, return_index=True)[1]] = True
        take = live[first_s & first_t]
        kept.append(take)
        used_s[s[take]] = True
        used_t[t[take]] = True
        live = live[~(used_s[ls] | used_t[lt])]
    return np.sort(order[np.concatenate(kept)]) if kept else np.zeros(0, dtype=np.int64)


def select_pairs(nb: Neighbours, margin: str = "ratio", mode: str = "max", threshold: float | None = None) -> Pairs:
    """Score the candidates and keep the pairs of ``mode`` (positions of both sides)."""
    check_scoring(margin, mode)
    fwd_mean, bwd_mean = (nb.fwd_mean, nb.bwd_mean) if margin != "absolute" else (None, None)
    fwd, bwd = needed_directions(margin, mode)
    if (fwd and nb.fwd_sims is None) or (bwd and nb.bwd_sims is None):
        raise ValueError(f"mode {mode!r} with margin {margin!r} needs neighbours in both directions")
    forward = backward = None
    if fwd:
        best_t, s = best_candidates(candidate_scores(nb.fwd_sims, nb.fwd_ids, fwd_mean, bwd_mean, margin), nb.fwd_ids)
        forward = (np.arange(nb.n_src), best_t, s)
    if bwd:
        best_s, s = best_candidates(candidate_scores(nb.bwd_sims, nb.bwd_ids, bwd_mean, fwd_mean, margin), nb.bwd_ids)
        backward = (best_s, np.arange(nb.n_tgt), s)
    return combine_directions(forward, backward, mode, threshold)


Triples = tuple[np.ndarray, np.ndarray, np.ndarray]  # (source rows (n,), target rows (n,), scores (n,))


def combine_directions(forward: Triples | None, backward: Triples | None, mode: str = "max",
                       threshold: float | None = None) -> Pairs:
    """The pairs of ``mode`` from each direction's best candidates: ``forward`` is
    (every source, its best target or -1, score), ``backward`` (best source or -1, every
    target, score); the direction a mode does not need may be None."""
    if mode == "forward":
        i, j, s = forward
    elif mode == "backward":
        i, j, s = backward
    elif mode == "intersection":
        i, j, s = _found(*forward)
        keep = backward[0][j] == i
        i, j, s = i[keep], j[keep], s[keep]
    else:
        i, j, s = (np.concatenate(x) for x in zip(forward, backward))
    i, j, s = _found(i, j, s)
    if threshold is not None:
        keep = s >= threshold
        i, j, s = i[keep], j[keep], s[keep]
    if mode == "max":
        keep = greedy_match(i, j, s)
        i, j, s = i[keep], j[keep], s[keep]
    return Pairs.sorted(i, j, s)


def mine(src: "np.ndarray | str | os.PathLike | Embeddings", tgt: "np.ndarray | str | os.PathLike | Embeddings", *,
         k: int = 4, margin: str = "ratio", mode: str = "max", threshold: float | None = None, index: str = "Flat",
         nprobe: int = DEFAULT_NPROBE, ef_search: int = DEFAULT_EF_SEARCH, train_size: int | None = None,
         seed: int = 0, chunk_size: int = DEFAULT_CHUNK, src_rows: np.ndarray | None = None,
         tgt_rows: np.ndarray | None = None, progress: bool = False) -> Pairs:
    """Mine translation pairs between two embedding sets; returns original row numbers.

    ``src_rows`` / ``tgt_rows`` (sorted) restrict each side to those rows (e.g. without
    duplicate or empty lines); ``index`` is a faiss factory string ("Flat" = exact)."""
    src_e = as_embeddings(src, _name(src, "source embeddings"), src_rows)
    tgt_e = as_embeddings(tgt, _name(tgt, "target embeddings"), tgt_rows)
    check_dims(src_e, tgt_e)
    check_settings(src_e.n, tgt_e.n, src_e.d, k=k, margin=margin, mode=mode, index=index, train_size=train_size,
                   names=(src_e.name, tgt_e.name), filtered=src_e.rows is not None or tgt_e.rows is not None)
    big, small = max(src_e.n, tgt_e.n), min(src_e.n, tgt_e.n)
    if big > SIZE_RATIO_WARN * small:
        log.warning("source and target sizes differ %.0fx (%d vs %d sentences): most sentences of the larger side "
                    "cannot have a translation; expect few pairs (backward/forward from the smaller side)",
                    big / small, src_e.n, tgt_e.n)
    fwd, bwd = needed_directions(margin, mode)
    nb = neighbours(src_e, tgt_e, k, index, forward=fwd, backward=bwd, nprobe=nprobe, ef_search=ef_search,
                    train_size=train_size, seed=seed, chunk_size=chunk_size, progress=progress)
    pairs = select_pairs(nb, margin, mode, threshold)
    return Pairs(src_e.original(pairs.src), tgt_e.original(pairs.tgt), pairs.score)


def _name(x: object, default: str) -> str:
    return str(x) if isinstance(x, (str, os.PathLike)) else default
