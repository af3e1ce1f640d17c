"""The same fairseq model decoded by fairseq and by xling after ``xling convert fairseq``.

    make fairseq-venv
    python benchmarks/fairseq_converted.py [--model DIR] [--copies 10] [--beam 5] [--threads 2] [--repeats 3]

DIR holds a fairseq transformer (``checkpoint.pt``, ``dict.en.txt`` / ``dict.fr.txt``,
``spm.model``, ``test.en``); the default is the cached post-norm reference model of the parity
tests (``$XLING_CACHE/fairseq-ref/*/postnorm_shared``, made by ``tests/fairseq_ref/make_tiny.py``).
The test sentences are repeated ``--copies`` times. Both systems run as subprocesses on the same
input with the same threads (OMP/MKL_NUM_THREADS and torch's), beam ``--beam``, fairseq's length
settings (max 200 tokens, length penalty 1): ``fairseq-interactive`` (raw text, SentencePiece,
batches of 64) and ``xling translate`` (batches of 64). Reported: wall seconds end to end (best
of ``--repeats``), the same with one sentence (start-up: interpreter, imports, model load), their
difference as decoding time, sentences/s on it, and whether the outputs are identical (compared
without trailing spaces, which fairseq strips).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def default_model() -> Path:
    cache = Path(os.environ.get("XLING_CACHE", Path.home() / ".cache" / "xling"))
    found = sorted(cache.glob("fairseq-ref/*/postnorm_shared"), key=lambda p: p.stat().st_mtime)
    if not found:
        sys.exit("no reference model: run `make test` (or pytest tests/convert/test_fairseq_reference.py) first")
    return found[-1]


def run(cmd: list[str], stdin: str, env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.exit(f"{cmd[0]} failed: {proc.stderr[-2000:]}")
    return time.perf_counter() - t0, proc.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_fairseq_converted")
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    model = args.model or default_model()
    args.out.mkdir(parents=True, exist_ok=True)
    fs_python = Path(subprocess.run(["sh", str(ROOT / "scripts" / "fairseq_env.sh"), "--check"], capture_output=True,
                                    text=True, check=True).stdout.strip())
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    converted = args.out / "xling_model"
    joined = json.loads((model / "variant.json").read_text()).get("joined_dictionary", True) \
        if (model / "variant.json").exists() else True
    tgt = [] if joined else ["--tgt-dict", str(model / "dict.fr.txt")]
    subprocess.run([sys.executable, "-m", "xling.cli", "convert", "fairseq", "--input", str(model / "checkpoint.pt"),
                    "--dict", str(model / "dict.en.txt"), *tgt, "--spm", str(model / "spm.model"), "--langs", "en,fr",
                    "--out", str(converted)], check=True, env=env)
    texts = (model / "test.en").read_text(encoding="utf-8").splitlines() * args.copies
    fairseq = [str(fs_python.parent / "fairseq-interactive"), str(model), "--path", str(model / "checkpoint.pt"),
               "--source-lang", "en", "--target-lang", "fr", "--task", "translation", "--beam", str(args.beam),
               "--bpe", "sentencepiece", "--sentencepiece-model", str(model / "spm.model"), "--buffer-size", "1024",
               "--batch-size", "64", "--cpu", "--max-len-a", "0", "--max-len-b", "200"]
    xling = [sys.executable, "-m", "xling.cli", "translate", "--model", str(converted), "--src-lang", "en",
             "--tgt-lang", "fr", "--beam", str(args.beam), "--max-len-a", "0", "--max-len-b", "200",
             "--batch-size", "64", "--device", "cpu", "--quiet"]
    results, outputs = {}, {}
    for name, cmd in (("fairseq", fairseq), ("xling", xling)):
        startup = min(run(cmd, texts[0] + "\n", env)[0] for _ in range(args.repeats))
        walls = []
        for _ in range(args.repeats):
            wall, out = run(cmd, "".join(t + "\n" for t in texts), env)
            walls.append(wall)
        if name == "fairseq":
            hyps = {int(line[2:].split("\t", 2)[0]): line.split("\t", 2)[2] for line in out.splitlines()
                    if line.startswith("D-")}
            outputs[name] = [hyps[i] for i in range(len(texts))]
        else:
            outputs[name] = [line.rstrip(" ") for line in out.splitlines()]
        decode = min(walls) - startup
        results[name] = {"wall_s": round(min(walls), 2), "walls": [round(w, 2) for w in walls],
                         "startup_s": round(startup, 2), "decode_s": round(decode, 2),
                         "sentences_per_s": round(len(texts) / decode, 1) if decode > 0 else None}
    results["identical_outputs"] = outputs["fairseq"] == outputs["xling"]
    results["sentences"] = len(texts)
    results["model"] = str(model)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
