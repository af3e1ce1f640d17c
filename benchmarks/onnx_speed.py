"""Sentences per second of an xling sentence encoder: PyTorch against onnxruntime, float32 and
int8 (``xling export onnx`` / ``--int8``), on the same texts with the same number of threads
(``torch.set_num_threads`` / onnxruntime's ``intra_op_num_threads``).

    python benchmarks/onnx_speed.py --model DIR --lang en [--input FILE ...] [--sentences 2000]
                                    [--threads 2] [--batch-size 64] [--repeats 3] [--work DIR]

Each engine goes through xling's encoder protocol end to end (tokenization, sorting into
batches, padding, the model, rows back in order), so the three differ only in what runs the
model. The texts are the lines of ``--input`` files, else synthetic sentences of 5 to 40 random
pieces of the model's vocabulary. The engines take turns ``--repeats`` times after a warm-up
and each keeps its fastest round (the machine may be shared). Also printed: the smallest cosine
between an int8 and a float32 embedding of the same text. The exports go to ``--work`` (default: a
temporary directory). Prints one markdown table row (with its header) for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import cpu_model  # noqa: E402

from xling.embeddings.api import SentenceEncoder  # noqa: E402
from xling.embeddings.backends.onnx import OnnxEncoder  # noqa: E402
from xling.export.onnx import export_onnx  # noqa: E402
from xling.utils.io import read_lines  # noqa: E402
from xling.utils.truncation import Truncation  # noqa: E402

HEADER = ("| command | date | machine | threads | sentences (mean pieces) | PyTorch sent/s | ORT float32 sent/s "
          "| ORT int8 sent/s | int8 vs float32 (min cosine) |\n|---|---|---|---|---|---|---|---|---|")


def synthetic(enc: SentenceEncoder, n: int, seed: int = 0) -> list[str]:
    """``n`` texts of 5 to 40 random non-special pieces of the encoder's vocabulary."""
    rng = np.random.default_rng(seed)
    return [enc.vocab.decode(rng.integers(5, len(enc.vocab), rng.integers(5, 41)).tolist()) for _ in range(n)]


def texts_of(enc: SentenceEncoder, files: list[str], n: int) -> list[str]:
    if not files:
        return synthetic(enc, n)
    lines = [t for f in files for t in read_lines(f, allow_empty=True) if t.strip()]
    return lines[:n]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="an xling sentence embedder directory")
    ap.add_argument("--lang", required=True, help="language code of the texts")
    ap.add_argument("--input", nargs="*", default=[], help="text files, one sentence per line (default: synthetic)")
    ap.add_argument("--sentences", type=int, default=2000, help="texts embedded per round (default 2000)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads of every engine")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3, help="rounds; each engine keeps its fastest")
    ap.add_argument("--work", default=None, help="directory for the exports (default: a temporary one)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    enc = SentenceEncoder.from_pretrained(args.model)
    texts = texts_of(enc, args.input, args.sentences)
    pieces = float(np.mean([min(len(x), enc.max_len) for x in enc.vocab.encode_batch(texts, lang=args.lang)]))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        engines = {"torch": enc}
        for name, int8 in (("float32", False), ("int8", True)):
            export_onnx(args.model, work / f"onnx_{name}", int8=int8)
            engines[name] = OnnxEncoder(str(work / f"onnx_{name}"), threads=args.threads)
        best = dict.fromkeys(engines, float("inf"))
        out = {}
        for name, e in engines.items():  # warm-up: first-call allocations and thread pools
            e.encode(texts[: args.batch_size], args.lang, batch_size=args.batch_size, truncation=Truncation())
        for _ in range(args.repeats):
            for name, e in engines.items():
                t0 = time.perf_counter()
                out[name] = e.encode(texts, args.lang, batch_size=args.batch_size, normalize=True,
                                     truncation=Truncation())  # lines cut to max_len: not warned per round
                best[name] = min(best[name], time.perf_counter() - t0)
    cosine = float((out["int8"] * out["float32"]).sum(1).min())
    command = "python benchmarks/onnx_speed.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    machine = f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}"
    rate = {k: len(texts) / v for k, v in best.items()}
    print(HEADER)
    print(f"| `{command}` | {datetime.datetime.now():%Y-%m-%d %H:%M} | {machine} | {args.threads} | "
          f"{len(texts)} ({pieces:.1f}) | {rate['torch']:.1f} | {rate['float32']:.1f} | {rate['int8']:.1f} | "
          f"{cosine:.4f} |")


if __name__ == "__main__":
    main()
