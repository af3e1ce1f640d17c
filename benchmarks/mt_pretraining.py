"""Does pretraining help translation at equal CPU time? Scratch vs MASS vs XLM-init.

For each language pair (en->de, en->fr by default), three systems with the same
encoder-decoder (configs/bench/mt_model.yaml) and the same total training minutes:

- **scratch**: translation only, for ``--budget`` minutes;
- **mass**: MASS pretraining on the monolingual verses of every language (shared by the
  pairs, ``--pretrain`` minutes), then translation fine-tuning for ``budget - pretrain``;
- **xlm**: XLM MLM+TLM pretraining of the encoder (shared, ``--pretrain`` minutes),
  which initialises both encoder and decoder, then the same fine-tuning.

Each system translates the first ``--n-test`` verses of the *test* chapters (never seen
in the vocabulary or any training) with beam 5; BLEU and chrF by sacrebleu, with
signatures. Stages that already finished are reused, so an interrupted run resumes.

    python benchmarks/mt_pretraining.py [--out runs/bench_mt] [--pairs en-de,en-fr]
        [--budget 12] [--pretrain 7] [--n-test 1000] [--max-examples 2000] [--ft-set KEY=VALUE ...]

``--max-examples N`` is the low-resource setting: every system fine-tunes on the same random
N parallel verses (pretraining still reads all the monolingual text); runs and results get
an ``.nN`` suffix, so they sit beside the full-data runs and reuse their pretraining.

Writes OUT/results.json (OUT/results.nN.json) and prints a markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from pipeline import head, run_meta, train_for, xling

ROOT = Path(__file__).resolve().parent.parent
CFG = ROOT / "configs" / "bench"


def train(config: Path, run: Path, minutes: float, *sets: str) -> dict:
    """Train for ``minutes`` in all (a resumed stage gets what is left) unless ``run``
    holds a final model; its summary.json."""
    return train_for(config, run, minutes, *sets)


def evaluate(model: Path, src: str, tgt: str, corpus: Path, out: Path, n: int, beam: int) -> dict:
    res_path = out / f"bleu.{src}-{tgt}.json"
    if res_path.is_file():
        return json.loads(res_path.read_text())
    s = head(corpus / f"test.{'-'.join(sorted((src, tgt)))}.{src}", out / f"test.{src}", n)
    r = head(corpus / f"test.{'-'.join(sorted((src, tgt)))}.{tgt}", out / f"test.{tgt}", n)
    hyp = out / f"hyp.{tgt}"
    t0 = time.time()
    xling("translate", "--model", str(model), "--src-lang", src, "--tgt-lang", tgt, "--input", str(s),
          "--output", str(hyp), "--beam", str(beam), "--quiet")
    seconds = time.time() - t0
    xling("evaluate", "bleu", "--hyp", str(hyp), "--ref", str(r), "--lang", tgt, "--out", str(res_path))
    res = json.loads(res_path.read_text())
    res["decode_s"] = seconds
    res_path.write_text(json.dumps(res, indent=1))
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench_mt")
    ap.add_argument("--corpus", default="data/bible")
    ap.add_argument("--vocab", default="runs/bench_mt/vocab")
    ap.add_argument("--pairs", default="en-de,en-fr")
    ap.add_argument("--budget", type=float, default=12.0, help="training minutes per system and pair")
    ap.add_argument("--pretrain", type=float, default=7.0, help="of which pretraining (mass, xlm)")
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--systems", default="scratch,mass,xlm")
    ap.add_argument("--max-examples", type=int, default=0,
                    help="low-resource setting: fine-tune on this many parallel pairs (0 = all; pretraining keeps all)")
    ap.add_argument("--ft-set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a fine-tuning config field (repeatable), e.g. trainer.best_metric=ce/avg")
    args = ap.parse_args()
    out, corpus, vocab = ROOT / args.out, ROOT / args.corpus, ROOT / args.vocab
    out.mkdir(parents=True, exist_ok=True)
    pairs = [tuple(p.split("-")) for p in args.pairs.split(",")]
    langs = sorted({x for p in pairs for x in p})
    if not (corpus / "manifest.json").is_file():
        xling("corpus", "bible", "--langs", ",".join(langs), "--out", str(corpus))
    if not (vocab / "vocab.json").is_file():
        xling("vocab", "--corpus", str(corpus), "--langs", ",".join(langs), "--size", "8000", "--out", str(vocab))
    common = [f"data.corpus={corpus}", f"data.vocab={vocab}"]
    mono = "[" + ", ".join(langs) + "]"
    para = "[" + ", ".join("-".join(sorted(p)) for p in pairs) + "]"
    systems = args.systems.split(",")
    pre = {}
    if "mass" in systems:
        pre["mass"] = (train(CFG / "mass.yaml", out / "pre_mass", args.pretrain, *common,
                             f"objectives=[{{type: mass, langs: {mono}}}]"), out / "pre_mass" / "model")
    if "xlm" in systems:
        pre["xlm"] = (train(CFG / "xlm.yaml", out / "pre_xlm", args.pretrain, *common,
                            f"objectives=[{{type: mlm, langs: {mono}}}, {{type: tlm, langs: {para}, weight: 2.0}}]"),
                      out / "pre_xlm" / "model")
    results = []
    for src, tgt in pairs:
        for system in systems:
            run = out / f"{system}.{src}-{tgt}" if not args.max_examples else out / f"{system}.{src}-{tgt}.n{args.max_examples}"
            obj = f"objectives=[{{type: translation, langs: [{src}-{tgt}], max_examples: {args.max_examples}}}]"
            if system == "scratch":
                ft = train(CFG / "mt_model.yaml", run, args.budget, *common, obj, *args.ft_set)
                pre_min, pre_steps = 0.0, 0
            else:
                summ, model = pre[system]
                ft = train(CFG / "mt_model.yaml", run, args.budget - args.pretrain, *common, obj, f"init={model}",
                           *args.ft_set)
                pre_min, pre_steps = summ["elapsed_s"] / 60, summ["steps"]
            res = evaluate(run / "model", src, tgt, corpus, run, args.n_test, args.beam)
            results.append({"pair": f"{src}-{tgt}", "system": system, "max_examples": args.max_examples, "pretrain_min": pre_min,
                            "pretrain_steps": pre_steps, "finetune_min": ft["elapsed_s"] / 60,
                            "finetune_steps": ft["steps"], "bleu": res["bleu"], "chrf": res["chrf"],
                            "decode_s": res.get("decode_s"), "signature": res["signature"]})
            print(json.dumps(results[-1]), flush=True)
    meta = run_meta(n_test=args.n_test, beam=args.beam, max_examples=args.max_examples, finetune_sets=args.ft_set)
    name = "results.json" if not args.max_examples else f"results.n{args.max_examples}.json"
    (out / name).write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print("\n| pair | system | pretrain min (steps) | fine-tune min (steps) | BLEU | chrF |")
    print("|---|---|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['pair']} | {r['system']} | {r['pretrain_min']:.1f} ({r['pretrain_steps']}) | "
              f"{r['finetune_min']:.1f} ({r['finetune_steps']}) | {r['bleu']:.2f} | {r['chrf']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
