"""``xling mine-corpus`` against ``xling mine --model`` on the same text files: time and agreement.

Synthetic sentences (random words; half of the targets near copies of sources) are mined with
a small random sentence encoder (built here, or ``--model``): once by ``xling mine --model`` and
once by the pipeline per worker count (a fresh run directory each, float32 embeddings, exact
index), in this process (``xling mine`` after a warm-up, the faster of a run before and
one after the pipeline's). Reported per size: wall time of each, the pipeline / mine ratio, the
pairs found by both (the encoder batches sentences differently in shards, which moves a vector
by about one float32 rounding, so a near tie can flip) and the largest score difference on the
common pairs, the pipeline's time per stage from its manifest, and whether ``xling mine`` on the
pipeline's own embedding shards and deduplicated texts writes the pipeline's TSV byte for byte.

    python benchmarks/mine_pipeline.py --sizes 10k,20k [--workers 1,2] [--model DIR] [--shard-size 5000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORDS = ("the and god earth light heaven water day night said was good made let there be in beginning form void "
         "spirit moved upon face deep darkness divided called evening morning first second third sea land").split()


def _size(text: str) -> int:
    return int(float(text[:-1]) * 1000) if text.endswith("k") else int(float(text[:-1]) * 10**6) if text.endswith("M") else int(text)


def sentences(rng: np.random.Generator, n: int) -> list[str]:
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 9)))).capitalize() + "." for _ in range(n)]


def write_texts(d: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    src = sentences(rng, n)
    tgt = [s.replace(str(rng.choice(WORDS)), str(rng.choice(WORDS)), 1) for s in rng.choice(src, n // 2)]
    tgt += sentences(rng, n - len(tgt))
    rng.shuffle(tgt)
    for name, lines in (("src", src), ("tgt", tgt)):
        (d / f"{name}.txt").write_text("".join(t + "\n" for t in lines), encoding="utf-8")
    return d / "src.txt", d / "tgt.txt"


def tiny_model(d: Path, dim: int = 32, layers: int = 1, emb_dim: int = 32) -> Path:
    """A random BiLSTM sentence encoder (``dim``-d, 32 by default; ``layers`` layers over ``emb_dim``-d
    token embeddings) with a 350-piece vocabulary of WORDS."""
    import torch

    from xling.embeddings import SentenceEmbedder, SentenceEmbedderConfig, SentenceEncoder
    from xling.tokenization.vocab import train_vocab

    texts = sentences(np.random.default_rng(1), 3000)
    vocab = train_vocab({"en": texts, "fr": texts}, d / "vocab", vocab_size=350, max_sentences=6000)
    torch.manual_seed(0)
    emb = SentenceEmbedder(SentenceEmbedderConfig(vocab_size=len(vocab), n_langs=2, emb_dim=emb_dim, hidden=dim // 2,
                                                  n_layers=layers,
                                                  dec_emb_dim=32, dec_hidden=32, dropout=0.0))
    SentenceEncoder(emb, vocab, ["en", "fr"], ["en"], max_len=40).save_pretrained(d / "model")
    return d / "model"


def pairs(path: Path) -> dict[tuple[str, str], float]:
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]
    return {(a, b): float(s) for s, a, b in rows}


def same_on_its_embeddings(run: Path, xling) -> bool:
    """``xling mine`` on the pipeline's own embedding shards and deduplicated texts (concatenated)
    writes the pipeline's pairs.tsv byte for byte: the search, scoring, selection and extraction
    stages are ``xling mine``'s (only the encoder's batching differs in the runs above)."""
    from xling.mining.pipeline.embed import side_rows

    argv = []
    for side in ("src", "tgt"):
        emb, lines = side_rows(run, side)
        np.save(run / f"{side}.all.npy", emb)
        (run / f"{side}.all.txt").write_text("".join(t + "\n" for t in lines), encoding="utf-8")
        argv += [f"--{side}-emb", str(run / f"{side}.all.npy"), f"--{side}", str(run / f"{side}.all.txt")]
    assert xling(["mine", *argv, "--out", str(run / "mine.own.tsv"), "--quiet"]) == 0
    return (run / "mine.own.tsv").read_bytes() == (run / "pairs.tsv").read_bytes()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10k", help="sentences per side, comma-separated (10k, 100k, 1M)")
    ap.add_argument("--workers", default="1,2", help="pipeline worker processes to try (1 = in this process)")
    ap.add_argument("--shard-size", type=int, default=5000)
    ap.add_argument("--model", help="sentence encoder directory (default: a random tiny one built here)")
    ap.add_argument("--json", help="write every number here")
    args = ap.parse_args()

    from xling.cli import main as xling
    from xling.config import from_dict
    from xling.mining.pipeline import LocalExecutor, MineCorpusConfig, mine_corpus

    results = []
    with tempfile.TemporaryDirectory(prefix="mine-pipeline.") as tmp:
        tmp = Path(tmp)
        model = Path(args.model) if args.model else tiny_model(tmp)
        for size in map(_size, args.sizes.split(",")):
            d = tmp / str(size)
            d.mkdir()
            src, tgt = write_texts(d, size)

            def mine() -> float:
                start = time.perf_counter()
                assert xling(["mine", "--model", str(model), "--src", str(src), "--src-lang", "en", "--tgt", str(tgt),
                              "--tgt-lang", "fr", "--out", str(d / "mine.tsv"), "--quiet"]) == 0
                return time.perf_counter() - start

            mine()  # warm-up (first model calls, page cache); timed below before and after the pipeline runs
            mine_s = mine()
            ref = pairs(d / "mine.tsv")
            for workers in map(int, args.workers.split(",")):
                cfg = from_dict(MineCorpusConfig, {
                    "model": str(model), "src": {"lang": "en", "files": [str(src)]},
                    "tgt": {"lang": "fr", "files": [str(tgt)]}, "prepare": {"shard_size": args.shard_size},
                    "embed": {"dtype": "float32"}, "index": {"type": "Flat"}})
                ex = LocalExecutor(workers)
                start = time.perf_counter()
                try:
                    m = mine_corpus(cfg, d / f"run{workers}", executor=ex)
                finally:
                    ex.close()
                run_s = time.perf_counter() - start
                got = pairs(d / f"run{workers}" / "pairs.tsv")
                common = got.keys() & ref.keys()
                row = {"size": size, "workers": workers, "mine_s": round(mine_s, 2), "pipeline_s": round(run_s, 2),
                       "ratio": round(run_s / mine_s, 2), "pairs_mine": len(ref), "pairs_pipeline": len(got),
                       "common": len(common), "max_score_diff": max((abs(got[p] - ref[p]) for p in common), default=0),
                       "stages": {k: v["seconds"] for k, v in m["stages"].items()},
                       "same_on_its_embeddings": same_on_its_embeddings(d / f"run{workers}", xling)}
                results.append(row)
            mine_s = min(mine_s, mine())  # the machine may be shared: the faster of two runs
            for row in results:
                if row["size"] == size:
                    row["mine_s"], row["ratio"] = round(mine_s, 2), round(row["pipeline_s"] / mine_s, 2)
                    print(json.dumps(row), flush=True)
    print("\n| sentences/side | workers | xling mine s | pipeline s | ratio | pairs (mine / pipeline / both) | "
          "max score diff | xling mine on the pipeline's embeddings: same TSV |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['size']} | {r['workers']} | {r['mine_s']} | {r['pipeline_s']} | {r['ratio']} | "
              f"{r['pairs_mine']} / {r['pairs_pipeline']} / {r['common']} | {r['max_score_diff']:.1e} | "
              f"{'byte-identical' if r['same_on_its_embeddings'] else 'DIFFERENT'} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
