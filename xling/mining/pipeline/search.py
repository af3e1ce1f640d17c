"""The index and search stages (faiss), each reusing :mod:`xling.mining.index` / ``.margin``.

- ``train`` (per indexed side): the index trained on the random sample :func:`build_index`
  would draw over the whole side (same positions, same seed), so an IVF / PQ index is the
  one ``xling mine`` trains;
- ``add`` (per shard): the trained index with the shard's vectors;
- ``merge`` (per side): the shards' indexes merged in order (row ids = the side's rows);
  an index type that cannot merge (HNSW, IVF fast-scan: :func:`mergeable`) has no ``add``
  units and is built here from the shards' vectors instead;
- ``search`` (per direction and query shard): k nearest neighbours and their mean cosine;
- ``means`` (per direction): the neighbour means of all shards in one ``.npy`` that the
  scoring of the other direction reads as a memory map;
- ``score`` (per direction and query shard): every query's best candidate by margin.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xling.mining.index import Embeddings, make_index, search, set_search_params, train_index, training_rows
from xling.mining.margin import best_candidates, candidate_scores, neighbour_mean
from xling.mining.pipeline.embed import embed_output
from xling.mining.pipeline.units import Unit, stage
from xling.utils.io import atomic_path

_INDEX: dict = {}  # (path, mtime) -> the merged index last read by this process


def save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def _write_index(index, path: Path) -> None:
    import faiss

    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))


def _read_index(path: Path):
    import faiss

    return faiss.read_index(str(path))


def _emb(run: Path, key: str) -> Embeddings:
    return Embeddings(run / embed_output(key), name=key)


def index_outputs(side: str) -> tuple[str, str]:
    """(trained empty index, merged index) of a side."""
    return f"index/{side}.trained.faiss", f"index/{side}.faiss"


@stage("train")
def train(run: Path, unit: Unit) -> dict:
    s, a = unit.settings, unit.args
    index = make_index(s["spec"], a["dim"])
    n = 0
    if not index.is_trained:
        sizes = np.asarray(a["rows"], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        positions = training_rows(index, int(starts[-1]), s["train_size"], s["seed"])
        shard = np.searchsorted(starts, positions, side="right") - 1
        parts = [_emb(run, key).take(positions[shard == j] - starts[j]) for j, key in enumerate(a["shards"])
                 if (shard == j).any()]
        x = np.concatenate(parts)  # (n_train, d), in position order
        train_index(index, x, s["spec"], f"the {unit.key} side")
        n = len(x)
    _write_index(index, run / unit.outputs[0])
    return {"rows": n}


@stage("add")
def add(run: Path, unit: Unit) -> dict:
    index = _read_index(run / index_outputs(unit.args["side"])[0])
    emb = _emb(run, unit.key)
    for _, x in emb.chunks(unit.args["chunk_size"]):
        index.add(x)
    _write_index(index, run / unit.outputs[0])
    return {"rows": emb.n}


def mergeable(index) -> bool:
    """Whether per-shard copies of ``index`` can be merged with faiss's ``merge_from``: IVF indexes
    (behind a transform too) and flat-code ones (Flat, PQ, SQ), except fast-scan (``PQ..x4fs``),
    whose block-packed lists faiss 1.15 merges into corrupt memory (the process dies); HNSW cannot
    merge at all."""
    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        return not isinstance(faiss.downcast_index(ivf), faiss.IndexIVFFastScan)
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexPreTransform) else index
    return isinstance(inner, faiss.IndexFlatCodes)


@stage("merge")
def merge(run: Path, unit: Unit) -> dict:
    """The side's index: the shards' indexes merged in order, or (an index that cannot merge, whose
    ``add`` stage had no units) the shards' vectors added in order to the trained index."""
    import faiss

    index = _read_index(run / index_outputs(unit.key)[0])
    if mergeable(index):
        shift = faiss.try_extract_index_ivf(index) is not None  # IVF lists carry row ids; flat codes do not
        for key in unit.args["shards"]:
            index.merge_from(_read_index(run / f"index/{key}.faiss"), index.ntotal if shift else 0)
    else:
        for key in unit.args["shards"]:
            for _, x in _emb(run, key).chunks(unit.args["chunk_size"]):
                index.add(x)
    _write_index(index, run / unit.outputs[0])
    return {"rows": int(index.ntotal)}


def knn_outputs(direction: str, key: str) -> tuple[str, str, str]:
    """(sims, ids, neighbour mean) of a query shard searched in ``direction`` (fwd: src -> tgt)."""
    return tuple(f"knn/{direction}/{key.split('/')[1]}.{x}.npy" for x in ("sims", "ids", "mean"))


def _index(path: Path):
    key = (str(path), path.stat().st_mtime_ns)
    if key not in _INDEX:
        _INDEX.clear()
        _INDEX[key] = _read_index(path)
    return _INDEX[key]


@stage("search")
def search_stage(run: Path, unit: Unit) -> dict:
    s, a = unit.settings, unit.args
    index = set_search_params(_index(run / index_outputs(a["indexed"])[1]), s["nprobe"], s["ef_search"])
    sims, ids = search(index, _emb(run, a["shard"]), s["k"], chunk_size=a["chunk_size"])  # (n, k) each
    for rel, array in zip(unit.outputs, (sims, ids, neighbour_mean(sims, ids))):
        save_npy(run / rel, array)
    return {"rows": len(ids), "missing": int((ids[:, -1] < 0).sum())}


def means_output(direction: str) -> str:
    return f"knn/{direction}.mean.npy"


@stage("means")
def means(run: Path, unit: Unit) -> dict:
    parts = [np.load(run / knn_outputs(unit.key, key)[2]) for key in unit.args["shards"]]
    mean = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    save_npy(run / unit.outputs[0], mean)
    return {"rows": len(mean)}


def score_outputs(direction: str, key: str) -> tuple[str, str]:
    """(best candidate row (n,), its margin score (n,)) of a query shard."""
    return tuple(f"score/{direction}/{key.split('/')[1]}.{x}.npy" for x in ("best", "score"))


@stage("score")
def score(run: Path, unit: Unit) -> dict:
    s, a = unit.settings, unit.args
    sims_p, ids_p, mean_p = knn_outputs(a["direction"], a["shard"])
    sims, ids = np.load(run / sims_p), np.load(run / ids_p)
    own = other = None
    if s["margin"] != "absolute":
        own = np.load(run / mean_p)
        other = np.load(run / means_output(a["other"]), mmap_mode="r")  # (m,) read where the candidates point
    best, best_score = best_candidates(candidate_scores(sims, ids, own, other, s["margin"]), ids)
    save_npy(run / unit.outputs[0], best.astype(np.int64))
    save_npy(run / unit.outputs[1], best_score.astype(np.float32))
    return {"rows": len(best), "found": int((best >= 0).sum())}
