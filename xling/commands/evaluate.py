"""``xling evaluate``: scores with signatures.

    xling evaluate xlm --model RUN/model --corpus data/bible --langs en,de --pairs de-en --split test --out eval.json
    xling evaluate bleu --hyp FILE --ref FILE [--lang xx] [--out result.json]    # BLEU + chrF (sacrebleu)
    xling evaluate rouge --hyp FILE --ref FILE [--lang xx] [--out result.json]   # ROUGE-1/2/L F1
"""

from __future__ import annotations

from xling.utils.io import write_json_atomic


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def run_xlm(args) -> int:
    from xling.evaluation.report import evaluate_xlm, format_table

    result = evaluate_xlm(args.model, args.corpus, _csv(args.langs), _csv(args.pairs), split=args.split, seed=args.seed)
    print(format_table(result))
    if args.out:
        write_json_atomic(args.out, result)
    return 0


def run_text_metric(args) -> int:
    from xling.evaluation.textmetrics import evaluate_files, format_result, write_result

    result = evaluate_files(args.what, args.hyp, args.ref, lang=args.lang)
    print(format_result(result))
    if args.out:
        write_result(args.out, result)
    return 0


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a model; every score carries a signature")
    ev = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    x = ev.add_parser("xlm", help="MLM perplexity per language and the TLM translation probe")
    x.add_argument("--model", required=True, help="model directory (RUN/model or a checkpoint)")
    x.add_argument("--corpus", required=True, help="corpus directory (Moses layout)")
    x.add_argument("--langs", default="", help="languages for MLM perplexity, e.g. en,de,fr")
    x.add_argument("--pairs", default="", help="pairs for the translation probe, e.g. de-en,en-fr")
    x.add_argument("--split", default="test", choices=["train", "valid", "test"])
    x.add_argument("--seed", type=int, default=0)
    x.add_argument("--out", help="write the result (with its signature) as JSON here")
    x.set_defaults(func=run_xlm)
    for name, help_ in (
        ("bleu", "corpus BLEU and chrF (sacrebleu) of a hypothesis file against a reference file"),
        ("rouge", "ROUGE-1/2/L F1 (rouge-score; Unicode-aware tokens outside English)"),
    ):
        t = ev.add_parser(name, help=help_)
        t.add_argument("--hyp", required=True, help="system output, one line per reference line (empty lines score 0)")
        t.add_argument("--ref", required=True, help="references, one per line")
        t.add_argument("--lang", help="target language code: picks the tokenizer (zh, ja, ... / en for ROUGE)")
        t.add_argument("--out", help="write the result (scores and signatures) as JSON here")
        t.set_defaults(func=run_text_metric)
