"""The last stages: ``select`` (the retrieval mode over both directions' best candidates,
:func:`xling.mining.mine.combine_directions`; ``max`` is the global one-to-one match) and
``extract`` (the texts of the selected pairs, the filters, one TSV sorted by score,
written by :func:`xling.mining.files.write_pairs`, as ``xling mine`` writes it).

Filters, in this order, each counted: the score window (``min_score`` / ``max_score``),
identical sides (case and outer spaces ignored), the length ratio (characters without
outer spaces; the longer side over the shorter, at least 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xling.mining.files import write_pairs
from xling.mining.mine import Pairs, combine_directions
from xling.mining.pipeline.prepare import shard_texts
from xling.mining.pipeline.search import save_npy, score_outputs
from xling.mining.pipeline.units import Unit, stage

SELECT_OUTPUTS = ("select/src.npy", "select/tgt.npy", "select/score.npy")


def _direction(run: Path, direction: str, shards: list[str]) -> tuple[np.ndarray, np.ndarray]:
    best = [np.load(run / score_outputs(direction, k)[0]) for k in shards]
    score = [np.load(run / score_outputs(direction, k)[1]) for k in shards]
    return np.concatenate(best), np.concatenate(score)


@stage("select")
def select(run: Path, unit: Unit) -> dict:
    s, a = unit.settings, unit.args
    forward = backward = None
    if a["src_shards"] is not None:
        best, score = _direction(run, "fwd", a["src_shards"])
        forward = (np.arange(len(best)), best, score)
    if a["tgt_shards"] is not None:
        best, score = _direction(run, "bwd", a["tgt_shards"])
        backward = (best, np.arange(len(best)), score)
    pairs = combine_directions(forward, backward, s["mode"], s["threshold"])
    for rel, array in zip(SELECT_OUTPUTS, (pairs.src, pairs.tgt, pairs.score)):
        save_npy(run / rel, array)
    return {"rows": len(pairs)}


class _Texts:
    """``line(row)`` over the texts of the rows a side needs (the interface of LineFile)."""

    def __init__(self, run: Path, rows: np.ndarray, shards: list[str], sizes: list[int]) -> None:
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        wanted = np.unique(rows)
        shard = np.searchsorted(starts, wanted, side="right") - 1
        self.texts: dict[int, str] = {}
        for j in np.unique(shard):
            texts = shard_texts(run, shards[j])
            for r in wanted[shard == j]:
                self.texts[int(r)] = texts[int(r - starts[j])]

    def line(self, row: int) -> str:
        return self.texts[int(row)]


def _chars(texts: list[str]) -> np.ndarray:
    return np.fromiter((len(t.strip()) for t in texts), dtype=np.int64, count=len(texts))


@stage("extract")
def extract(run: Path, unit: Unit) -> dict:
    s, a = unit.settings, unit.args
    src, tgt, score = (np.load(run / rel) for rel in SELECT_OUTPUTS)
    lines = (_Texts(run, src, a["src_shards"], a["src_sizes"]), _Texts(run, tgt, a["tgt_shards"], a["tgt_sizes"]))
    counts = {"selected": len(score)}
    keep = np.ones(len(score), dtype=bool)
    if s["min_score"] is not None or s["max_score"] is not None:
        window = np.ones(len(score), dtype=bool)
        if s["min_score"] is not None:
            window &= score >= s["min_score"]
        if s["max_score"] is not None:
            window &= score <= s["max_score"]
        counts["score_window"] = int((keep & ~window).sum())
        keep &= window
    a_texts = [lines[0].line(i) for i in src]
    b_texts = [lines[1].line(j) for j in tgt]
    if s["drop_identical"]:
        same = np.fromiter((x.strip().casefold() == y.strip().casefold() for x, y in zip(a_texts, b_texts)),
                           dtype=bool, count=len(score))
        counts["identical"] = int((keep & same).sum())
        keep &= ~same
    if s["max_len_ratio"] is not None:
        la, lb = _chars(a_texts), _chars(b_texts)
        bad = np.maximum(la, lb) > s["max_len_ratio"] * np.maximum(np.minimum(la, lb), 1)
        counts["len_ratio"] = int((keep & bad).sum())
        keep &= ~bad
    write_pairs(run / unit.outputs[0], Pairs(src[keep], tgt[keep], score[keep]), *lines)
    return {"rows": int(keep.sum()), **counts}
