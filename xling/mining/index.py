"""Embeddings read in row chunks, and faiss k-nearest-neighbour search over them.

:class:`Embeddings` wraps an in-memory array or a ``.npy`` file (opened with
``np.load(mmap_mode="r")`` to check its header; chunks are then read with
``np.fromfile`` at the right offset, so a pass over a 100 GB file keeps one chunk
in the process, not the file's pages). Every chunk comes out float32 and
L2-normalised (inner product = cosine); non-finite values are an error.

:func:`build_index` builds any faiss index factory string with the inner-product
metric ("Flat" = exact; "IVF4096,Flat", "IVF4096,PQ64", "HNSW32", ... = approximate),
trains it on a random sample of rows when it needs training, and adds the rows
chunk by chunk. :func:`search` runs the queries chunk by chunk, so memory is the
index plus one chunk plus the ``(n, k)`` result, never an ``n x m`` matrix.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from xling.errors import XlingError

DEFAULT_CHUNK = 16384  # query rows per faiss call
DEFAULT_TRAIN = 100_000  # training sample of an index that needs training (at least 64 per IVF list)
DEFAULT_NPROBE = 16  # IVF lists visited per query (ignored by indexes without lists)
DEFAULT_EF_SEARCH = 64  # HNSW search breadth (ignored by indexes without a graph)
SMALL_WORK = 50_000_000  # multiply-adds under which faiss runs on one thread (threads only add latency;
# on a busy machine each OpenMP barrier can wait a whole scheduler slice)


@contextlib.contextmanager
def _threads_for(work: float) -> Iterator[None]:
    """One faiss thread for small jobs, faiss's default otherwise."""
    import faiss

    if work >= SMALL_WORK:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _faiss_message(e: Exception) -> str:
    """The useful last part of a faiss C++ exception text, on one line."""
    text = " ".join(str(e).split())
    for marker in ("failed: ", "could not ", ": Error: "):
        if marker in text:
            return text[text.index(marker) :].removeprefix(": Error: ")
    return text[-200:]


class Embeddings:
    """A 2-D embedding matrix (an array or a ``.npy`` path), optionally restricted to
    ``rows`` (sorted original row numbers); positions ``0..n-1`` index the selection."""

    def __init__(self, data: np.ndarray | str | os.PathLike, name: str | None = None,
                 rows: np.ndarray | None = None) -> None:
        self.path: Path | None = None
        if isinstance(data, (str, os.PathLike)):
            self.path = Path(data)
            self.name = name or str(self.path)
            if not self.path.is_file():
                raise XlingError(f"{self.path}: no such file")
            try:
                array = np.load(self.path, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError, EOFError) as e:
                raise XlingError(f"{self.path}: not a readable .npy file ({e})") from None
        else:
            array = np.asarray(data)
            self.name = name or "embeddings"
        if array.ndim != 2:
            raise XlingError(f"{self.name}: embeddings must be a 2-D array (sentences, dim), got shape {array.shape}")
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise XlingError(f"{self.name}: embeddings must be numbers, got dtype {array.dtype}")
        self._array = array
        self.total, self.d = array.shape
        self._fromfile = self.path is not None and array.flags.c_contiguous and array.dtype.kind in "fiu"
        if rows is not None:
            rows = np.asarray(rows, dtype=np.int64)
            if rows.size and (np.any(np.diff(rows) <= 0) or rows[0] < 0 or rows[-1] >= self.total):
                raise ValueError("rows must be sorted, unique and inside the array")
        self.rows = rows
        self.n = self.total if rows is None else len(rows)
        if self.n == 0:
            raise XlingError(f"{self.name}: no embeddings (0 rows{' left' if rows is not None and self.total else ''})")
        if self.d == 0:
            raise XlingError(f"{self.name}: embeddings have dimension 0")

    def original(self, positions: np.ndarray) -> np.ndarray:
        """Original row numbers of selection positions."""
        return positions if self.rows is None else self.rows[positions]

    def _block(self, lo: int, hi: int) -> np.ndarray:
        """Original rows ``lo:hi`` as a fresh array (n, d)."""
        if self._fromfile:
            a = self._array
            return np.fromfile(self.path, dtype=a.dtype, count=(hi - lo) * self.d,
                               offset=a.offset + lo * self.d * a.dtype.itemsize).reshape(hi - lo, self.d)
        return np.array(self._array[lo:hi])

    def _read(self, file_rows: np.ndarray) -> np.ndarray:
        """Sorted original rows, read in blocks spanning at most 4096..65536 rows."""
        out = np.empty((len(file_rows), self.d), dtype=np.float32)  # (c, d)
        window = max(4096, min(len(file_rows), 65536))
        i = 0
        while i < len(file_rows):
            lo = int(file_rows[i])
            j = int(np.searchsorted(file_rows, lo + window, side="left"))
            block = self._block(lo, int(file_rows[j - 1]) + 1)
            out[i:j] = block[file_rows[i:j] - lo]
            i = j
        return out

    def _finish(self, x: np.ndarray, file_rows: np.ndarray | None, lo: int) -> np.ndarray:
        import faiss

        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            bad = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
            row = int(file_rows[bad]) if file_rows is not None else lo + bad
            raise XlingError(f"{self.name}: row {row}: non-finite values (NaN or inf)")
        faiss.normalize_L2(x)  # in place; all-zero rows stay zero
        return x

    def slice(self, start: int, stop: int) -> np.ndarray:
        """Normalised float32 rows of selection positions ``start:stop``, (stop-start, d)."""
        if self.rows is None:
            return self._finish(self._block(start, stop), None, start)
        file_rows = self.rows[start:stop]
        return self._finish(self._read(file_rows), file_rows, start)

    def take(self, positions: np.ndarray) -> np.ndarray:
        """Normalised float32 rows at arbitrary selection positions, in their order, (p, d)."""
        positions = np.asarray(positions, dtype=np.int64)
        order = np.argsort(positions, kind="stable")
        file_rows = self.original(positions[order])
        uniq, inverse = np.unique(file_rows, return_inverse=True)
        x = self._finish(self._read(uniq), uniq, 0)[inverse]
        out = np.empty_like(x)
        out[order] = x
        return out

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[tuple[int, np.ndarray]]:
        """``(start position, normalised chunk (c, d))`` over the selection."""
        for start in range(0, self.n, chunk_size):
            yield start, self.slice(start, min(start + chunk_size, self.n))


