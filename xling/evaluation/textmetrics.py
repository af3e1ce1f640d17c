"""Corpus-level BLEU / chrF (sacrebleu) and ROUGE-1/2/L (rouge-score), with signatures.

The library functions take lists of strings, one hypothesis and one reference
per line: :func:`bleu` and :func:`rouge` return a JSON-able dict;
:func:`evaluate_files` reads two files strictly and calls them (the CLI,
``xling evaluate bleu|rouge``, is a thin wrapper over it).

Every result carries an xling signature
``xling-bleu|hyp:<8 hex>|ref:<8 hex>|n:<lines>|lang:<xx>|tok:<tokenizer>|v:<version>``,
where the hashes are the sha256 of the text as lines (``"\\n".join(lines) + "\\n"``:
the file's own sha256 for a UTF-8 file with LF line ends). BLEU and chrF also
carry sacrebleu's own signatures.

Tokenization
  BLEU: sacrebleu's ``zh`` tokenizer for Chinese, ``char`` for languages written
  without spaces (ja, th, lo, km, my; no MeCab needed), ``13a`` (sacrebleu's
  default) otherwise. chrF works on characters and needs none.

  ROUGE: English (``--lang en``) uses rouge-score's own tokenizer (lowercase,
  ``[a-z0-9]+`` tokens, no stemming), so scores compare with published ones.
  That tokenizer deletes every non-ASCII letter ("Größe" becomes "gr", "e";
  Chinese vanishes), so every other language (and no ``--lang``) uses
  :func:`unicode_tokens`: lowercase runs of Unicode letters, marks and digits,
  and each Han / kana character on its own. Scripts written without spaces
  other than Chinese and Japanese (Thai, Khmer, ...) get one token per run.

Scores are on a 0-100 scale. ROUGE is the mean over lines of the per-line F1
(rouge-score's convention); an empty hypothesis line scores 0.
"""

from __future__ import annotations

import os
from importlib.metadata import version
from pathlib import Path
from typing import Any

from xling.errors import XlingError
from xling.evaluation.signature import short_hash, signature
from xling.tokenization.langs import check_known_lang
from xling.tokenization.words import unicode_tokens
from xling.utils.io import read_lines, write_json_atomic

BLEU_TOKENIZERS = {"zh": "zh", "ja": "char", "th": "char", "lo": "char", "km": "char", "my": "char"}
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def bleu_tokenizer(lang: str | None) -> str:
    """The sacrebleu tokenizer name used for BLEU in language ``lang``."""
    return BLEU_TOKENIZERS.get(lang or "", "13a")


def _check(hyps: list[str], refs: list[str], hyp_name: str = "hypotheses", ref_name: str = "references") -> None:
    if len(hyps) != len(refs):
        raise XlingError(
            f"line counts differ: {hyp_name} has {len(hyps)} lines, {ref_name} has {len(refs)} (one hypothesis per reference line)"
        )
    if not hyps:
        raise XlingError(f"{hyp_name}: no lines to score")


def lines_hash(lines: list[str]) -> str:
    """Short sha256 of the lines as a file (``"\\n".join(lines) + "\\n"``)."""
    return short_hash("".join(line + "\n" for line in lines))


def _xling_signature(metric: str, hyps: list[str], refs: list[str], lang: str | None, tok: str) -> str:
    return signature(metric, hyp=lines_hash(hyps), ref=lines_hash(refs), n=len(hyps), lang=lang or "none", tok=tok)


