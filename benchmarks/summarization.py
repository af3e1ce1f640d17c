"""Summarization on Debian package descriptions: UNILM and MASS next to lead baselines.

Two pretrain-then-fine-tune systems with the same total training minutes, on one shared
SentencePiece vocabulary of the corpus (``train.*`` only):

- **unilm**: one transformer (configs/bench/sum_unilm_pre.yaml) pretrained with UNILM's
  four self-attention masks on the descriptions (``train.{lang}``) for ``--pretrain``
  minutes, then UNILM's seq2seq fine-tuning (70% of the synopsis masked under the
  sequence-to-sequence mask, sum_unilm.yaml) for ``budget - pretrain`` minutes;
- **mass**: an encoder-decoder (sum_mass_pre.yaml) pretrained with MASS on the same
  descriptions for the same minutes, then teacher-forced fine-tuning (sum_mass.yaml);
- with ``--scratch``, both fine-tuned from random weights for the whole ``--budget``
  (``unilm-scratch``, ``mass-scratch``): what pretraining adds at equal CPU time.

Same size for both: d_model 256, 4 heads, d_ff 1024; the encoder-decoder has 4+4 layers,
the UNILM transformer 8, so a synopsis token is computed through 8 layers in both and the
parameter counts are close (the encoder-decoder's extra ones are its cross-attention; the
table lists them). UNILM runs its 8 layers over source and target together, so it makes
fewer updates per minute. Descriptions are cut at 96 tokens, synopses at 24.

Each system summarizes the first ``--n-test`` descriptions of ``test.{lang}.desc`` (never
seen in the vocabulary or any training) with beam 4, no repeated 3-grams and at most 24
tokens (fixed beforehand, not tuned); ROUGE-1/2/L F1 against ``test.{lang}.syn`` with
``xling evaluate rouge``, next to the baselines ``lead-sentence`` (first sentence) and
``lead-8`` (first 8 words). Finished stages are reused, so an interrupted run resumes.

    python benchmarks/summarization.py [--out runs/bench_sum] [--corpus data/debian]
        [--langs en] [--budget 12] [--pretrain 7] [--n-test 1000] [--systems unilm,mass]
        [--scratch] [--ft-set seq2seq.tgt_mask_prob=0.3 ...]

Writes OUT/results.json and prints a markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from xling.evaluation.baselines import baseline
from xling.utils.io import write_json_atomic, write_lines_atomic
from pipeline import head, n_parameters, run_meta, train_for, xling

ROOT = Path(__file__).resolve().parent.parent
CFG = ROOT / "configs" / "bench"
# system: (pretraining config, its objective, fine-tuning config)
SYSTEMS = {"unilm": ("sum_unilm_pre.yaml", "unilm", "sum_unilm.yaml"),
           "mass": ("sum_mass_pre.yaml", "mass", "sum_mass.yaml")}
BASELINES = ("lead-sentence", "lead-8")
DECODE = ("--beam", "4", "--no-repeat-ngram", "3", "--max-len-a", "0", "--max-len-b", "24")
METRICS = ("rouge1", "rouge2", "rougeL")


def rouge(hyp: Path, ref: Path, lang: str, res_path: Path) -> dict:
    if not res_path.is_file():
        xling("evaluate", "rouge", "--hyp", str(hyp), "--ref", str(ref), "--lang", lang, "--out", str(res_path))
    return json.loads(res_path.read_text())


def summarize(model: Path, lang: str, src: Path, ref: Path, out: Path, n: int) -> dict:
    """Synopses of ``src`` by ``model`` and their ROUGE (reused when already scored)."""
    res_path = out / f"rouge.{lang}.n{n}.json"
    if res_path.is_file():
        return json.loads(res_path.read_text())
    hyp = out / f"hyp.{lang}.n{n}.syn"
    t0 = time.time()
    xling("generate", "--model", str(model), "--lang", lang, "--input", str(src), "--output", str(hyp),
          *DECODE, "--quiet")
    seconds = time.time() - t0
    res = dict(rouge(hyp, ref, lang, res_path), decode_s=round(seconds, 1))
    write_json_atomic(res_path, res)
    return res


def row(lang: str, system: str, res: dict, pre: dict | None = None, ft: dict | None = None,
        params: int | None = None) -> dict:
    r = {"lang": lang, "system": system,
         "pretrain_min": pre["elapsed_s"] / 60 if pre else 0.0, "pretrain_steps": pre["steps"] if pre else 0,
         "finetune_min": ft["elapsed_s"] / 60 if ft else None, "finetune_steps": ft["steps"] if ft else None,
         "params": params, **{k: res[k] for k in METRICS}, "decode_s": res.get("decode_s"),
         "signature": res["signature"]}
    print(json.dumps(r), flush=True)
    return r


def table(results: list[dict]) -> str:
    out = ["| lang | system | pretrain min (steps) | fine-tune min (steps) | parameters | R1 | R2 | RL | signature |",
           "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        if r["finetune_min"] is None:  # a baseline
            train = "– | – | –"
        else:
            train = (f"{r['pretrain_min']:.1f} ({r['pretrain_steps']}) | {r['finetune_min']:.1f} "
                     f"({r['finetune_steps']}) | {r['params'] / 1e6:.1f}M")
        out.append(f"| {r['lang']} | {r['system']} | {train} | {r['rouge1']:.2f} | {r['rouge2']:.2f} | "
                   f"{r['rougeL']:.2f} | `{r['signature']}` |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench_sum")
    ap.add_argument("--corpus", default="data/debian", help="`xling corpus debian-descriptions` output")
    ap.add_argument("--langs", default="en", help="vocabulary, pretraining, fine-tuning and test languages")
    ap.add_argument("--budget", type=float, default=12.0, help="training minutes per system")
    ap.add_argument("--pretrain", type=float, default=7.0, help="of which pretraining")
    ap.add_argument("--n-test", type=int, default=1000, help="first N test descriptions per language")
    ap.add_argument("--systems", default="unilm,mass", help="of: " + ",".join(SYSTEMS))
    ap.add_argument("--scratch", action="store_true", help="also each system from scratch, the whole budget")
    ap.add_argument("--ft-set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a fine-tuning config field (repeatable), e.g. seq2seq.tgt_mask_prob=0.3")
    args = ap.parse_args()
    out, corpus = ROOT / args.out, ROOT / args.corpus
    langs = args.langs.split(",")
    systems = args.systems.split(",")
    if unknown := [s for s in systems if s not in SYSTEMS]:
        ap.error(f"--systems: unknown {unknown[0]!r}; use {', '.join(SYSTEMS)}")
    if not 0 < args.pretrain < args.budget:
        ap.error("--pretrain must be > 0 and < --budget")
    if not (corpus / "manifest.json").is_file():
        ap.error(f"{corpus}: no corpus; build it with `xling corpus debian-descriptions --langs {args.langs} "
                 f"--out {args.corpus}`")
    out.mkdir(parents=True, exist_ok=True)
    vocab = out / "vocab"
    if not (vocab / "vocab.json").is_file():
        xling("vocab", "--corpus", str(corpus), "--langs", args.langs, "--size", "8000", "--out", str(vocab))
    common = [f"data.corpus={corpus}", f"data.vocab={vocab}"]
    lang_list = "[" + ", ".join(langs) + "]"
    finetune = f"objectives=[{{type: summarization, langs: {lang_list}}}]"

    test = out / "test"
    test.mkdir(exist_ok=True)
    n = args.n_test
    sets = {lang: (head(corpus / f"test.{lang}.desc", test / f"test.{lang}.n{n}.desc", n),
                   head(corpus / f"test.{lang}.syn", test / f"test.{lang}.n{n}.syn", n)) for lang in langs}
    results = []
    for lang, (src, ref) in sets.items():
        docs = src.read_text(encoding="utf-8").splitlines()
        for name in BASELINES:
            hyp = test / f"{name}.{lang}.n{n}.syn"
            write_lines_atomic(hyp, baseline(name, docs))
            results.append(row(lang, name, rouge(hyp, ref, lang, test / f"rouge-{name}.{lang}.n{n}.json")))

    runs = []  # (name, fine-tuning config, pretraining summary or None, its model or None, minutes)
    for system in systems:
        pre_cfg, objective, ft_cfg = SYSTEMS[system]
        pre_run = out / f"pre_{system}"
        pre = train_for(CFG / pre_cfg, pre_run, args.pretrain, *common,
                        f"objectives=[{{type: {objective}, langs: {lang_list}}}]")
        runs.append((system, ft_cfg, pre, pre_run / "model", args.budget - args.pretrain))
    if args.scratch:
        runs += [(f"{s}-scratch", SYSTEMS[s][2], None, None, args.budget) for s in systems]
    for name, ft_cfg, pre, init, minutes in runs:
        run = out / name
        ft = train_for(CFG / ft_cfg, run, minutes, *common, finetune, *([f"init={init}"] if init else []), *args.ft_set)
        params = n_parameters(run / "model")
        for lang, (src, ref) in sets.items():
            results.append(row(lang, name, summarize(run / "model", lang, src, ref, run, n), pre, ft, params))

    for r in results:  # the bar: every model above both baselines on R1, R2 and RL
        if r["finetune_min"] is not None:
            base = [b for b in results if b["lang"] == r["lang"] and b["system"] in BASELINES]
            r["beats_baselines"] = all(r[k] > b[k] for b in base for k in METRICS)
    meta = run_meta(n_test=n, langs=langs, budget_min=args.budget, pretrain_min=args.pretrain,
                    decode=" ".join(DECODE), finetune_sets=args.ft_set)
    write_json_atomic(out / "results.json", {"meta": meta, "results": results})
    print(f"\n{meta['date']}, {meta['machine']}\n`{meta['command']}`\n")
    print(table(results))
    for r in results:
        if "beats_baselines" in r:
            print(f"{r['system']} ({r['lang']}): {'beats' if r['beats_baselines'] else 'does NOT beat'} "
                  f"{' and '.join(BASELINES)} on R1, R2 and RL")
    return 0


if __name__ == "__main__":
    sys.exit(main())
