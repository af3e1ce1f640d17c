"""The zero-shot report: accuracy per language, their average, and the transfer gap.

The *source* language is the one the classifier was trained on (recorded in the model
directory; English when it was trained on several). ``average`` is the mean accuracy
over every evaluated language (XNLI's convention, source included); ``average_others``
the mean over the other languages; ``transfer_gap = accuracy[source] - average_others``
(None when the source or every other language is missing). Each language also gets the
accuracy of always answering its most frequent test label (``majority``), the floor a
classifier must beat on unbalanced data such as the Bible genres.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from xling.classification.data import DataSpec, Example, check_labels, load_examples
from xling.classification.predict import Predictor
from xling.errors import XlingError
from xling.evaluation.signature import model_hash, signature
from xling.models.io import read_model_config
from xling.utils.io import atomic_path, sha256_file, write_json_atomic
from xling.utils.truncation import Truncation, counting

log = logging.getLogger(__name__)


def transfer_summary(acc: dict[str, float], source: str) -> dict[str, Any]:
    """``average``, ``average_others`` and ``transfer_gap`` of per-language accuracies."""
    others = [a for lang, a in acc.items() if lang != source]
    avg_others = float(np.mean(others)) if others else None
    gap = acc[source] - avg_others if source in acc and avg_others is not None else None
    return {"average": float(np.mean(list(acc.values()))) if acc else None, "average_others": avg_others,
            "transfer_gap": gap}


def source_language(model_dir: str | Path) -> str:
    """The language a classifier was trained on (English when several or unknown)."""
    langs = (read_model_config(model_dir).get("extra") or {}).get("classify", {}).get("train_langs") or []
    return langs[0] if len(langs) == 1 else "en"


def data_hash(spec: DataSpec) -> str:
    p = Path(spec.path)
    if spec.format == "hf-xnli":
        return spec.path or "facebook/xnli"
    if p.is_dir():
        from xling.evaluation.report import corpus_hash

        return corpus_hash(p)
    return sha256_file(p)[:8]


def evaluate_classification(model_dir: str | Path, spec: DataSpec, source: str | None = None,
                            examples: dict[str, list[Example]] | None = None, progress: bool = True,
                            max_tokens: int = 4096, batch_size: int = 64,
                            truncation: Truncation | None = None) -> dict[str, Any]:
    """Accuracy per language of the classifier in ``model_dir`` on ``spec`` (already read
    ``examples`` may be passed), with the summary figures and a signature. Sentences cut to
    the model's length are counted into ``truncation`` (else said in one warning for the run)."""
    clf = Predictor.load(model_dir, max_tokens=max_tokens, batch_size=batch_size)
    by_lang = examples if examples is not None else load_examples(spec, "data")
    check_labels(by_lang, clf.labels, f"{spec.path or spec.format}")
    for lang in by_lang:  # every language known before the first one is scored
        clf.check_language(lang)
    if source is not None and source not in by_lang:  # asked for: its transfer gap must be computable
        raise XlingError(f"--source {source}: not among the evaluated languages ({', '.join(by_lang)})")
    index = {y: i for i, y in enumerate(clf.labels)}
    per_lang: dict[str, dict[str, Any]] = {}
    with counting(truncation, log, clf.unit) as cut:
        logits = {lang: clf.logits_of(xs, lang, cut)
                  for lang, xs in tqdm(by_lang.items(), desc="classify", disable=not progress)}
    for lang, xs in by_lang.items():
        gold = np.array([index[x.label] for x in xs])
        pred = logits[lang].argmax(-1)
        correct = int((pred == gold).sum())
        per_lang[lang] = {"accuracy": correct / len(xs), "correct": correct, "n": len(xs),
                          "majority": float(np.bincount(gold).max() / len(xs))}
    source = source or source_language(model_dir)
    summary = transfer_summary({lang: r["accuracy"] for lang, r in per_lang.items()}, source)
    return {
        "task": "classification", "model": str(model_dir), "data": spec.path or spec.format, "format": spec.format,
        "split": spec.split, "source_lang": source, "labels": clf.labels, "languages": per_lang, **summary,
        "signature": signature("classification", model=model_hash(model_dir), data=data_hash(spec),
                               format=spec.format, split=spec.split, langs=len(per_lang), source=source),
    }


def _pct(x: float | None, signed: bool = False) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}"


def format_table(result: dict[str, Any]) -> str:
    """A markdown table of :func:`evaluate_classification`'s result (accuracies in %)."""
    src = result["source_lang"]
    lines = ["| language | accuracy | majority class | correct / n |", "|---|---:|---:|---:|"]
    for lang, r in result["languages"].items():
        name = f"{lang} (source)" if lang == src else lang
        lines.append(f"| {name} | {_pct(r['accuracy'])} | {_pct(r['majority'])} | {r['correct']} / {r['n']} |")
    lines += [f"| **average** | {_pct(result['average'])} | | |",
              f"| average without {src} | {_pct(result['average_others'])} | | |",
              f"| transfer gap ({src} − others) | {_pct(result['transfer_gap'], True)} | | |",
              "", f"`{result['signature']}`"]
    return "\n".join(lines)


def plot_accuracy(result: dict[str, Any], png_path: str | Path, title: str | None = None) -> None:
    """Bar chart of per-language accuracy (the source language highlighted), with the
    average of the other languages and the majority-class floor of each language."""
    from matplotlib.figure import Figure  # no pyplot: leaves the global backend alone

    langs = list(result["languages"])
    acc = [100 * result["languages"][x]["accuracy"] for x in langs]
    floor = [100 * result["languages"][x]["majority"] for x in langs]
    fig = Figure(figsize=(max(4.0, 0.6 * len(langs) + 2), 4.0))
    ax = fig.subplots()
    colors = ["tab:orange" if x == result["source_lang"] else "tab:blue" for x in langs]
    bars = ax.bar(langs, acc, color=colors)
    ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.scatter(langs, floor, marker="_", s=200, color="black", label="majority class", zorder=3)
    if result["average_others"] is not None:
        ax.axhline(100 * result["average_others"], ls="--", color="gray",
                   label=f"average without {result['source_lang']}: {100 * result['average_others']:.1f}")
    gap = _pct(result["transfer_gap"], True)
    ax.set_title(title or f"zero-shot accuracy per language (transfer gap {gap})", fontsize=10)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def write_report(result: dict[str, Any], json_path: str | Path, png_path: str | Path | None = None) -> None:
    """The result as JSON and its bar chart (default: the JSON path with ``.png``)."""
    write_json_atomic(json_path, result)
    plot_accuracy(result, png_path or Path(json_path).with_suffix(".png"))
