"""Evaluating embeddings for bitext mining: BUCC-style F1 and Tatoeba-style retrieval.

Inputs are *aligned* parallel embeddings: row i of ``src`` translates row i of ``tgt``.

BUCC-style (:func:`evaluate_bucc`): the pairs are split into dev and test; in each split
``g`` gold pairs are hidden among ``distractors x g`` further sentences on each side, taken
from other pairs whose translation is absent from the other side (so they have none), all
shuffled. Mining (k, margin, mode, index as in :func:`xling.mining.mine`) yields scored
pairs; the threshold that maximises F1 on dev (halfway to the next lower score, as in
LASER) is applied to test: precision, recall and F1
on test, with that threshold, are the result (``test_best_f1`` is the oracle on test).

Tatoeba-style (:func:`evaluate_tatoeba`): each source among all targets (and back).
P@1 is the share whose nearest neighbour by cosine is its translation; the xSIM error
(LASER's ``xsim``) is the share of sources whose best target by margin, among their k
nearest, is not the translation (both directions reported).

Sentences with the same text count as the same sentence when ``src_ids`` / ``tgt_ids``
(one id per row, equal for equal texts) are given; the text wrapper
:func:`evaluate_mining_model` computes them. Results carry signatures
``xling-mining-bucc|model:…|data:…|split:…|seed:…|distractors:4|dev:0.5|k:4|margin:ratio|mode:max|index:Flat|v:…``
and ``xling-mining-tatoeba|model:…|data:…|split:…|k:4|margin:ratio|index:Flat|v:…``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xling.errors import XlingError
from xling.evaluation.signature import short_hash, signature
from xling.mining.index import DEFAULT_EF_SEARCH, DEFAULT_NPROBE, Embeddings
from xling.mining.margin import best_candidates, candidate_scores, margin as margin_fn
from xling.mining.mine import Pairs, check_settings, neighbours, select_pairs
from xling.utils.io import atomic_path
from xling.utils.truncation import Truncation, counting

log = logging.getLogger(__name__)


@dataclass
class BuccSet:
    """One BUCC-style split: which parallel rows each side shows, and where the gold pairs are."""

    src_rows: np.ndarray  # (ns,) parallel-corpus rows shown on the source side, in shown order
    tgt_rows: np.ndarray  # (nt,) parallel-corpus rows shown on the target side
    gold: np.ndarray  # (g, 2) (source position, target position) of each hidden pair


def bucc_sets(n: int, distractors: int = 4, dev_fraction: float = 0.5, seed: int = 0) -> dict[str, BuccSet]:
    """Dev and test sets from ``n`` aligned pairs: per split of P pairs, g = P // (1 + 2 x distractors)
    gold pairs plus ``distractors x g`` one-sided sentences per side (disjoint pairs)."""
    if distractors < 0 or not 0 < dev_fraction < 1:
        raise XlingError(f"distractors must be >= 0 and dev_fraction in (0, 1), got {distractors}, {dev_fraction}")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_dev = int(round(n * dev_fraction))
    out = {}
    for name, rows in (("dev", perm[:n_dev]), ("test", perm[n_dev:])):
        g = len(rows) // (1 + 2 * distractors)
        if g < 1:
            raise XlingError(f"{n} parallel sentences are too few for BUCC-style dev and test sets with "
                             f"{distractors} distractors per pair (need {2 * (1 + 2 * distractors)} at least)")
        gold_rows, src_only, tgt_only = np.split(rows[: g * (1 + 2 * distractors)], [g, g + distractors * g])
        src_rows = rng.permutation(np.concatenate([gold_rows, src_only]))
        tgt_rows = rng.permutation(np.concatenate([gold_rows, tgt_only]))
        src_pos = np.argsort(src_rows)[np.searchsorted(np.sort(src_rows), gold_rows)]
        tgt_pos = np.argsort(tgt_rows)[np.searchsorted(np.sort(tgt_rows), gold_rows)]
        out[name] = BuccSet(src_rows, tgt_rows, np.stack([src_pos, tgt_pos], axis=1))
    return out


def best_threshold(scores: np.ndarray, hit: np.ndarray, n_gold: int) -> dict[str, Any]:
    """The threshold maximising F1 when pairs with ``score >= threshold`` are kept: halfway
    between the last kept score and the next one (LASER's ``BuccOptimize``).
    ``scores`` (p,) sorted descending, ``hit`` (p,) bool = the pair is a (new) gold pair."""
    if not len(scores) or not hit.any():
        return {"threshold": None, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    tp = np.cumsum(hit)  # (p,) true positives when the first i+1 pairs are kept
    kept = np.arange(1, len(scores) + 1)
    cut = np.ones(len(scores), dtype=bool)  # a threshold keeps whole groups of equal scores
    cut[:-1] = scores[1:] < scores[:-1]
    f1 = np.where(cut, 2 * tp / (kept + n_gold), -1.0)
    i = int(f1.argmax())
    threshold = (scores[i] + scores[i + 1]) / 2 if i + 1 < len(scores) else scores[i]  # LASER's BuccOptimize
    return {"threshold": float(threshold), "precision": float(tp[i] / kept[i]), "recall": float(tp[i] / n_gold),
            "f1": float(f1[i])}


def _prf(hit: np.ndarray, n_gold: int) -> dict[str, float]:
    tp, kept = int(hit.sum()), len(hit)
    p = tp / kept if kept else 0.0
    r = tp / n_gold
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def _gold_hits(pairs: Pairs, src_key: np.ndarray, tgt_key: np.ndarray, gold: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(hit (p,): a gold pair not already hit by a better pair, is_gold (p,), number of distinct gold pairs)."""
    width = int(tgt_key.max()) + 1
    gold_keys = np.unique(src_key[gold[:, 0]] * width + tgt_key[gold[:, 1]])
    keys = src_key[pairs.src] * width + tgt_key[pairs.tgt]  # (p,)
    hit = np.isin(keys, gold_keys)
    first = np.zeros(len(keys), dtype=bool)
    first[np.unique(keys, return_index=True)[1]] = True  # pairs are sorted: first = best
    return hit & first, hit, len(gold_keys)


def _mine_split(src: np.ndarray, tgt: np.ndarray, bset: BuccSet, src_ids, tgt_ids, kw: dict) -> dict[str, Any]:
    xs = Embeddings(src[bset.src_rows], name="source")
    ys = Embeddings(tgt[bset.tgt_rows], name="target")
    nb = neighbours(xs, ys, kw["k"], kw["index"], nprobe=kw["nprobe"], ef_search=kw["ef_search"], seed=kw["seed"])
    pairs = select_pairs(nb, kw["margin"], kw["mode"], threshold=None)  # every candidate; thresholds applied below
    hit, is_gold, n_gold = _gold_hits(pairs, src_ids[bset.src_rows], tgt_ids[bset.tgt_rows], bset.gold)
    g0, g1 = bset.gold[:, 0], bset.gold[:, 1]
    cos = (xs.take(g0) * ys.take(g1)).sum(axis=1)  # (g,)
    fwd_mean, bwd_mean = nb.fwd_mean, nb.bwd_mean
    gold_scores = margin_fn(cos, fwd_mean[g0], bwd_mean[g1], kw["margin"])
    return {"pairs": pairs, "hit": hit, "n_gold": n_gold, "n_src": xs.n, "n_tgt": ys.n,
            "gold_scores": gold_scores, "other_scores": pairs.score[~is_gold]}


def _index_fields(kw: dict) -> dict[str, Any]:
    fields = {"index": kw["index"]}
    if "IVF" in kw["index"]:
        fields["nprobe"] = kw["nprobe"]
    if "HNSW" in kw["index"]:
        fields["efSearch"] = kw["ef_search"]
    return fields


def _ids(ids: np.ndarray | None, n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)


def _aligned(src: np.ndarray, tgt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    src, tgt = np.asarray(src), np.asarray(tgt)
    if src.ndim != 2 or tgt.ndim != 2 or len(src) != len(tgt):
        raise XlingError(f"aligned embeddings needed: source {src.shape} and target {tgt.shape} must be (n, d) with the same n")
    if not len(src):
        raise XlingError("no parallel sentences to evaluate")
    return src, tgt


def _settings(k=4, margin="ratio", mode="max", index="Flat", nprobe=DEFAULT_NPROBE, ef_search=DEFAULT_EF_SEARCH,
              seed=0) -> dict[str, Any]:
    return dict(k=k, margin=margin, mode=mode, index=index, nprobe=nprobe, ef_search=ef_search, seed=seed)


def evaluate_bucc(src: np.ndarray, tgt: np.ndarray, *, distractors: int = 4, dev_fraction: float = 0.5,
                  model: str = "embeddings", data: str | None = None, split: str = "test",
                  src_ids: np.ndarray | None = None, tgt_ids: np.ndarray | None = None,
                  **settings: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """BUCC-style result (JSON-able, with signature) and the test scores for a histogram
    (``gold``: margin of every gold pair; ``other``: mined candidates that are not gold)."""
    src, tgt = _aligned(src, tgt)
    kw = _settings(**settings)
    sets = bucc_sets(len(src), distractors, dev_fraction, kw["seed"])
    s_ids, t_ids = _ids(src_ids, len(src)), _ids(tgt_ids, len(tgt))
    dev = _mine_split(src, tgt, sets["dev"], s_ids, t_ids, kw)
    test = _mine_split(src, tgt, sets["test"], s_ids, t_ids, kw)
    chosen = best_threshold(dev["pairs"].score, dev["hit"], dev["n_gold"])
    t = chosen["threshold"]
    kept = test["hit"][test["pairs"].score >= t] if t is not None else np.zeros(0, dtype=bool)
    result = {
        **_prf(kept, test["n_gold"]),
        "threshold": t,
        "dev": {**{k: chosen[k] for k in ("precision", "recall", "f1")}, "n_gold": dev["n_gold"],
                "n_src": dev["n_src"], "n_tgt": dev["n_tgt"]},
        "test": {"n_gold": test["n_gold"], "n_src": test["n_src"], "n_tgt": test["n_tgt"], "mined": len(kept),
                 "best_f1": best_threshold(test["pairs"].score, test["hit"], test["n_gold"])["f1"]},
        "signature": signature("mining-bucc", model=model, data=data or array_hash(src, tgt), split=split,
                               seed=kw["seed"], distractors=distractors, dev=dev_fraction, k=kw["k"],
                               margin=kw["margin"], mode=kw["mode"], **_index_fields(kw)),
    }
    return result, {"gold": test["gold_scores"], "other": test["other_scores"]}


def evaluate_tatoeba(src: np.ndarray, tgt: np.ndarray, *, model: str = "embeddings", data: str | None = None,
                     split: str = "test", src_ids: np.ndarray | None = None, tgt_ids: np.ndarray | None = None,
                     **settings: Any) -> dict[str, Any]:
    """P@1 (cosine) and xSIM error (margin) in both directions, with signature."""
    src, tgt = _aligned(src, tgt)
    kw = _settings(**settings)
    s_ids, t_ids = _ids(src_ids, len(src)), _ids(tgt_ids, len(tgt))
    xs, ys = Embeddings(src, name="source"), Embeddings(tgt, name="target")
    nb = neighbours(xs, ys, kw["k"], kw["index"], nprobe=kw["nprobe"], ef_search=kw["ef_search"], seed=kw["seed"])
    absolute = kw["margin"] == "absolute"
    fwd_mean, bwd_mean = (None, None) if absolute else (nb.fwd_mean, nb.bwd_mean)
    rows = np.arange(len(src))

    def correct(found: np.ndarray, ids: np.ndarray) -> np.ndarray:  # found (n,) positions, -1 = none
        return (found >= 0) & (ids[np.maximum(found, 0)] == ids[rows])

    fwd_best, _ = best_candidates(candidate_scores(nb.fwd_sims, nb.fwd_ids, fwd_mean, bwd_mean, kw["margin"]), nb.fwd_ids)
    bwd_best, _ = best_candidates(candidate_scores(nb.bwd_sims, nb.bwd_ids, bwd_mean, fwd_mean, kw["margin"]), nb.bwd_ids)
    return {
        "p_at_1_src2tgt": float(correct(nb.fwd_ids[:, 0], t_ids).mean()),
        "p_at_1_tgt2src": float(correct(nb.bwd_ids[:, 0], s_ids).mean()),
        "xsim_error_src2tgt": float(1 - correct(fwd_best, t_ids).mean()),
        "xsim_error_tgt2src": float(1 - correct(bwd_best, s_ids).mean()),
        "n": len(src),
        "signature": signature("mining-tatoeba", model=model, data=data or array_hash(src, tgt), split=split,
                               k=kw["k"], margin=kw["margin"], **_index_fields(kw)),
    }


def evaluate_mining(src: np.ndarray, tgt: np.ndarray, **kw: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Both evaluations on aligned embeddings: ``({"bucc": …, "tatoeba": …}, histogram scores)``."""
    bucc_only = {key: kw.pop(key) for key in ("distractors", "dev_fraction") if key in kw}
    bucc, hist = evaluate_bucc(src, tgt, **bucc_only, **kw)
    return {"bucc": bucc, "tatoeba": evaluate_tatoeba(src, tgt, **kw)}, hist


def array_hash(*arrays: np.ndarray) -> str:
    """Short sha256 over arrays' shapes, dtypes and bytes."""
    return short_hash(b"".join(f"{a.shape}{a.dtype}".encode() + np.ascontiguousarray(a).tobytes() for a in arrays))


def text_ids(texts: list[str]) -> np.ndarray:
    """One id per line, equal for equal texts (the first occurrence's row), (n,)."""
    first: dict[str, int] = {}
    return np.fromiter((first.setdefault(t, i) for i, t in enumerate(texts)), dtype=np.int64, count=len(texts))


def check_sizes(n: int, d: int, name: str, distractors: int = 4, dev_fraction: float = 0.5, seed: int = 0,
                **settings: Any) -> None:
    """Before encoding: ``n`` aligned pairs of dimension ``d`` make BUCC-style dev and test
    sets, and k and the index fit every set the evaluations mine (``name``: e.g. the pair)."""
    kw = {key: settings[key] for key in ("k", "margin", "mode", "index") if key in settings}
    if not n:
        raise XlingError(f"{name}: no parallel sentences to evaluate")
    for split, b in bucc_sets(n, distractors, dev_fraction, seed).items():
        check_settings(len(b.src_rows), len(b.tgt_rows), d, names=(f"{name} BUCC {split} source",
                                                                   f"{name} BUCC {split} target"), **kw)
    check_settings(n, n, d, names=(f"{name} source", f"{name} target"), **{**kw, "mode": "max"})  # Tatoeba: both ways


def evaluate_mining_model(model_dir: str | os.PathLike, src_texts: list[str], tgt_texts: list[str], src_lang: str,
                          tgt_lang: str, *, batch_size: int = 64, data: str | None = None,
                          truncation: Truncation | None = None, **kw: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Encode aligned texts with the encoder ``model_dir`` names (any backend:
    :func:`xling.embeddings.backends.load_encoder`) and evaluate
    (:func:`evaluate_mining`); equal texts count as the same sentence. Languages, sizes, k
    and the index are checked before encoding; sentences cut to the model's length are
    counted into ``truncation``, else said in one warning for both sides."""
    from xling.embeddings.backends import load_encoder  # lazy: torch, and built separately
    from xling.evaluation.signature import model_hash
    from xling.evaluation.textmetrics import lines_hash

    if len(src_texts) != len(tgt_texts):
        raise XlingError(f"aligned texts needed: {len(src_texts)} source and {len(tgt_texts)} target lines")
    encoder = load_encoder(model_dir)
    for lang in (src_lang, tgt_lang):
        encoder.check_lang(lang)
    name = f"{src_lang}-{tgt_lang}"
    check_sizes(len(src_texts), encoder.dim, name, **kw)
    with counting(truncation, log, prefix=f"{name}: ") as cut:
        src = encoder.encode(src_texts, src_lang, batch_size=batch_size, normalize=True, truncation=cut)  # (n, d)
        tgt = encoder.encode(tgt_texts, tgt_lang, batch_size=batch_size, normalize=True, truncation=cut)  # (n, d)
    signed = model_hash(model_dir) if Path(model_dir).is_dir() else "unsaved"  # a name (USE, a hub id): its own
    signed = getattr(encoder, "name", signed) if signed == "unsaved" else signed
    return evaluate_mining(src, tgt, model=signed, data=data or short_hash(lines_hash(src_texts) + lines_hash(tgt_texts)),
                           src_ids=text_ids(src_texts), tgt_ids=text_ids(tgt_texts), **kw)


def plot_margin_histogram(gold: np.ndarray, other: np.ndarray, threshold: float | None, png_path: str | Path,
                          title: str = "margin scores") -> None:
    """Histogram of gold-pair and other (non-gold mined) scores with the threshold line."""
    from matplotlib.figure import Figure  # no pyplot: leaves the global backend alone

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    finite = [a[np.isfinite(a)] for a in (gold, other)]
    both = np.concatenate(finite)
    bins = np.linspace(both.min(), both.max(), 50) if both.size and both.min() < both.max() else 10
    for values, label, color in ((finite[0], f"gold pairs ({len(finite[0])})", "tab:green"),
                                 (finite[1], f"other mined pairs ({len(finite[1])})", "tab:red")):
        if values.size:
            ax.hist(values, bins=bins, alpha=0.6, label=label, color=color)
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1.2, label=f"threshold {threshold:.4f}")
    ax.set_title(title)
    ax.set_xlabel("margin score")
    ax.set_ylabel("pairs")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown table of ``{pair: evaluate_mining result}`` and the signatures."""
    lines = ["| pair | P@1 src→tgt | P@1 tgt→src | xSIM err src→tgt | xSIM err tgt→src | BUCC P | BUCC R | BUCC F1 | threshold |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    sigs = []
    for pair, r in results.items():
        t, b = r["tatoeba"], r["bucc"]
        thr = "-" if b["threshold"] is None else f"{b['threshold']:.4f}"
        lines.append(f"| {pair} | {t['p_at_1_src2tgt']:.4f} | {t['p_at_1_tgt2src']:.4f} | {t['xsim_error_src2tgt']:.4f} | "
                     f"{t['xsim_error_tgt2src']:.4f} | {b['precision']:.4f} | {b['recall']:.4f} | {b['f1']:.4f} | {thr} |")
        sigs += [b["signature"], t["signature"]]
    return "\n".join(lines + [""] + [f"`{s}`" for s in dict.fromkeys(sigs)])