def as_embeddings(x: "Embeddings | np.ndarray | str | os.PathLike", name: str, rows: np.ndarray | None = None) -> Embeddings:
    if isinstance(x, Embeddings):
        if rows is not None:
            raise ValueError("pass rows when building the Embeddings")
        return x
    return Embeddings(x, name=name, rows=rows)


def check_dims(a: Embeddings, b: Embeddings) -> None:
    if a.d != b.d:
        raise XlingError(f"embedding dimensions differ: {a.name} has dimension {a.d}, {b.name} has dimension {b.d}")


def _sentences(n: int) -> str:
    return f"{n} sentence{'' if n == 1 else 's'}"


def check_k(k: int, corpus: Embeddings | int, name: str | None = None, filtered: bool = False) -> None:
    """``k`` neighbours fit ``corpus`` (embeddings, or a number of sentences called ``name``;
    ``filtered``: counted after removing duplicate and empty lines)."""
    if isinstance(corpus, Embeddings):
        corpus, name, filtered = corpus.n, corpus.name, corpus.rows is not None
    if k < 1:
        raise XlingError(f"k must be at least 1, got {k}")
    if k > corpus:
        after = " after removing duplicates and empty lines" if filtered else ""
        raise XlingError(f"{name}: {_sentences(corpus)}{after}, fewer than the k={k} neighbours asked for; "
                         f"use a smaller k")


def _min_training(index) -> int:
    """Fewest vectors that train ``index``: its IVF lists, its PQ centroids per sub-quantizer."""
    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    inner = faiss.downcast_index(index)
    if isinstance(inner, faiss.IndexPreTransform):
        inner = faiss.downcast_index(inner.index)
    pq = getattr(inner, "pq", None)
    return max(ivf.nlist if ivf is not None else 1, pq.ksub if pq is not None else 1)


def _n_train(n: int, train_size: int | None, nlist: int) -> int:
    """Vectors sampled to train an index of ``nlist`` lists on ``n`` rows."""
    return min(n, train_size or max(DEFAULT_TRAIN, 64 * nlist))


def make_index(spec: str, d: int):
    """An empty faiss inner-product index from the factory string ``spec``."""
    import faiss

    try:
        return faiss.index_factory(d, spec, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise XlingError(f"faiss index {spec!r}: {_faiss_message(e)}") from None


def check_index(spec: str, d: int, n: int, name: str, train_size: int | None = None) -> None:
    """Before any vector exists: ``spec`` is a valid index of dimension ``d``, and when it
    needs training, the ``n`` sentences of ``name`` give it enough training vectors."""
    import faiss

    index = make_index(spec, d)
    if index.is_trained:
        return
    ivf = faiss.try_extract_index_ivf(index)
    need, have = _min_training(index), _n_train(n, train_size, ivf.nlist if ivf is not None else 0)
    if have < need:
        what = f"{_sentences(n)} {'is' if n == 1 else 'are'}" if have == n else f"a training sample of {have} is"
        raise XlingError(f"{name}: {what} too few to train faiss index {spec!r} (it needs at least {need}); "
                         f"use a smaller index (fewer lists or centroids) or Flat")


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="sent", unit_scale=True, disable=not enabled, leave=False)


