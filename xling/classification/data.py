"""Labelled examples for classification, from every format the task reads.

An :class:`Example` is one text (or a premise / hypothesis pair), its label and its
language. :func:`load_examples` reads a :class:`DataSpec` and returns the examples
grouped by language:

- ``bible``: a Moses-layout corpus directory; ``{split}.{lang}`` with its
  ``{split}.{lang}.genre`` labels (the 8 genres of the Bible corpus).
- ``xnli``: the official XNLI distribution (``xnli.dev.tsv`` / ``xnli.test.tsv``): a header,
  then ``language, gold_label, sentence1_binary_parse, ..., sentence1, sentence2, promptID,
  pairID, genre, label1..label5, sentence1_tokenized, sentence2_tokenized, match``.
- ``multinli``: MultiNLI-format English data (``multinli_1.0_train.txt`` with a header, or
  ``multinli_1.0_train.jsonl``): ``gold_label, sentence1, sentence2``; pairs whose gold
  label is ``-`` (no annotator consensus) are left out, and counted in a warning.
- ``hf-xnli``: the ``xnli`` dataset through Hugging Face ``datasets`` (online, or a local
  copy): one config per language, fields ``premise, hypothesis, label`` (0 entailment,
  1 neutral, 2 contradiction).
- ``tsv`` / ``jsonl``: your own data: columns / fields ``text`` [``text_b``] ``label``
  [``lang``]; without a ``lang`` column every example is in ``langs[0]``.

Every problem (missing file, empty or malformed row, unknown language) is a one-line
XlingError naming the file and the row.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from xling.data.readers import SPLITS, load_corpus_split, mono_file, read_jsonl, read_tsv
from xling.errors import XlingError, unknown
from xling.tokenization.langs import Lang
from xling.utils.io import read_lines

log = logging.getLogger(__name__)

FORMATS = ("bible", "xnli", "multinli", "hf-xnli", "tsv", "jsonl")
NLI_LABELS = ("entailment", "neutral", "contradiction")  # HF xnli's ClassLabel order
XNLI_COLUMNS = ["language", "gold_label", "sentence1", "sentence2"]
MNLI_FIELDS = ["gold_label", "sentence1", "sentence2"]
HF_SPLITS = {"train": "train", "valid": "validation", "test": "test"}
HF_XNLI = "facebook/xnli"


@dataclass(frozen=True)
class Example:
    text: str  # the sentence (the premise of a pair)
    label: str  # class name
    lang: str  # language code
    text_b: str | None = None  # the hypothesis of a pair; None for single sentences


@dataclass
class DataSpec:
    """Where labelled examples come from (a section of the classify config)."""

    format: str = "bible"  # bible | xnli | multinli | hf-xnli | tsv | jsonl
    path: str = ""  # corpus dir (bible), file (xnli, multinli, tsv, jsonl) or dataset name (hf-xnli; "" = facebook/xnli)
    split: str = "train"  # corpus split (bible) or dataset split (hf-xnli): train | valid | test
    langs: list[Lang] = field(default_factory=list)  # languages to keep ([] = every language in the data)
    limit: int = 0  # at most this many examples per language, evenly spread over the data (0 = all)


def check_spec(spec: DataSpec, where: str) -> None:
    if spec.format not in FORMATS:
        raise unknown(f"{where}.format", spec.format, FORMATS)
    if spec.format != "hf-xnli" and not spec.path:
        raise XlingError(f"config {where}.path: required for format {spec.format}")
    if spec.split not in SPLITS:
        raise unknown(f"{where}.split", spec.split, SPLITS)
    if spec.format == "multinli" and len(spec.langs) > 1:
        raise XlingError(f"config {where}.langs: MultiNLI data is English only, got {spec.langs}")
    if spec.limit < 0:
        raise XlingError(f"config {where}.limit: must be >= 0, got {spec.limit}")


def detect_format(path: str) -> str:
    """The format of ``path`` for ``xling evaluate classification --data`` without
    ``--format``: a directory is a Bible-style corpus, ``hf:NAME`` the HF dataset, a
    ``.jsonl`` file MultiNLI or generic JSON lines, a TSV file is told by its header."""
    if path.startswith("hf:"):
        return "hf-xnli"
    p = Path(path)
    if p.is_dir():
        return "bible"
    if not p.is_file():
        raise XlingError(f"{path}: no such file or corpus directory")
    with open(p, encoding="utf-8", errors="replace") as f:
        first = f.readline().rstrip("\r\n")
    if p.suffix == ".jsonl":
        return "multinli" if '"sentence1"' in first else "jsonl"
    header = first.split("\t")
    if header[:2] == ["language", "gold_label"]:
        return "xnli"
    if header[:1] == ["gold_label"]:
        return "multinli"
    return "tsv"


def spread(xs: list, n: int) -> list:
    """At most ``n`` items of ``xs`` evenly spaced over it, in order (0 = all): a subset of a
    corpus sorted by book covers every book, unlike its first ``n`` lines."""
    if not n or len(xs) <= n:
        return list(xs)
    return [xs[i * len(xs) // n] for i in range(n)]


def _filter(by_lang: dict[str, list[Example]], spec: DataSpec, where: str) -> dict[str, list[Example]]:
    """Keep the asked languages (each must be in the data), cut to ``limit``."""
    if spec.langs:
        for lang in spec.langs:
            if lang not in by_lang:
                raise XlingError(f"{where}: no examples in language {lang!r} (the data has: "
                                 f"{', '.join(sorted(by_lang)) or 'none'})")
        by_lang = {lang: by_lang[lang] for lang in spec.langs}
    if spec.limit:
        by_lang = {lang: spread(xs, spec.limit) for lang, xs in by_lang.items()}
    return by_lang


def _group(examples: Iterable[Example]) -> dict[str, list[Example]]:
    out: dict[str, list[Example]] = {}
    for x in examples:
        out.setdefault(x.lang, []).append(x)
    return dict(sorted(out.items()))


def read_bible_genre(corpus: str | Path, split: str, langs: list[str]) -> dict[str, list[Example]]:
    """Verses of ``split`` with their genre labels, per language."""
    if not langs:
        from xling.tokenization.vocab import corpus_languages

        langs = corpus_languages(corpus)
    out = {}
    for lang in langs:
        texts = load_corpus_split(corpus, split, lang)
        labels = read_lines(mono_file(corpus, split, lang, ".genre"))
        if len(labels) != len(texts):
            raise XlingError(f"{mono_file(corpus, split, lang, '.genre')}: {len(labels)} labels for "
                             f"{len(texts)} lines of {mono_file(corpus, split, lang).name}")
        out[lang] = [Example(t, g, lang) for t, g in zip(texts, labels)]
    return out


def read_xnli(path: str | Path) -> list[Example]:
    """Rows of an official XNLI file (``xnli.dev.tsv`` / ``xnli.test.tsv``), in file order."""
    rows = read_tsv(path, XNLI_COLUMNS)
    return [Example(r["sentence1"], r["gold_label"], r["language"], r["sentence2"]) for r in rows]


def read_multinli(path: str | Path, lang: str = "en") -> list[Example]:
    """MultiNLI pairs from ``multinli_1.0_*.txt`` (TSV with header) or ``.jsonl``."""
    rows = read_jsonl(path, MNLI_FIELDS) if str(path).endswith(".jsonl") else read_tsv(path, MNLI_FIELDS)
    kept = [Example(r["sentence1"], r["gold_label"], lang, r["sentence2"]) for r in rows if r["gold_label"] != "-"]
    if len(kept) < len(rows):
        log.warning("%s: left out %d pairs without a gold label ('-')", path, len(rows) - len(kept))
    return kept


def read_hf_xnli(name: str, split: str, langs: list[str]) -> dict[str, list[Example]]:
    """The ``xnli`` dataset through Hugging Face ``datasets`` (one config per language)."""
    from xling.data.readers import read_hf  # imports datasets lazily

    if not langs:
        raise XlingError(f"{name or HF_XNLI}: name the languages to load (langs), e.g. en,de,fr")
    out = {}
    for lang in langs:
        rows = read_hf(name or HF_XNLI, HF_SPLITS[split], ["premise", "hypothesis", "label"], config=lang)
        exs = []
        for i, r in enumerate(rows, 1):
            label = r["label"]
            if isinstance(label, int) and not isinstance(label, bool):
                if not 0 <= label < len(NLI_LABELS):
                    raise XlingError(f"{name or HF_XNLI}[{lang}/{split}] row {i}: label {label} is not 0, 1 or 2")
                label = NLI_LABELS[label]
            exs.append(Example(r["premise"], str(label), lang, r["hypothesis"]))
        out[lang] = exs
    return out


def read_generic(path: str | Path, langs: list[str]) -> list[Example]:
    """Your own data: TSV (header) or JSON lines with ``text``, ``label`` and optionally
    ``text_b`` (pairs) and ``lang``; without ``lang`` every example is in ``langs[0]``."""
    jsonl = str(path).endswith(".jsonl")
    rows = read_jsonl(path) if jsonl else read_tsv(path)
    if not rows:
        return []
    out = []
    for i, r in enumerate(rows, 1 if jsonl else 2):
        where = f"{path}:{i}"
        for name in ("text", "label"):
            value = r.get(name)
            if value is None or not str(value).strip():
                raise XlingError(f"{where}: missing or empty field {name!r}")
        lang = r.get("lang") or (langs[0] if len(langs) == 1 else None)
        if not lang:
            raise XlingError(f"{where}: no 'lang' field; give exactly one language (langs) for the whole file")
        text_b = r.get("text_b")
        if text_b is not None and not str(text_b).strip():
            raise XlingError(f"{where}: field 'text_b' is empty")
        out.append(Example(str(r["text"]), str(r["label"]), str(lang), None if text_b is None else str(text_b)))
    return out


def load_examples(spec: DataSpec, where: str = "data") -> dict[str, list[Example]]:
    """The examples of ``spec`` grouped by language (languages sorted, or in ``spec.langs``
    order); within a language, file order."""
    check_spec(spec, where)
    src = spec.path or HF_XNLI
    if spec.format == "bible":
        by_lang = read_bible_genre(spec.path, spec.split, spec.langs)
    elif spec.format == "hf-xnli":
        by_lang = read_hf_xnli(spec.path.removeprefix("hf:"), spec.split, spec.langs)
    elif spec.format == "xnli":
        by_lang = _group(read_xnli(spec.path))
    elif spec.format == "multinli":
        by_lang = _group(read_multinli(spec.path, spec.langs[0] if spec.langs else "en"))
    else:
        by_lang = _group(read_generic(spec.path, spec.langs))
    by_lang = _filter(by_lang, spec, src)
    if not any(by_lang.values()):
        raise XlingError(f"{src}: no examples")
    kinds = {x.text_b is None for xs in by_lang.values() for x in xs}
    if len(kinds) > 1:
        raise XlingError(f"{src}: mixes single sentences and sentence pairs")
    return by_lang


def is_pair(by_lang: dict[str, list[Example]]) -> bool:
    return any(x.text_b is not None for xs in by_lang.values() for x in xs)


def label_set(by_lang: dict[str, list[Example]]) -> list[str]:
    """The sorted class names of the examples."""
    return sorted({x.label for xs in by_lang.values() for x in xs})


def check_labels(by_lang: dict[str, list[Example]], known: list[str], where: str) -> None:
    """Labels the model never saw in training are an error naming them."""
    new = sorted(set(label_set(by_lang)) - set(known))
    if new:
        shown = ", ".join(repr(x) for x in new[:10]) + (" ..." if len(new) > 10 else "")
        raise XlingError(f"{where}: labels never seen in training: {shown} (the model knows: {', '.join(known)})")
