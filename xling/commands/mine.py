"""``xling mine``: margin-based bitext mining.

    xling mine --src-emb a.npy --tgt-emb b.npy --src a.txt --tgt b.txt --out pairs.tsv [--threshold 1.06]
    xling mine --model RUN/model --src a.txt --src-lang de --tgt b.txt --tgt-lang en --out pairs.tsv
    xling mine --src-emb a.npy --tgt-emb b.npy --out pairs.tsv --index "IVF4096,Flat" --nprobe 32

Writes ``score<TAB>src<TAB>tgt`` sorted by score (row numbers when no text is given).
"""

from __future__ import annotations

import argparse
import sys

from xling.errors import XlingError
from xling.commands import args as A
from xling.commands.embed import MODEL_HELP
from xling.mining.index import DEFAULT_CHUNK, DEFAULT_EF_SEARCH, DEFAULT_NPROBE
from xling.mining.margin import MARGINS
from xling.mining.mine import MODES


def mining_options(args) -> dict:
    """Keyword arguments of :func:`xling.mining.mine.mine` from parsed options."""
    return dict(k=args.k, margin=args.margin, mode=args.mode, threshold=args.threshold, index=args.index,
                nprobe=args.nprobe, ef_search=args.ef_search, train_size=args.train_size, seed=args.seed,
                chunk_size=args.chunk_size)


def add_mining_options(p, scale: bool = True) -> None:
    """k, margin, mode, index options (shared with ``xling evaluate mining``, which passes
    ``scale=False``: no threshold, training-sample or chunk options)."""
    p.add_argument("--k", type=A.positive_int, default=4, help="neighbours for the margin (default 4)")
    p.add_argument("--margin", default="ratio", choices=MARGINS, help="margin score (default ratio)")
    p.add_argument("--mode", default="max", choices=MODES, help="retrieval mode (default max)")
    if scale:
        p.add_argument("--threshold", type=A.finite_float, help="keep pairs with score >= this (any mode; default: keep all)")
    p.add_argument("--index", default="Flat", help='faiss index factory string: Flat (exact, default), "IVF4096,Flat", "IVF4096,PQ64", HNSW32...')
    p.add_argument("--nprobe", type=A.positive_int, default=DEFAULT_NPROBE, help=f"IVF lists visited per query (default {DEFAULT_NPROBE})")
    p.add_argument("--ef-search", type=A.positive_int, default=DEFAULT_EF_SEARCH, help=f"HNSW search breadth (default {DEFAULT_EF_SEARCH})")
    if scale:
        p.add_argument("--train-size", type=A.positive_int, help="vectors sampled to train an IVF/PQ index (default max(100k, 64 x lists))")
        p.add_argument("--chunk-size", type=A.positive_int, default=DEFAULT_CHUNK, help=f"query rows per search call (default {DEFAULT_CHUNK})")
    p.add_argument("--seed", type=A.count, default=0, help="seed of the index training sample (and of evaluation splits)")


def run(args) -> int:
    from xling.mining.files import mine_files, mine_with_model
    from xling.utils.truncation import Truncation

    kw = mining_options(args)
    progress = not args.quiet and sys.stderr.isatty()
    if args.model:
        missing = [f"--{n.replace('_', '-')}" for n in ("src", "src_lang", "tgt", "tgt_lang") if not getattr(args, n)]
        if missing or args.src_emb or args.tgt_emb:
            raise XlingError("--model needs --src, --src-lang, --tgt, --tgt-lang (and no --src-emb/--tgt-emb)"
                             + (f"; missing {', '.join(missing)}" if missing else ""))
        cut = Truncation()
        stats = mine_with_model(args.model, args.src, args.src_lang, args.tgt, args.tgt_lang, args.out,
                                batch_size=args.batch_size, progress=progress, truncation=cut, **kw)
        if msg := cut.message():
            A.warn("mine", msg)
    else:
        if not (args.src_emb and args.tgt_emb):
            raise XlingError("give --src-emb and --tgt-emb (precomputed .npy embeddings) or --model")
        if bool(args.src) != bool(args.tgt):
            raise XlingError("give both --src and --tgt text files, or neither (row numbers are written)")
        stats = mine_files(args.src_emb, args.tgt_emb, args.out, src_text=args.src, tgt_text=args.tgt,
                           progress=progress, **kw)
    if not args.quiet:
        print(f"{stats['pairs']} pairs -> {args.out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("mine", help="mine parallel sentences (faiss kNN + margin scoring)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src-emb", help="source embeddings (.npy, one row per line of --src)")
    p.add_argument("--tgt-emb", help="target embeddings (.npy, one row per line of --tgt)")
    p.add_argument("--src", help="source sentences, one per line (UTF-8)")
    p.add_argument("--tgt", help="target sentences, one per line (UTF-8)")
    p.add_argument("--model", metavar="DIR|NAME", help=MODEL_HELP + ": encodes --src/--tgt instead of --src-emb/--tgt-emb")
    p.add_argument("--src-lang", type=A.lang, help="source language code (with --model)")
    p.add_argument("--tgt-lang", type=A.lang, help="target language code (with --model)")
    p.add_argument("--batch-size", type=A.positive_int, default=64, help="sentences per encoder batch (with --model)")
    p.add_argument("--out", required=True, type=A.out_file, help="output TSV: score<TAB>src<TAB>tgt, best first")
    add_mining_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars or summary line")
    p.set_defaults(func=run)
