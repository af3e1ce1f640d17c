"""How much of BUCC-style F1 is scoring, and how much is the embeddings: every margin / mode / k
setting on embeddings that ``benchmarks/mining_bible.py`` cached, next to the F1 of the best
threshold on test itself (an oracle: the ceiling of any threshold rule for that scoring).

    python benchmarks/mining_scoring.py --emb runs/bench_mining_n3000/emb --system xling_gpu \
        --pairs de,fr [--n 3000] [--errors 20]

``--errors N`` prints the N best-scored false positives of the default scoring (cosine, max
mode) at the dev threshold, each source verse next to the English of the verse it was paired
with, to read what the embedder confuses.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--emb", required=True, help="the emb/ folder of a mining_bible.py output")
    ap.add_argument("--system", required=True, help="the system name used there")
    ap.add_argument("--corpus", default="data/bible10")
    ap.add_argument("--pairs", default="de,fr", help="other languages, paired with en")
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--errors", type=int, default=0)
    args = ap.parse_args()
    from xling.evaluation.mining import bucc_sets, evaluate_bucc, text_ids
    from xling.mining.index import Embeddings
    from xling.mining.mine import neighbours, select_pairs
    from xling.utils.io import read_lines

    print("| pair | margin | mode | k | F1 (dev threshold) | F1 (test oracle) |\n|---|---|---|---:|---:|---:|")
    for other in args.pairs.split(","):
        base = ROOT / args.corpus / f"test.{'-'.join(sorted(('en', other)))}"
        texts = {lang: read_lines(f"{base}.{lang}", allow_empty=True)[: args.n] for lang in ("en", other)}
        emb = {lang: np.load(ROOT / args.emb / f"{args.system}.{other}-en.{lang}.{args.n}.npy") for lang in ("en", other)}
        ids = {lang: text_ids(texts[lang]) for lang in ("en", other)}
        threshold = None
        for margin in ("absolute", "ratio", "distance"):
            for mode in ("max", "intersection"):
                for k in (4, 8):
                    r, _ = evaluate_bucc(emb["en"], emb[other], src_ids=ids["en"], tgt_ids=ids[other],
                                         k=k, margin=margin, mode=mode)
                    threshold = r["threshold"] if (margin, mode, k) == ("absolute", "max", 4) else threshold
                    print(f"| en-{other} | {margin} | {mode} | {k} | {r['f1']:.3f} | {r['test']['best_f1']:.3f} |")
        if args.errors and threshold is not None:
            s = bucc_sets(args.n)["test"]
            nb = neighbours(Embeddings(emb["en"][s.src_rows]), Embeddings(emb[other][s.tgt_rows]), 4, "Flat")
            pairs = select_pairs(nb, "absolute", "max", threshold=threshold)
            gold = {(ids["en"][s.src_rows[a]], ids[other][s.tgt_rows[b]]) for a, b in s.gold}
            shown = 0
            for score, a, b in zip(pairs.score, pairs.src, pairs.tgt):
                ra, rb = s.src_rows[a], s.tgt_rows[b]
                if (ids["en"][ra], ids[other][rb]) in gold or shown >= args.errors:
                    continue
                shown += 1
                print(f"  FP {score:.3f}  en: {texts['en'][ra][:100]}\n             {other} (its en): {texts['en'][rb][:100]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
