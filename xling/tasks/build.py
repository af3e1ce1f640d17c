"""From a training config's objective list to mixture tasks with tokenized data.

One :class:`~xling.objectives.mixture.Task` per (objective, language or pair). What each
objective kind reads, how its ``langs`` are written, which model types it trains and how long
its examples are in a batch is declared with the kind (:mod:`xling.objectives.registry`); this
module holds no list of kinds. The kinds xling ships (``xling/objectives/``):

==============  ======================  ====================================================
type            ``langs`` entries       data (``{split}`` = train / valid)
==============  ======================  ====================================================
mlm, clm        ``en``                  ``{split}.en`` as 256-token streams (XLM)
unilm           ``en``                  the same streams, UNILM's four-mask mixture
tlm             ``de-en`` (unordered)   ``{split}.de-en.{de,en}``, concatenated pairs
mass            ``en``                  ``{split}.en`` sentences, one span masked
translation     ``en-de`` (src-tgt)     ``{split}.de-en.{en,de}`` read as en -> de
summarization   ``en``                  ``{split}.en.desc`` -> ``{split}.en.syn``
laser_translat. ``de``                  ``{split}.de-en.*`` for each pivot (``sentence.pivots``)
translation_r.  ``de``                  the same pairs, contrastive (:mod:`xling.objectives.sentence`)
==============  ======================  ====================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np

from xling.errors import XlingError
from xling.objectives.mixture import Task
from xling.objectives.registry import LANG_PARTS, BuildContext, objective_kind
from xling.objectives.weights import check_weight, first_all_zero, parse_weight
from xling.tokenization.langs import LangOrPair


@dataclass
class ObjectiveSpec:
    type: str = "mlm"  # an objective kind: mlm | tlm | clm | mass | unilm | translation | summarization
    #   | laser_translation | translation_ranking (xling.objectives.registry lists them)
    langs: list[LangOrPair] = field(default_factory=list)  # languages, or pairs: "de-en" (tlm), "en-de" = en->de (translation)
    weight: Annotated[float | str, check_weight] = 1.0  # weight in the mixture (XLM's lambda): a number, or a
    #   schedule "update:value,..." piecewise linear in updates, e.g. "0:1,100000:0.1,300000:0" (0 = skipped)
    corpus: str = ""  # this objective's corpus directory (default: data.corpus)
    max_examples: int = 0  # train on a random subset of this many examples per language/pair (0 = all)


def check_objectives(objectives: list[ObjectiveSpec], model_type: str) -> None:
    """One-line XlingError for an unknown type, a misshapen langs entry, or an objective
    the model type cannot train."""
    if not objectives:
        raise XlingError("config objectives: give at least one")
    for i, o in enumerate(objectives):
        where = f"config objectives[{i}] ({o.type})"
        kind = objective_kind(o.type, f"objective type in objectives[{i}]:")
        if model_type not in kind.model_types:
            need = " or ".join(kind.model_types)
            raise XlingError(f"{where}: cannot train model_type: {model_type}; it needs model_type: {need}")
        if not o.langs:
            raise XlingError(f"{where}: langs is empty")
        if o.max_examples < 0:
            raise XlingError(f"{where}: max_examples must be >= 0, got {o.max_examples}")
        for lang in o.langs:
            if len(lang.split("-")) != LANG_PARTS[kind.langs]:
                want = {"lang": "a language, not a pair", "pair": "a pair like de-en",
                        "cycle": "a back-translation direction like en-de-en"}[kind.langs]
                raise XlingError(f"{where}: {lang!r} should be {want}")


def check_weights(objectives: list[ObjectiveSpec], max_steps: int) -> None:
    """Refuse a mixture whose weights are all 0 at some update of the run (naming the update)."""
    first = {}
    for o in objectives:  # the mixture weighs each objective type once (its first entry)
        first.setdefault(o.type, parse_weight(o.weight, f"config objectives ({o.type}) weight"))
    step = first_all_zero(list(first.values()), max(max_steps, 1))
    if step is not None:
        raise XlingError(f"config objectives: every weight is 0 at update {step} (of max_steps={max_steps}); "
                         "nothing would be trained there")


def task_langs(spec: ObjectiveSpec, ctx: BuildContext) -> list[str]:
    """The tasks' languages of one objective entry (its langs, or what its kind expands them to)."""
    kind = objective_kind(spec.type)
    return kind.expand(spec.langs, ctx) if kind.expand else list(spec.langs)


def task_data(kind_name: str, lang: str, ctx: BuildContext, corpus: str, split: str,
              cache: dict | None = None) -> tuple[list, np.ndarray, object]:
    """(examples, padded lengths for token budgets, language id or (src, tgt) ids)."""
    kind = objective_kind(kind_name)
    ex, ids = kind.read(ctx, lang, corpus, split, {} if cache is None else cache)
    return ex, np.array([kind.padded_len(x) for x in ex], dtype=np.int64), ids


def build_tasks(objectives: list[ObjectiveSpec], ctx: BuildContext, split: str = "train",
                limit: int | None = None) -> list[Task]:
    """One task per (objective, language or pair) with its tokenized ``split`` data
    (the first ``limit`` examples when given, e.g. for validation). An objective whose weight is
    0 throughout is validation-only: no train task (its data need not exist)."""
    tasks: list[Task] = []
    cache: dict = {}
    objs: dict[str, object] = {}
    for spec in objectives:
        sched = parse_weight(spec.weight, f"config objectives ({spec.type}) weight")
        if split == "train" and sched.constant and sched.at(1) == 0:
            continue
        corpus = spec.corpus or ctx.data.corpus
        if not Path(corpus).is_dir():
            raise XlingError(f"{corpus}: no such corpus directory")
        # a second corpus's tasks are named apart ("distill-de-en@debian12"), so the same pair from
        # two corpora (domains) is sampled, logged and validated separately
        domain = Path(corpus).name if spec.corpus and Path(spec.corpus) != Path(ctx.data.corpus) else ""
        obj = objs.setdefault(spec.type, objective_kind(spec.type).build(ctx))
        langs = task_langs(spec, ctx)
        if not langs:  # an expanding kind (sentence directions) found nothing to train
            raise XlingError(f"config objectives ({spec.type}): {spec.langs} give no direction with this config's "
                             f"{objective_kind(spec.type).section[0]} section")
        for lang in langs:
            ex, lengths, ids = task_data(spec.type, lang, ctx, corpus, split, cache)
            if split == "train" and 0 < spec.max_examples < len(ex):  # e.g. a low-resource setting
                keep = np.sort(np.random.default_rng([0, len(ex)]).permutation(len(ex))[: spec.max_examples])
                ex, lengths = [ex[i] for i in keep], lengths[keep]
            if limit is not None:
                ex, lengths = ex[:limit], lengths[:limit]
            if not ex:
                raise XlingError(f"{corpus}: no usable {split} examples for {spec.type} {lang}")
            if objective_kind(spec.type).finish is not None:
                ex = objective_kind(spec.type).finish(ctx, ex)
            tasks.append(Task(f"{spec.type}-{lang}" + (f"@{domain}" if domain else ""), obj, ex, lengths, ids,
                              spec.type, sched.at(1), schedule=None if sched.constant else sched, domain=domain))
    names = [t.name for t in tasks]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # metrics, sampling and validation are keyed by name: a second task would be silently merged
        raise XlingError(f"config objectives: the task {twice[0]} comes twice (a language repeated, or two corpora "
                         "with the same directory name); give each corpus its own name")
    return tasks
