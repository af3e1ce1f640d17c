"""``xling classify``: zero-shot cross-lingual classification.

    xling classify train --config configs/classify_bible.yaml --out RUN [--set trainer.max_steps=3 ...] [--resume]
    xling classify predict --model RUN/model --input FILE --lang de --out preds.txt [--scores]

``predict`` reads one text per line (a classifier of pairs: ``premise<TAB>hypothesis``) and
writes one label per line, in input order (with ``--scores``: ``label<TAB>probability``).

    xling evaluate classification --model RUN/model --data DIR|FILE|hf:NAME [--format F] [--langs en,de,fr]
                                  [--split test] [--source en] [--out result.json] [--plot chart.png]

``evaluate classification`` prints accuracy per language, the average and the transfer gap
(source language minus the average of the others); ``--out`` writes them as JSON with a
signature, and a bar chart next to it (``result.png``, or ``--plot``). ``--data`` is a
Bible-style corpus directory (genre labels), an XNLI / MultiNLI / TSV / JSONL file, or
``hf:facebook/xnli``; its format is detected unless ``--format`` says it.
"""

from __future__ import annotations

import json

from xling.commands import args as A


def run_train(args) -> int:
    from xling.classification.report import format_table
    from xling.classification.train import ClassifyConfig, run_classification
    from xling.config import load_config
    from xling.utils.io import read_json

    cfg = load_config(ClassifyConfig, args.config, args.set)
    summary = run_classification(cfg, args.out, resume=args.resume, progress=cfg.trainer.progress)
    print(json.dumps(summary, indent=2, default=str))
    if "eval" in summary:
        print(format_table(read_json(f"{args.out}/eval.json")))
    return 0


def read_inputs(path: str, pair: bool) -> list:
    """Texts (or (premise, hypothesis) pairs) of an input file, one per line."""
    from xling.errors import XlingError
    from xling.utils.io import read_lines

    lines = read_lines(path)
    if not pair:
        return lines
    items = []
    for i, line in enumerate(lines, 1):
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise XlingError(f"{path}:{i}: expected 'premise<TAB>hypothesis' (this classifier takes pairs)")
        items.append((parts[0], parts[1]))
    return items


def run_predict(args) -> int:
    from xling.classification.predict import Predictor
    from xling.utils.io import write_lines_atomic
    from xling.utils.truncation import Truncation

    clf = Predictor.load(args.model, max_tokens=args.max_tokens, batch_size=args.batch_size)
    clf.check_language(args.lang)
    items = read_inputs(args.input, clf.pair)
    cut = Truncation()
    probs = clf.probabilities(items, args.lang, truncation=cut)  # (N, C)
    if msg := cut.message(clf.unit):
        A.warn("classify predict", msg)
    best = probs.argmax(-1) if len(items) else []
    lines = [clf.labels[k] + (f"\t{probs[i, k]:.4f}" if args.scores else "") for i, k in enumerate(best)]
    write_lines_atomic(args.out, lines)
    return 0


def run_evaluate(args) -> int:
    from xling.classification.data import DataSpec, detect_format
    from xling.classification.report import evaluate_classification, format_table, plot_accuracy, write_report
    from xling.utils.truncation import Truncation

    fmt = args.format or detect_format(args.data)
    langs = [x.strip() for x in args.langs.split(",") if x.strip()]
    spec = DataSpec(format=fmt, path=args.data.removeprefix("hf:"), split=args.split, langs=langs, limit=args.limit)
    cut = Truncation()
    result = evaluate_classification(args.model, spec, source=args.source, max_tokens=args.max_tokens,
                                     batch_size=args.batch_size, progress=not args.quiet, truncation=cut)
    if msg := cut.message():
        A.warn("evaluate classification", msg)
    print(format_table(result))
    if args.out:
        write_report(result, args.out, args.plot)
    elif args.plot:
        plot_accuracy(result, args.plot)
    return 0


def register_evaluate(ev) -> None:
    """Add ``classification`` to the ``xling evaluate`` subcommands."""
    from xling.classification.data import FORMATS

    c = ev.add_parser("classification", help="zero-shot accuracy per language, average, transfer gap")
    c.add_argument("--model", required=True, help="classifier directory (RUN/model or a checkpoint)")
    c.add_argument("--data", required=True, help="corpus directory (genre labels), XNLI/MultiNLI/TSV/JSONL file, or hf:NAME")
    c.add_argument("--format", choices=FORMATS, help="data format (default: detected)")
    c.add_argument("--langs", default="", type=A.lang_list, help="languages to evaluate, e.g. en,de,fr (default: all in the data)")
    c.add_argument("--split", default="test", choices=["train", "valid", "test"], help="corpus / dataset split")
    c.add_argument("--source", type=A.lang, help="the training language for the transfer gap (default: the model's, else en)")
    c.add_argument("--limit", type=A.count, default=0, help="N examples per language, evenly spread over the data (0 = all)")
    c.add_argument("--out", type=A.out_file, help="write the result (with its signature) as JSON, and a bar chart next to it")
    c.add_argument("--plot", type=A.out_file, help="bar chart path (default: --out with .png)")
    c.add_argument("--max-tokens", type=A.positive_int, default=4096, help="padded tokens per batch (fine-tuned encoder)")
    c.add_argument("--batch-size", type=A.positive_int, default=64, help="sentences per batch (frozen sentence encoder)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=run_evaluate)


def register(sub) -> None:
    p = sub.add_parser("classify", help="train a classifier on one language, apply it to any (zero-shot)")
    cl = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = cl.add_parser("train", help="fine-tune an XLM encoder, or fit a head on frozen sentence embeddings")
    t.add_argument("--config", required=True, help="YAML config (see configs/classify_bible.yaml)")
    t.add_argument("--out", required=True, type=A.out_dir, help="run directory: checkpoints, metrics, model/, eval.json")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. trainer.max_steps=3")
    t.add_argument("--resume", action="store_true", help="continue from the run directory's latest checkpoint")
    t.set_defaults(func=run_train)
    r = cl.add_parser("predict", help="label every line of a file (input order kept)")
    r.add_argument("--model", required=True, help="classifier directory (RUN/model or a checkpoint)")
    r.add_argument("--input", required=True, help="one text per line; pairs as premise<TAB>hypothesis")
    r.add_argument("--lang", required=True, type=A.lang, help="language code of the input, e.g. de")
    r.add_argument("--out", required=True, type=A.out_file, help="one predicted label per line")
    r.add_argument("--scores", action="store_true", help="append <TAB>probability of the predicted label")
    r.add_argument("--max-tokens", type=A.positive_int, default=4096, help="padded tokens per batch (fine-tuned encoder)")
    r.add_argument("--batch-size", type=A.positive_int, default=64, help="sentences per batch (frozen sentence encoder)")
    r.set_defaults(func=run_predict)
