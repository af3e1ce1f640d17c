#!/usr/bin/env python3
"""The quickstart: every xling capability at small scale on real data, one report.

Each step runs the real ``xling`` CLI, is timed, and adds its figures to
``OUT/report.md``. Rerunning reuses finished steps (the corpus, the vocabulary)
and resumes an interrupted training run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LANGS = ["en", "de", "fr", "zh"]
PAIRS = ["de-en", "en-fr", "en-zh"]


def xling(*args: str) -> None:
    cmd = [sys.executable, "-m", "xling.cli", *args]
    print("$ xling " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


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
    args = ["train", "--config", "configs/quickstart.yaml", "--out", str(run),
            "--set", f"data.corpus={corpus}", "--set", f"data.vocab={out / 'vocab'}"]
    if (run / "model" / "config.json").is_file():
        pass
    else:
        if (run / "checkpoints" / "latest").is_file():
            args.append("--resume")
        xling(*args)
    summary = json.loads((run / "summary.json").read_text())
    valid = summary.get("valid") or summary.get("last_valid") or {}
    lines = [f"MLM+TLM pretraining, config `configs/quickstart.yaml`; curves: ![curves](xlm/curves.png)", "",
             "| figure | value |", "|---|---:|"]
    for k, v in summary.items():
        if isinstance(v, (int, float)):
            lines.append(f"| {k} | {v:.4g} |")
    for k, v in sorted(valid.items()):
        lines.append(f"| valid {k} | {v:.4g} |")
    return "\n".join(lines)


def step_eval(out: Path, corpus: Path) -> str:
    res = out / "eval_xlm.json"
    xling("evaluate", "xlm", "--model", str(out / "xlm" / "model"), "--corpus", str(corpus),
          "--langs", ",".join(LANGS), "--pairs", ",".join(PAIRS), "--split", "test", "--out", str(res))
    from xling.evaluation.report import format_table

    return ("Test chapters only (never seen in vocabulary or pretraining). The translation probe masks 15% of the "
            "tokens of a sentence and compares accuracy with its translation absent / present.\n\n"
            + format_table(json.loads(res.read_text())))


STEPS = [("1. Corpus", step_corpus), ("2. Vocabulary", step_vocab), ("3. Pretraining (MLM + TLM)", step_train),
         ("4. Evaluation", step_eval)]


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
