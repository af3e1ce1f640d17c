"""``xling evaluate``: scores with signatures.

    xling evaluate xlm --model RUN/model --corpus data/bible --langs en,de --pairs de-en --split test --out eval.json
    xling evaluate bleu --hyp FILE --ref FILE [--lang xx] [--out result.json]    # BLEU + chrF (sacrebleu)
    xling evaluate rouge --hyp FILE --ref FILE [--lang xx] [--out result.json]   # ROUGE-1/2/L F1
    xling evaluate classification --model RUN/model --data DIR|FILE [--langs en,de] [--out result.json]  # zero-shot
    xling evaluate mining --model M --corpus data/bible --pairs de-en,en-fr [--split test] [--out r.json] [--plot hist.png]
    xling evaluate mining --src-emb A.npy --tgt-emb B.npy [--name de-en]    # aligned embeddings: row i <-> row i
"""

from __future__ import annotations

from pathlib import Path

from xling.errors import XlingError
from xling.commands import args as A
from xling.utils.io import write_json_atomic


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def run_xlm(args) -> int:
    from xling.evaluation.report import evaluate_xlm, format_table

    result = evaluate_xlm(args.model, args.corpus, _csv(args.langs), _csv(args.pairs), split=args.split, seed=args.seed,
                          progress=not args.quiet)
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


def _load_npy(path: str):
    from xling.mining.index import Embeddings

    emb = Embeddings(path)  # checks the file, shape and dtype
    return emb.slice(0, emb.n)  # (n, d) float32, normalised


def run_mining(args) -> int:
    from xling.evaluation.mining import array_hash, evaluate_mining, format_table, plot_margin_histogram

    settings = dict(k=args.k, margin=args.margin, mode=args.mode, index=args.index, nprobe=args.nprobe,
                    ef_search=args.ef_search, seed=args.seed, distractors=args.distractors,
                    dev_fraction=args.dev_fraction, split=args.split)
    results, hists = {}, {}
    if args.src_emb or args.tgt_emb:
        if not (args.src_emb and args.tgt_emb) or args.model or args.corpus:
            raise XlingError("give --src-emb and --tgt-emb (aligned rows), or --model with --corpus and --pairs")
        src, tgt = _load_npy(args.src_emb), _load_npy(args.tgt_emb)
        name = args.name or "src-tgt"
        results[name], hists[name] = evaluate_mining(src, tgt, model="embeddings", data=array_hash(src, tgt), **settings)
    else:
        if not (args.model and args.corpus and args.pairs):
            raise XlingError("give --model, --corpus and --pairs (or --src-emb and --tgt-emb)")
        from xling.data.readers import load_parallel_split
        from xling.evaluation.mining import evaluate_mining_model
        from xling.evaluation.report import corpus_hash
        from xling.utils.truncation import Truncation

        cut = Truncation()

        for pair in _csv(args.pairs):
            l1, sep, l2 = pair.partition("-")
            if not (sep and l1 and l2):
                raise XlingError(f"--pairs: {pair!r} is not a language pair like de-en")
            a, b = load_parallel_split(args.corpus, args.split, l1, l2)
            data = corpus_hash(args.corpus)
            if args.limit:  # the first N pairs: named in the data signature
                a, b, data = a[: args.limit], b[: args.limit], f"{data}[:{args.limit}]"
            results[pair], hists[pair] = evaluate_mining_model(args.model, a, b, l1, l2, batch_size=args.batch_size,
                                                               data=data, truncation=cut, **settings)
        if msg := cut.message():
            A.warn("evaluate mining", msg)
    print(format_table(results))
    if args.out:
        write_json_atomic(args.out, {"pairs": results})
    if args.plot:
        plot = Path(args.plot)
        for name, hist in hists.items():
            path = plot if len(hists) == 1 else plot.with_name(f"{plot.stem}.{name}{plot.suffix or '.png'}")
            plot_margin_histogram(hist["gold"], hist["other"], results[name]["bucc"]["threshold"], path,
                                  title=f"{name}: margin scores on the BUCC-style test set")
    return 0


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a model; every score carries a signature")
    ev = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    x = ev.add_parser("xlm", help="MLM perplexity per language and the TLM translation probe")
    x.add_argument("--model", required=True, help="model directory (RUN/model or a checkpoint)")
    x.add_argument("--corpus", required=True, help="corpus directory (Moses layout)")
    x.add_argument("--langs", default="", type=A.lang_list, help="languages for MLM perplexity, e.g. en,de,fr")
    x.add_argument("--pairs", default="", type=A.pair_list, help="pairs for the translation probe, e.g. de-en,en-fr")
    x.add_argument("--split", default="test", choices=["train", "valid", "test"])
    x.add_argument("--seed", type=A.count, default=0)
    x.add_argument("--out", type=A.out_file, help="write the result (with its signature) as JSON here")
    x.add_argument("--quiet", action="store_true", help="no progress bars")
    x.set_defaults(func=run_xlm)
    for name, help_ in (
        ("bleu", "corpus BLEU and chrF (sacrebleu) of a hypothesis file against a reference file"),
        ("rouge", "ROUGE-1/2/L F1 (rouge-score; Unicode-aware tokens outside English)"),
    ):
        t = ev.add_parser(name, help=help_)
        t.add_argument("--hyp", required=True, help="system output, one line per reference line (empty lines score 0)")
        t.add_argument("--ref", required=True, help="references, one per line")
        t.add_argument("--lang", type=A.known_lang, help="target language code: picks the tokenizer (zh, ja, ... / en for ROUGE)")
        t.add_argument("--out", type=A.out_file, help="write the result (scores and signatures) as JSON here")
        t.set_defaults(func=run_text_metric)
    from xling.commands.mine import add_mining_options

    m = ev.add_parser("mining", help="BUCC-style F1 (threshold from dev) and Tatoeba-style P@1 / xSIM error")
    m.add_argument("--model", help="sentence encoder: an xling, sentence-transformers or transformers directory, a "
                   "hub id, or use-multilingual (with --corpus and --pairs)")
    m.add_argument("--corpus", help="corpus directory (Moses layout) holding the parallel split")
    m.add_argument("--pairs", default="", type=A.pair_list, help="language pairs, e.g. de-en,en-fr")
    m.add_argument("--src-emb", help="source embeddings .npy (instead of --model): row i translates row i of --tgt-emb")
    m.add_argument("--tgt-emb", help="target embeddings .npy, aligned with --src-emb")
    m.add_argument("--name", help="name of the embedding pair in the table (default src-tgt)")
    m.add_argument("--split", default="test", choices=["train", "valid", "test"])
    m.add_argument("--limit", type=A.positive_int, default=None, help="the first N pairs of each pair's split "
                   "(default: all)")
    m.add_argument("--distractors", type=A.count, default=4, help="non-parallel sentences per gold pair on each side (default 4)")
    m.add_argument("--dev-fraction", type=A.float_in(0, 1, low_open=True, high_open=True), default=0.5, help="share of the pairs in the dev set that picks the threshold")
    m.add_argument("--batch-size", type=A.positive_int, default=64, help="sentences per encoder batch")
    add_mining_options(m, scale=False)
    m.add_argument("--out", type=A.out_file, help="write the results (with signatures) as JSON here")
    m.add_argument("--plot", type=A.out_file, help="PNG histogram of gold vs other margin scores (several pairs: NAME.<pair>.png)")
    m.set_defaults(func=run_mining)
    from xling.commands.classify import register_evaluate  # `evaluate classification`: zero-shot accuracy per language

    register_evaluate(ev)