def build_index(emb: Embeddings, spec: str = "Flat", *, nprobe: int = DEFAULT_NPROBE,
                ef_search: int = DEFAULT_EF_SEARCH, train_size: int | None = None, seed: int = 0,
                chunk_size: int = DEFAULT_CHUNK, progress: bool = False):
    """A faiss inner-product index of ``emb`` built from the factory string ``spec``."""
    index = make_index(spec, emb.d)
    with _threads_for(emb.n * emb.d * 64):
        _train_and_add(index, emb, spec, train_size, seed, chunk_size, progress)
    return set_search_params(index, nprobe, ef_search)


def set_search_params(index, nprobe: int = DEFAULT_NPROBE, ef_search: int = DEFAULT_EF_SEARCH):
    """``index`` with its IVF lists visited per query and HNSW breadth set (where it has them)."""
    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.nprobe = max(1, min(nprobe, ivf.nlist))
    try:
        faiss.ParameterSpace().set_index_parameter(index, "efSearch", ef_search)
    except RuntimeError:
        pass  # no HNSW graph in this index
    return index


def _train_and_add(index, emb: Embeddings, spec: str, train_size: int | None, seed: int, chunk_size: int,
                   progress: bool) -> None:
    if not index.is_trained:
        train_index(index, emb.take(training_rows(index, emb.n, train_size, seed)), spec, emb.name)
    with _progress(emb.n, f"index {Path(emb.name).name}", progress) as bar:
        for _, x in emb.chunks(chunk_size):
            index.add(x)
            bar.update(len(x))


def training_rows(index, n: int, train_size: int | None = None, seed: int = 0) -> np.ndarray:
    """Sorted positions of the random sample (of ``n`` rows) that trains ``index``."""
    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    n_train = _n_train(n, train_size, ivf.nlist if ivf is not None else 0)
    return np.sort(np.random.default_rng(seed).choice(n, n_train, replace=False))


def train_index(index, x: np.ndarray, spec: str, name: str) -> None:
    """Train ``index`` (factory string ``spec``) on the normalised sample ``x`` (n_train, d) of ``name``."""
    try:
        index.train(x)
    except RuntimeError as e:
        raise XlingError(f"faiss index {spec!r} cannot be trained on {len(x)} vectors of {name}: "
                         f"{_faiss_message(e)}; use a smaller index (fewer lists) or Flat") from None


def search(index, queries: Embeddings, k: int, *, chunk_size: int = DEFAULT_CHUNK,
           progress: bool = False, desc: str = "search") -> tuple[np.ndarray, np.ndarray]:
    """k nearest rows of the index for every query: ``(sims (n, k) float32, ids (n, k) int64)``,
    nearest first; ids are index rows, -1 where an approximate index found fewer than k."""
    if queries.d != index.d:
        raise XlingError(f"{queries.name}: embeddings have dimension {queries.d} but the index has dimension {index.d}")
    if k < 1 or k > index.ntotal:
        raise XlingError(f"k={k} is larger than the indexed corpus ({index.ntotal} sentences); use a smaller k")
    sims = np.empty((queries.n, k), dtype=np.float32)  # (n, k)
    ids = np.empty((queries.n, k), dtype=np.int64)  # (n, k)
    with _progress(queries.n, desc, progress) as bar, _threads_for(queries.n * index.ntotal * index.d):
        for start, x in queries.chunks(chunk_size):
            sims[start : start + len(x)], ids[start : start + len(x)] = index.search(x, k)
            bar.update(len(x))
    return sims, ids


def knn(queries: Embeddings, corpus: Embeddings, k: int, spec: str = "Flat", **index_kw) -> tuple[np.ndarray, np.ndarray]:
    """k nearest ``corpus`` positions of every query: ``(sims (n, k), ids (n, k))``."""
    check_dims(queries, corpus)
    check_k(k, corpus)
    search_kw = {key: index_kw[key] for key in ("chunk_size", "progress") if key in index_kw}
    index = build_index(corpus, spec, **index_kw)
    return search(index, queries, k, desc=f"search {Path(queries.name).name}", **search_kw)
