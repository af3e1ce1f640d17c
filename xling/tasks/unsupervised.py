"""What a training config declaring ``unsupervised: true`` promises, checked before training.

An unsupervised MT run (denoising + back-translation, MLM / MASS pretraining) learns from
monolingual text only. Declaring it makes xling refuse what would break that promise:

- an objective that reads parallel pairs (translation, TLM...) with a weight other than 0: with
  weight 0 it is only built for validation (``bleu/<task>`` is reported next to the round-trip
  metrics, never trained on);
- a ``trainer.best_metric`` computed against reference translations (``bleu/``, ``chrf/``):
  model selection uses round-trip BLEU (``rtbleu/avg``) or cross-entropy;
- monolingual training sets that hold translations of each other: the ``train.{lang}.ids``
  files (verse ids for the Bible, md5 for Debian) of the languages an objective relates must be
  disjoint (``xling corpus bible --mono-halves en`` builds such a corpus). When a corpus has no
  ids files the overlap cannot be checked: a warning says so.
"""

from __future__ import annotations

import logging
from typing import Any

from xling.data.readers import mono_file
from xling.errors import XlingError
from xling.objectives.registry import objective_kind
from xling.objectives.weights import parse_weight
from xling.utils.io import read_lines

log = logging.getLogger(__name__)

REFERENCE_METRICS = ("bleu/", "chrf/")  # validation metrics that need reference translations


def _valid_only(spec: Any) -> bool:
    s = parse_weight(spec.weight)
    return s.constant and s.at(1) == 0


def check_unsupervised_config(cfg: Any) -> None:
    """Objectives and selection metric of an ``unsupervised: true`` config (no files read)."""
    for i, o in enumerate(cfg.objectives):
        if objective_kind(o.type).langs == "pair" and not _valid_only(o):
            raise XlingError(f"config objectives[{i}] ({o.type}): trains on parallel pairs, but the run is declared "
                             "unsupervised; give it weight 0 to report it in validation only")
    metric = cfg.trainer.best_metric or ""
    if metric.startswith(REFERENCE_METRICS):
        raise XlingError(f"config trainer.best_metric: {metric} needs reference translations, but the run is declared "
                         "unsupervised; select with rtbleu/avg (round-trip BLEU) or ce/avg")


def related_languages(cfg: Any) -> list[tuple[str, str, str]]:
    """(corpus, l1, l2) for every pair of languages the trained objectives relate (back-translation
    directions; all the languages of one objective)."""
    out = []
    for o in cfg.objectives:
        if _valid_only(o):
            continue
        corpus = o.corpus or cfg.data.corpus
        langs = sorted({code for entry in o.langs for code in entry.split("-")})
        out += [(corpus, a, b) for i, a in enumerate(langs) for b in langs[i + 1:]]
    return sorted(set(out))


def check_no_parallel_overlap(cfg: Any) -> None:
    """Refuse monolingual training sets that share sentence ids (naming the count)."""
    for corpus, a, b in related_languages(cfg):
        files = [mono_file(corpus, "train", lang, ".ids") for lang in (a, b)]
        if not all(f.is_file() for f in files):
            log.warning("unsupervised run: %s has no train ids for %s and %s; parallel overlap not checked", corpus, a, b)
            continue
        ids_a, ids_b = (set(read_lines(f, allow_empty=True)) - {""} for f in files)
        shared = len(ids_a & ids_b)
        if shared:
            raise XlingError(f"{corpus}: {shared} of the {len(ids_a)} train sentences of {a} have their translation "
                             f"in train.{b} (same ids), but the run is declared unsupervised; build disjoint halves "
                             f"(xling corpus bible --mono-halves {a}) or set unsupervised: false")
