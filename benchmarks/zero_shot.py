"""Zero-shot Bible genre classification, side by side: MLM-only vs MLM+TLM vs frozen LASER-style.

Every system is trained on the English train chapters only (8 genres, one label per verse)
with the same fine-tuning budget, then evaluated on the test chapters of every language:

- an XLM encoder directory (``model_type: transformer_encoder``) is fine-tuned end to end
  (configs/classify_bible.yaml);
- any other directory is taken as a sentence encoder (:mod:`xling.embeddings`) and gets a
  light head on its frozen embeddings (configs/classify_bible_laser.yaml).

The encoders are pretrained elsewhere (at equal pretraining CPU time; `xling train`), on a
corpus holding the languages evaluated here. Finished systems (RUN/eval.json) are reused.

    python benchmarks/zero_shot.py --systems mlm=runs/mlm/model,mlm_tlm=runs/tlm/model,laser=runs/laser/model \\
        [--corpus data/bible22] [--langs en,de,fr,...] [--minutes 15] [--out runs/bench_zero_shot] [--set KEY=VALUE]

A system can carry its own config overrides: ``tlm_frz=runs/tlm/model@freeze_layers=0``.

Writes OUT/results.json and prints a markdown table (languages x systems) for
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from pipeline import run_meta, xling

from xling.embeddings.backends.registry import names as backend_names

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {"finetune": ROOT / "configs" / "classify_bible.yaml", "frozen": ROOT / "configs" / "classify_bible_laser.yaml"}


def method_of(model_dir: Path) -> str:
    model_dir = Path(model_dir)
    meta = json.loads((model_dir / "config.json").read_text()) if (model_dir / "config.json").is_file() else {}
    return "finetune" if meta.get("model_type") == "transformer_encoder" else "frozen"


def run_system(name: str, init: Path, args, out: Path, extra: list[str] = ()) -> dict:
    run = out / name
    if not (run / "eval.json").is_file():
        method = method_of(init)
        langs = f"[{','.join(args.langs)}]" if args.langs else "[]"
        sets = [f"init={init}", f"train.path={args.corpus}", f"valid.path={args.corpus}", f"test.path={args.corpus}",
                f"test.langs={langs}", f"trainer.max_minutes={args.minutes}", "trainer.progress=false", *args.set, *extra]
        cmd = ["classify", "train", "--config", str(CONFIGS[method]), "--out", str(run)]
        if (run / "checkpoints" / "latest").is_file():
            cmd.append("--resume")
        for s in sets:
            cmd += ["--set", s]
        xling(*cmd)
    res = json.loads((run / "eval.json").read_text())
    res["fine_tune_s"] = json.loads((run / "summary.json").read_text()).get("elapsed_s")
    return res


def table(results: dict[str, dict], groups: dict[str, list[str]] | None = None) -> str:
    """Accuracy per language and system, the averages, and the mean over each named language group
    (over the group's languages a system was tested on)."""
    names = list(results)
    langs = list(next(iter(results.values()))["languages"])
    lines = ["| language | " + " | ".join(names) + " |", "|---" + "|---:" * len(names) + "|"]
    for lang in langs:
        lines.append(f"| {lang} | " + " | ".join(f"{100 * r['languages'][lang]['accuracy']:.1f}" for r in results.values()) + " |")
    for key, label in (("average", "average"), ("average_others", "average without en"), ("transfer_gap", "transfer gap")):
        cells = [("n/a" if r[key] is None else f"{100 * r[key]:.1f}") for r in results.values()]
        lines.append(f"| **{label}** | " + " | ".join(cells) + " |")
    for label, group in (groups or {}).items():
        accs = [[r["languages"][x]["accuracy"] for x in group if x in r["languages"]] for r in results.values()]
        lines.append(f"| **average over {label}** | " + " | ".join(f"{100 * np.mean(a):.1f}" if a else "n/a"
                                                                  for a in accs) + " |")
    lines.append("")
    lines += [f"- {n}: `{r['signature']}`" for n, r in results.items()]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systems", default="",  # required unless --report
                    help="name=MODEL_DIR items, comma-separated; MODEL_DIR@KEY=VALUE adds an override for that system")
    ap.add_argument("--corpus", default="data/bible")
    ap.add_argument("--langs", default="", help="evaluation languages (default: every language of the corpus)")
    ap.add_argument("--minutes", type=float, default=15.0, help="fine-tuning minutes per system")
    ap.add_argument("--out", default="runs/bench_zero_shot")
    ap.add_argument("--set", action="append", default=[], help="extra config override for every system")
    ap.add_argument("--group", action="append", default=[], metavar="NAME=L1,L2",
                    help="also print the mean accuracy over these languages")
    ap.add_argument("--report", action="store_true", help="print the table of OUT/results.json; train nothing")
    args = ap.parse_args()
    groups = {name: langs.split(",") for name, _, langs in (g.partition("=") for g in args.group)}
    if args.report:
        print(table(json.loads((ROOT / args.out / "results.json").read_text())["systems"], groups))
        return 0
    if not args.systems:
        ap.error("--systems is required (unless --report)")
    args.langs = [x for x in args.langs.split(",") if x]
    args.corpus = str(ROOT / args.corpus)
    out = ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for item in args.systems.split(","):
        name, _, spec = item.partition("=")
        path, *extra = spec.split("@")
        # a backend name (use-multilingual) stays a name; anything else is a path from the repository root
        init = path if not (ROOT / path).exists() and path in backend_names() else ROOT / path
        results[name] = run_system(name, init, args, out, extra)
        results[name]["overrides"] = extra
    (out / "results.json").write_text(json.dumps({"meta": run_meta(), "systems": results}, indent=1))
    print(table(results, groups))
    return 0


if __name__ == "__main__":
    sys.exit(main())