def bleu(hyps: list[str], refs: list[str], lang: str | None = None) -> dict[str, Any]:
    """Corpus BLEU and chrF of ``hyps`` against one reference each (sacrebleu)."""
    from sacrebleu.metrics import BLEU, CHRF

    _check(hyps, refs)
    tok = bleu_tokenizer(check_known_lang(lang, "BLEU language") if lang is not None else None)
    b = BLEU(tokenize=tok)
    c = CHRF()
    bs, cs = b.corpus_score(hyps, [refs]), c.corpus_score(hyps, [refs])
    return {
        "metric": "bleu",
        "lang": lang,
        "n": len(hyps),
        "tokenizer": tok,
        "bleu": bs.score,
        "chrf": cs.score,
        "bleu_detail": {
            "precisions": list(bs.precisions),
            "bp": bs.bp,
            "sys_len": bs.sys_len,
            "ref_len": bs.ref_len,
        },
        "sacrebleu": {"bleu": str(b.get_signature()), "chrf": str(c.get_signature())},
        "signature": _xling_signature("bleu", hyps, refs, lang, tok),
    }


class _UnicodeTokenizer:
    """rouge-score tokenizer interface (``tokenize(text) -> list[str]``) over :func:`unicode_tokens`."""

    def tokenize(self, text: str) -> list[str]:
        return unicode_tokens(text)


def rouge_tokenizer(lang: str | None) -> str:
    """``rouge-default`` (rouge-score's ASCII tokenizer) for English, ``unicode`` otherwise."""
    return "rouge-default" if lang == "en" else "unicode"


def rouge(hyps: list[str], refs: list[str], lang: str | None = None) -> dict[str, Any]:
    """Mean per-line ROUGE-1/2/L F1 (and precision, recall) of ``hyps`` against ``refs``."""
    from rouge_score import rouge_scorer

    _check(hyps, refs)
    tok = rouge_tokenizer(check_known_lang(lang, "ROUGE language") if lang is not None else None)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=None if tok == "rouge-default" else _UnicodeTokenizer())
    sums = {t: [0.0, 0.0, 0.0] for t in ROUGE_TYPES}
    for hyp, ref in zip(hyps, refs):
        scores = scorer.score(ref, hyp)  # (target, prediction)
        for t in ROUGE_TYPES:
            s = scores[t]
            for i, v in enumerate((s.precision, s.recall, s.fmeasure)):
                sums[t][i] += v
    n = len(hyps)
    result: dict[str, Any] = {"metric": "rouge", "lang": lang, "n": n, "tokenizer": tok}
    result.update({t: 100 * sums[t][2] / n for t in ROUGE_TYPES})
    result["detail"] = {t: {"precision": 100 * sums[t][0] / n, "recall": 100 * sums[t][1] / n} for t in ROUGE_TYPES}
    result["rouge_score_version"] = version("rouge-score")
    result["signature"] = _xling_signature("rouge", hyps, refs, lang, tok)
    return result


METRICS = {"bleu": bleu, "rouge": rouge}


def evaluate_files(metric: str, hyp: str | os.PathLike, ref: str | os.PathLike, lang: str | None = None) -> dict[str, Any]:
    """Score hypothesis file ``hyp`` against reference file ``ref`` (one line each, empty lines allowed)."""
    hyps, refs = read_lines(hyp, allow_empty=True), read_lines(ref, allow_empty=True)
    _check(hyps, refs, str(hyp), str(ref))
    result = METRICS[metric](hyps, refs, lang)
    result["files"] = {"hyp": Path(hyp).name, "ref": Path(ref).name}
    return result


def write_result(path: str | os.PathLike, result: dict[str, Any]) -> None:
    """Write a result dict as JSON (atomically)."""
    write_json_atomic(path, result)


def format_result(result: dict[str, Any]) -> str:
    """One line of scores followed by the signature(s), for the terminal."""
    if result["metric"] == "bleu":
        head = f"BLEU = {result['bleu']:.2f}  chrF = {result['chrf']:.2f}"
        sigs = [result["sacrebleu"]["bleu"], result["sacrebleu"]["chrf"]]
    else:
        head = "  ".join(f"{t.upper().replace('ROUGE', 'ROUGE-')} = {result[t]:.2f}" for t in ROUGE_TYPES)
        sigs = []
    return "\n".join([f"{head}  ({result['n']} lines)", result["signature"], *sigs])
