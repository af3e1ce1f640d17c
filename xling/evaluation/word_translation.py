"""Word-by-word translation with a bilingual dictionary induced without parallel data.

The baseline of unsupervised MT (REFERENCE.md section 6): the MUSE recipe (Conneau et al. 2018,
"Word translation without parallel data") seeded by identical strings instead of adversarial training.

1. Monolingual word vectors per language, pure numpy: words by
   :func:`xling.tokenization.words.unicode_tokens` (lowercased), the ``vocab_size`` most frequent
   ones, co-occurrence counts in a +-``window`` window, PPMI with context-distribution smoothing
   (Levy et al. 2015), randomized truncated SVD; rows unit-normalised, mean-centred, renormalised.
2. Orthogonal Procrustes from the seed pairs (words spelled identically in both vocabularies:
   numbers, names), then refits on the mutual CSLS nearest neighbours among the ``refine_vocab``
   most frequent words of each side (MUSE's refinement), until that dictionary stops changing or
   after ``refine_iterations``: identical strings are a weaker start than MUSE's adversarial one,
   and on the synthetic cipher of the tests precision@1 was still climbing after MUSE's 5 refits
   (0.4 -> 0.95 in 10 to 20), so refinement runs to convergence as in vecmap's self-learning.
3. CSLS retrieval, in blocks: ``csls(x, y) = 2 cos(x, y) - r_T(x) - r_S(y)``, ``r`` the mean cosine
   to the ``csls_k`` nearest neighbours in the other space (twice the ``distance`` margin of
   :mod:`xling.mining.margin`).
4. Word-by-word translation: every word with a vector is replaced by its CSLS nearest target word,
   other words and punctuation are copied.

Usage (no progress bar: ~30k sentences per language take seconds to tens of seconds on 2 cores;
one INFO log line at the end)::

    d = induce_dictionary(src_sentences, tgt_sentences, WordByWordConfig())
    translate_words(d, ["Le chat dort."])    # ["The cat sleeps."]
    precision_at_1(d, {"chat": "cat"})       # {"precision_at_1": 1.0, "n": 1, "missing": 0}
    print("\n".join(d.lines(50)))            # the 50 most frequent source words: word, translation, CSLS
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, fields

import numpy as np

from xling.errors import XlingError
from xling.tokenization.words import unicode_tokens

log = logging.getLogger(__name__)
_RUN = re.compile(r"\S+")


@dataclass
class WordByWordConfig:
    """How the dictionary is induced (defaults: MUSE's refinement on a small PPMI-SVD space)."""

    vocab_size: int = 5000  # the most frequent words of each language that get a vector (only they are translated)
    min_count: int = 3  # a word seen fewer times gets no vector (it is copied when translating)
    window: int = 5  # co-occurrence window: words up to this far on each side, weighted (window - d + 1) / window
    cds: float = 0.75  # context-distribution smoothing exponent of PPMI (Levy et al. 2015); 1 = plain PPMI
    dim: int = 300  # dimension of the word vectors (truncated SVD of the PPMI matrix)
    eig_power: float = 0.5  # vectors = U * S**eig_power (Levy et al.: 0.5 beats the plain U * S)
    svd_power_iterations: int = 4  # power iterations of the randomized SVD (more = closer to the exact SVD)
    csls_k: int = 10  # neighbours averaged in CSLS's hubness penalty r (Conneau et al.: 10)
    min_seeds: int = 10  # fewer identical strings in both vocabularies than this -> XlingError
    refine_iterations: int = 30  # at most this many Procrustes refits on mutual CSLS nearest neighbours (MUSE: 5)
    refine_vocab: int = 3000  # the most frequent words of each side searched for the refinement dictionary
    block_size: int = 1024  # rows per block of similarities (memory: block_size x vocabulary floats)
    seed: int = 0  # the randomized SVD's random generator

    def check(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("cds", "eig_power"):
                continue
            low = 0 if f.name in ("refine_iterations", "seed", "svd_power_iterations") else 1
            if value < low:
                raise XlingError(f"word-by-word config: {f.name} must be >= {low}, got {value!r}")
        if not 0 < self.cds <= 1:
            raise XlingError(f"word-by-word config: cds must be in (0, 1], got {self.cds!r}")
        if not 0 <= self.eig_power <= 1:
            raise XlingError(f"word-by-word config: eig_power must be in [0, 1], got {self.eig_power!r}")


@dataclass
class Dictionary:
    """A bilingual dictionary induced without parallel data (lowercased words)."""

    entries: dict[str, tuple[str, float]]  # source word -> (CSLS nearest target word, CSLS score), most frequent first
    seeds: list[str] = field(default_factory=list)  # the identical strings the first Procrustes fit used
    refined_pairs: int = 0  # pairs in the last refinement dictionary (mutual CSLS nearest neighbours)
    iterations: int = 0  # refinement refits done (fewer than refine_iterations when the dictionary converged)
    mapping: np.ndarray | None = None  # (D, D) orthogonal W: source vectors @ W lie in the target space

    def translate(self, word: str) -> str | None:
        """The translation of ``word`` (any case), None when it has no vector."""
        entry = self.entries.get(word.lower())
        return entry[0] if entry else None

    def lines(self, n: int | None = None) -> list[str]:
        """``source<TAB>target<TAB>score`` for the ``n`` most frequent source words (all by default)."""
        items = list(self.entries.items())[:n]
        return [f"{s}\t{t}\t{score:.4f}" for s, (t, score) in items]


# ---------------------------------------------------------------- monolingual vectors


def _tokenize(sentences: Iterable[str]) -> list[list[str]]:
    return [unicode_tokens(s) for s in sentences]


def _vocabulary(sentences: list[list[str]], cfg: WordByWordConfig, name: str) -> list[str]:
    counts = Counter(w for s in sentences for w in s)
    words = [w for w, c in sorted(counts.items(), key=lambda wc: (-wc[1], wc[0])) if c >= cfg.min_count]
    words = words[: cfg.vocab_size]
    if len(words) <= cfg.dim:
        raise XlingError(
            f"{name}: only {len(words)} words seen at least {cfg.min_count} times, need more than dim={cfg.dim}; "
            "give more sentences or a smaller dim"
        )
    return words


def cooccurrence(sentences: list[list[str]], words: list[str], window: int) -> np.ndarray:
    """Symmetric co-occurrence counts of ``words`` within +-``window`` in each sentence, ``(n, n)``;
    a pair ``d`` apart weighs ``(window - d + 1) / window``; out-of-vocabulary words keep their slot."""
    n = len(words)
    index = {w: i for i, w in enumerate(words)}
    flat = np.fromiter((index.get(w, -1) for s in sentences for w in s), dtype=np.int64)  # (T,)
    sent = np.repeat(np.arange(len(sentences)), [len(s) for s in sentences])  # (T,)
    keys, weights = [], []
    for d in range(1, window + 1):
        a, b = flat[:-d], flat[d:]
        ok = (sent[:-d] == sent[d:]) & (a >= 0) & (b >= 0)
        keys.append(a[ok] * n + b[ok])
        weights.append(np.full(int(ok.sum()), (window - d + 1) / window))
    uniq, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    totals = np.bincount(inverse, weights=np.concatenate(weights))
    m = np.zeros((n, n), dtype=np.float32)
    m[uniq // n, uniq % n] = totals
    return m + m.T


def ppmi(counts: np.ndarray, cds: float) -> np.ndarray:
    """Positive PMI of a co-occurrence matrix, ``(n, n) -> (n, n)``, context probabilities
    smoothed as ``count(c)**cds / sum(count**cds)``."""
    row = np.maximum(counts.sum(axis=1, dtype=np.float64), 1e-30)  # (n,)
    ctx = counts.sum(axis=0, dtype=np.float64) ** cds  # (n,)
    ctx = np.maximum(ctx / ctx.sum(), 1e-30)
    # log P(w, c) / (P(w) P_cds(c)) = log count(w, c) - log count(w) - log P_cds(c)
    with np.errstate(divide="ignore"):
        out = np.log(counts)
    out -= np.log(row).astype(np.float32)[:, None]
    out -= np.log(ctx).astype(np.float32)[None, :]
    return np.maximum(out, 0, out=out)


def _orthonormal(y: np.ndarray) -> np.ndarray:
    """An orthonormal basis of the columns of ``y`` ``(n, k)``: Cholesky QR in float64 (a few times
    faster than Householder QR for tall matrices), Householder QR when ``y`` is rank-deficient."""
    y64 = y.astype(np.float64)
    try:
        chol = np.linalg.cholesky(y64.T @ y64)  # (k, k)
    except np.linalg.LinAlgError:
        return np.linalg.qr(y)[0]
    return (y64 @ np.linalg.inv(chol).T).astype(y.dtype)


def truncated_svd(m: np.ndarray, dim: int, rng: np.random.Generator, power_iterations: int = 4,
                  oversample: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The ``dim`` leading left singular vectors and values of ``m`` ``(n, n')``: randomized range
    finder with power iterations (Halko et al. 2011), ``-> (n, dim), (dim,)``; the small problem is
    solved as the eigendecomposition of ``B B^T`` since only the left vectors are needed."""
    k = min(dim + oversample, *m.shape)
    q = _orthonormal(m @ rng.standard_normal((m.shape[1], k)).astype(m.dtype))  # (n, k)
    for _ in range(power_iterations):
        q = _orthonormal(m @ _orthonormal(m.T @ q))
    b = (q.T @ m).astype(np.float64)  # (k, n')
    evals, evecs = np.linalg.eigh(b @ b.T)  # ascending
    top = np.argsort(evals)[::-1][:dim]
    return (q @ evecs[:, top].astype(q.dtype)), np.sqrt(np.maximum(evals[top], 0))


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows unit-normalised, mean-centred, renormalised (MUSE's ``renorm,center,renorm``)."""

    def unit(v: np.ndarray) -> np.ndarray:
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    x = unit(x)
    return unit(x - x.mean(axis=0, keepdims=True)).astype(np.float32)


def word_vectors(sentences: Iterable[str], cfg: WordByWordConfig, name: str = "sentences") -> tuple[list[str], np.ndarray]:
    """Monolingual vectors: ``(words most frequent first, (n, dim) normalised vectors)``."""
    tokens = _tokenize(sentences)
    if not tokens:
        raise XlingError(f"{name}: no sentences")
    words = _vocabulary(tokens, cfg, name)
    m = ppmi(cooccurrence(tokens, words, cfg.window), cfg.cds)
    u, s = truncated_svd(m, cfg.dim, np.random.default_rng(cfg.seed), cfg.svd_power_iterations)
    return words, normalize(u * s.astype(np.float32) ** cfg.eig_power)


# ---------------------------------------------------------------- alignment and retrieval


def procrustes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Orthogonal ``W = argmin ||x W - y||_F`` for paired rows ``(n, d), (n, d) -> (d, d)``: ``U V^T``
    from the SVD of ``x^T y`` (Schönemann 1966)."""
    u, _, vt = np.linalg.svd(x.astype(np.float64).T @ y.astype(np.float64))
    return (u @ vt).astype(np.float32)


def knn_mean(queries: np.ndarray, keys: np.ndarray, k: int, block_size: int = 1024) -> np.ndarray:
    """Mean cosine of each (unit) query to its ``k`` nearest (unit) keys, ``(n, d), (m, d) -> (n,)``,
    in blocks of ``block_size`` queries."""
    k = min(k, len(keys))
    out = np.empty(len(queries), dtype=np.float32)
    for start in range(0, len(queries), block_size):
        sims = queries[start : start + block_size] @ keys.T  # (b, m)
        out[start : start + len(sims)] = np.partition(sims, len(keys) - k, axis=1)[:, -k:].mean(axis=1)
    return out


def _csls_best(x: np.ndarray, y: np.ndarray, r_x: np.ndarray, r_y: np.ndarray, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.empty(len(x), dtype=np.int64)
    scores = np.empty(len(x), dtype=np.float32)
    for start in range(0, len(x), block_size):
        csls = x[start : start + block_size] @ y.T  # (b, m) cosines, turned into CSLS in place
        csls *= 2
        csls -= r_x[start : start + len(csls), None]
        csls -= r_y[None, :]
        best = csls.argmax(axis=1)
        ids[start : start + len(csls)] = best
        scores[start : start + len(csls)] = csls[np.arange(len(csls)), best]
    return ids, scores


def csls_nearest(x: np.ndarray, y: np.ndarray, k: int = 10, block_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """For each (unit) row of ``x`` the row of ``y`` with the highest CSLS and that score,
    ``(n, d), (m, d) -> (n,) ids, (n,) scores``; memory ``block_size x max(n, m)``."""
    r_x, r_y = knn_mean(x, y, k, block_size), knn_mean(y, x, k, block_size)
    return _csls_best(x, y, r_x, r_y, block_size)


def mutual_nearest(x: np.ndarray, y: np.ndarray, k: int = 10, block_size: int = 1024) -> np.ndarray:
    """Pairs ``(i, j)`` where ``y[j]`` is the CSLS nearest of ``x[i]`` and ``x[i]`` that of ``y[j]``, ``(p, 2)``."""
    r_x, r_y = knn_mean(x, y, k, block_size), knn_mean(y, x, k, block_size)
    fwd, _ = _csls_best(x, y, r_x, r_y, block_size)
    bwd, _ = _csls_best(y, x, r_y, r_x, block_size)
    i = np.flatnonzero(bwd[fwd] == np.arange(len(x)))
    return np.stack([i, fwd[i]], axis=1)


def induce_dictionary(src_sentences: Iterable[str], tgt_sentences: Iterable[str],
                      cfg: WordByWordConfig | None = None) -> Dictionary:
    """A source -> target dictionary from two monolingual corpora (no parallel data): vectors,
    Procrustes on identical strings, MUSE refinement, CSLS nearest neighbour of every source word."""
    cfg = cfg or WordByWordConfig()
    cfg.check()
    t0 = time.perf_counter()
    src_words, xs = word_vectors(src_sentences, cfg, "source sentences")
    tgt_words, yt = word_vectors(tgt_sentences, cfg, "target sentences")
    tgt_index = {w: j for j, w in enumerate(tgt_words)}
    seeds = [w for w in src_words if w in tgt_index]
    if len(seeds) < cfg.min_seeds:
        raise XlingError(
            f"the languages share too few strings: {len(seeds)} words spelled identically in both vocabularies "
            f"(numbers, names), need min_seeds={cfg.min_seeds}"
        )
    src_index = {w: i for i, w in enumerate(src_words)}
    w = procrustes(xs[[src_index[s] for s in seeds]], yt[[tgt_index[s] for s in seeds]])
    n_ref = min(cfg.refine_vocab, len(src_words)), min(cfg.refine_vocab, len(tgt_words))
    pairs, iterations = np.empty((0, 2), dtype=np.int64), 0
    while iterations < cfg.refine_iterations:
        new = mutual_nearest(xs[: n_ref[0]] @ w, yt[: n_ref[1]], cfg.csls_k, cfg.block_size)
        if len(new) < cfg.min_seeds or np.array_equal(new, pairs):  # too few to fit a rotation, or converged
            break
        if log.isEnabledFor(logging.DEBUG):
            added = len(set(map(tuple, new.tolist())) - set(map(tuple, pairs.tolist())))
            log.debug("refinement %d: %d mutual nearest neighbours, %d new", iterations + 1, len(new), added)
        pairs, iterations = new, iterations + 1
        w = procrustes(xs[pairs[:, 0]], yt[pairs[:, 1]])
    ids, scores = csls_nearest(xs @ w, yt, cfg.csls_k, cfg.block_size)
    entries = {s: (tgt_words[j], float(score)) for s, j, score in zip(src_words, ids, scores)}
    log.info("word-by-word dictionary: %d source words, %d seeds, %d refined pairs after %d refits, %.1fs",
             len(entries), len(seeds), len(pairs), iterations, time.perf_counter() - t0)
    return Dictionary(entries, seeds, len(pairs), iterations, w)


# ---------------------------------------------------------------- use and evaluation


def _segments(line: str) -> list[tuple[str, str | None, bool]]:
    """``(shown text, lowercased word or None, blank before it)`` for each segment of ``line`` in order:
    the words of :func:`unicode_tokens` and, between them, each blank-separated run of other characters."""
    lower = line.lower()
    shown = line if len(line) == len(lower) else lower  # lowercasing may change lengths (e.g. 'İ')
    out: list[tuple[str, str | None, bool]] = []
    pos = 0

    def between(end: int) -> None:
        out.extend((m.group(), None, m.start() > pos) for m in _RUN.finditer(shown, pos, end))

    for word in unicode_tokens(line):
        start = lower.find(word, pos)  # exact: the text skipped before a token holds no letter or digit
        between(start)
        out.append((shown[start : start + len(word)], word, start > 0 and shown[start - 1].isspace()))
        pos = start + len(word)
    between(len(shown))
    return out


def _cased(translation: str, original: str) -> str:
    if len(original) > 1 and original.isupper():
        return translation.upper()
    if original[:1].isupper():
        return translation[:1].upper() + translation[1:]
    return translation


def translate_words(dictionary: Dictionary, sentences: Iterable[str]) -> list[str]:
    """Word-by-word translation: each word with a vector becomes its dictionary translation (its
    capitalisation carried over), other words and punctuation are copied. Simple detokenisation:
    two words are always one space apart (also CJK characters that had none), punctuation keeps the
    source's spacing (``"Le chat dort."`` -> ``"The cat sleeps."``); runs of blanks become one space."""
    out = []
    for line in sentences:
        text, prev_word = "", False
        for shown, word, blank in _segments(line):
            target = dictionary.entries.get(word) if word is not None else None
            token = _cased(target[0], shown) if target else shown
            is_word = word is not None
            text += (" " if text and (blank or (is_word and prev_word)) else "") + token
            prev_word = is_word
        out.append(text)
    return out


def precision_at_1(dictionary: Dictionary, reference: Mapping[str, str | Collection[str]]) -> dict[str, float | int]:
    """Precision@1 of the induced translations against ``reference`` (source word -> one or several
    correct target words), over the reference's source words that have a vector; ``missing`` counts the rest."""
    hits = n = 0
    for src, gold in reference.items():
        entry = dictionary.entries.get(src.lower())
        if entry is None:
            continue
        golds = {gold.lower()} if isinstance(gold, str) else {g.lower() for g in gold}
        n += 1
        hits += entry[0] in golds
    if n == 0:
        raise XlingError(f"reference dictionary: none of its {len(reference)} source words is in the induced vocabulary")
    return {"precision_at_1": hits / n, "n": n, "missing": len(reference) - n}
