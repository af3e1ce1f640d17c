"""``xling embed``: sentence embeddings of a text file, written as a ``.npy`` array.

    xling embed --model DIR|NAME --lang de --input FILE|- --out X.npy [--batch-size 64] [--normalize]
                [--mmap] [--chunk 8192] [--device cpu|cuda] [--quiet]

Input: a UTF-8 file or stdin (``-``), one sentence per line, read strictly (invalid UTF-8 is
an error naming the line). Row i of the output is line i: an empty line keeps its row with
a zero vector (one warning counts them); an input with no line at all is an error. The
language must be one the model was trained on (a model that declares no languages: one
warning). ``--model``: an xling sentence embedder, a sentence-transformers or transformers
directory, a Hugging Face hub id, or ``use-multilingual`` (:mod:`xling.embeddings.backends`). Output: a float32 ``(lines, dim)`` array in
NumPy's ``.npy`` format, written under a temporary name and renamed when complete. Lines are
embedded in chunks (``--chunk``, each sorted by length into batches); with ``--mmap`` each
chunk goes straight to a memory-mapped ``.npy`` on disk (``np.lib.format.open_memmap``), so
memory holds the texts and one chunk of vectors, not the whole matrix. Read it back with
``np.load(X, mmap_mode="r")``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from xling.commands.generate import _device, read_input
from xling.commands import args as A
from xling.errors import XlingError
from xling.utils.io import atomic_path

log = logging.getLogger(__name__)
MODEL_HELP = ("sentence encoder: an xling sentence embedder directory, an `xling export onnx` directory, a sentence-transformers or transformers "
              "directory, a Hugging Face hub id (cached, or online), or use-multilingual")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from xling.embeddings.backends import load_encoder
    from xling.utils.truncation import Truncation

    texts = read_input(args.input)  # input errors before the (slower) model load
    where = "<stdin>" if args.input == "-" else args.input
    if not texts:
        raise XlingError(f"{where}: no lines to embed")
    enc = load_encoder(args.model, device=_device(args.device))
    enc.check_lang(args.lang)
    n, d = len(texts), enc.dim
    n_empty = sum(not t.strip() for t in texts)
    if n_empty:
        print(f"xling embed: {n_empty} of {n} lines are empty: zero vectors", file=sys.stderr)
    bar = tqdm(total=n, unit="line", desc="embed", file=sys.stderr, disable=args.quiet)
    quiet_api = logging.getLogger("xling.embeddings.backends.base")
    level = quiet_api.level
    quiet_api.setLevel(logging.ERROR)  # empty-line warnings: counted once above, not per chunk
    cut = Truncation()  # lines cut to the model's length, over every chunk: said once below
    try:
        with atomic_path(args.out) as tmp:
            if args.mmap:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, d))
            else:
                out = np.empty((n, d), dtype=np.float32)
            for a in range(0, n, args.chunk):
                chunk = texts[a : a + args.chunk]
                out[a : a + len(chunk)] = enc.encode(chunk, args.lang, batch_size=args.batch_size,
                                                     normalize=args.normalize, truncation=cut)
                bar.update(len(chunk))
            if args.mmap:
                out.flush()
                del out
            else:
                with open(tmp, "wb") as f:
                    np.save(f, out)
    finally:
        quiet_api.setLevel(level)
        bar.close()
    if msg := cut.message():
        print(f"xling embed: {msg}", file=sys.stderr)
    if not args.quiet:
        print(f"xling embed: {n} x {d} float32 -> {args.out}", file=sys.stderr)
    return 0


def register(sub) -> None:
    p = sub.add_parser("embed", help="sentence embeddings of a text file (.npy)",
                       description="Embed one sentence per line with a trained sentence encoder.")
    p.add_argument("--model", required=True, metavar="DIR|NAME", help=MODEL_HELP)
    p.add_argument("--lang", required=True, type=A.lang, help="language code of the input (one the model was trained on)")
    p.add_argument("--input", default="-", metavar="FILE", help="one sentence per line; - = stdin (default)")
    p.add_argument("--out", required=True, metavar="X.npy", type=A.out_file, help="output .npy file (written atomically)")
    p.add_argument("--batch-size", type=A.positive_int, default=64, help="sentences per batch (default 64)")
    p.add_argument("--normalize", action="store_true", help="unit L2 norm per row (zero rows stay zero)")
    p.add_argument("--mmap", action="store_true", help="write chunk by chunk to a memory-mapped .npy (large inputs)")
    p.add_argument("--chunk", type=A.positive_int, default=8192, help="lines embedded and written at a time (default 8192)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
