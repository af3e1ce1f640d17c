"""Mining with texts: files of embeddings and sentences in, ``score<TAB>src<TAB>tgt`` out.

    stats = mine_files("A.npy", "B.npy", "pairs.tsv", src_text="a.txt", tgt_text="b.txt", threshold=1.06)
    stats = mine_with_model("runs/laser/model", "a.txt", "de", "b.txt", "en", "pairs.tsv")
    triples = mine_texts(src_texts, tgt_texts, src_emb, tgt_emb)   # in memory: [(score, src, tgt)]

With texts, empty lines and repeated lines (after the first occurrence) are left out
before mining (a duplicate would be its own nearest neighbour and distort the margin),
so the output holds no pair twice and no sentence twice on a side in ``max`` mode.
Without texts the output has 0-based row numbers in place of sentences. The output is
sorted by score descending and written atomically.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from xling.errors import XlingError
from xling.mining.index import Embeddings
from xling.mining.lines import LineFile, text_rows
from xling.mining.mine import Pairs, mine
from xling.utils.io import atomic_path

log = logging.getLogger(__name__)

ENCODE_CHUNK = 50_000  # lines encoded per call to the model (bounded memory for big files)


def _side(emb_path: str | os.PathLike, text_path: str | os.PathLike | None, side: str) -> tuple[Embeddings, LineFile | None, dict]:
    emb = Embeddings(emb_path)
    if text_path is None:
        return emb, None, {"lines": emb.total}
    lines = LineFile(text_path)
    if len(lines) != emb.total:
        raise XlingError(f"{text_path}: {len(lines)} lines but {emb_path} has {emb.total} embeddings (one per line)")
    rows = lines.unique_rows()
    stats = {"lines": len(lines), "empty": int((~lines.nonempty).sum()), "duplicates": int(lines.nonempty.sum()) - len(rows)}
    if stats["empty"] or stats["duplicates"]:
        log.warning("%s side (%s): left out %d empty and %d duplicate lines of %d", side, text_path,
                    stats["empty"], stats["duplicates"], len(lines))
    if not len(rows):
        raise XlingError(f"{text_path}: no non-empty lines to mine")
    return Embeddings(emb_path, rows=rows), lines, stats


def write_pairs(out: str | os.PathLike, pairs: Pairs, src_lines: LineFile | None = None,
                tgt_lines: LineFile | None = None, decimals: int = 6) -> None:
    """``score<TAB>src<TAB>tgt`` lines (row numbers where no text is given), atomically."""
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for start in range(0, len(pairs), 65536):
            block = slice(start, start + 65536)
            scores = [f"{s:.{decimals}f}" for s in pairs.score[block].tolist()]
            src = [src_lines.line(i) for i in pairs.src[block]] if src_lines else pairs.src[block].tolist()
            tgt = [tgt_lines.line(j) for j in pairs.tgt[block]] if tgt_lines else pairs.tgt[block].tolist()
            f.write("".join(f"{s}\t{a}\t{b}\n" for s, a, b in zip(scores, src, tgt)))


def mine_files(src_emb: str | os.PathLike, tgt_emb: str | os.PathLike, out: str | os.PathLike, *,
               src_text: str | os.PathLike | None = None, tgt_text: str | os.PathLike | None = None,
               **mine_kw: Any) -> dict[str, Any]:
    """Mine ``.npy`` embedding files (optionally with their text files, one line per row)
    into ``out``; returns counts. ``mine_kw`` go to :func:`xling.mining.mine.mine`."""
    src, src_lines, src_stats = _side(src_emb, src_text, "source")
    tgt, tgt_lines, tgt_stats = _side(tgt_emb, tgt_text, "target")
    try:
        pairs = mine(src, tgt, **mine_kw)
        write_pairs(out, pairs, src_lines, tgt_lines)
    finally:
        for lines in (src_lines, tgt_lines):
            if lines is not None:
                lines.close()
    return {"pairs": len(pairs), "src": src_stats, "tgt": tgt_stats, "out": str(out)}


def mine_texts(src_texts: list[str], tgt_texts: list[str], src_emb: np.ndarray, tgt_emb: np.ndarray,
               **mine_kw: Any) -> list[tuple[float, str, str]]:
    """In-memory mining: ``[(score, src_text, tgt_text)]`` sorted by score descending,
    without empty or repeated sentences."""
    for texts, emb, side in ((src_texts, src_emb, "source"), (tgt_texts, tgt_emb, "target")):
        if len(texts) != len(emb):
            raise XlingError(f"{side}: {len(texts)} sentences but {len(emb)} embeddings (one per sentence)")
    src_rows, tgt_rows = text_rows(src_texts), text_rows(tgt_texts)
    for rows, side in ((src_rows, "source"), (tgt_rows, "target")):
        if not len(rows):
            raise XlingError(f"{side}: no non-empty sentences to mine")
    pairs = mine(src_emb, tgt_emb, src_rows=src_rows, tgt_rows=tgt_rows, **mine_kw)
    return [(float(s), src_texts[i], tgt_texts[j]) for s, i, j in zip(pairs.score, pairs.src, pairs.tgt)]


def encode_file(encoder: Any, lines: LineFile, lang: str, out_npy: str | os.PathLike, *, batch_size: int = 64,
                progress: bool = False) -> None:
    """Encode a text file with a ``SentenceEncoder`` into ``out_npy`` (n, d) float32, chunk by
    chunk; empty lines get zero vectors (they are not mined)."""
    from tqdm import tqdm

    arr = None  # the .npy is created (zero-filled) once the first vectors give the dimension
    start = 0
    with tqdm(total=len(lines), desc=f"encode {lines.path.name}", unit="sent", unit_scale=True,
              disable=not progress, leave=False) as bar:
        for chunk in lines.chunks(ENCODE_CHUNK):
            keep = np.asarray([i for i, t in enumerate(chunk) if t.strip()], dtype=np.int64)
            if keep.size:
                vecs = encoder.encode([chunk[i] for i in keep], lang, batch_size=batch_size, normalize=True)  # (c', d)
                if arr is None:
                    arr = np.lib.format.open_memmap(out_npy, mode="w+", dtype=np.float32, shape=(len(lines), vecs.shape[1]))
                arr[start + keep] = vecs
            start += len(chunk)
            bar.update(len(chunk))
    if arr is None:
        raise XlingError(f"{lines.path}: no non-empty lines to encode")
    arr.flush()
    del arr


def mine_with_model(model_dir: str | os.PathLike, src_text: str | os.PathLike, src_lang: str,
                    tgt_text: str | os.PathLike, tgt_lang: str, out: str | os.PathLike, *, batch_size: int = 64,
                    progress: bool = False, **mine_kw: Any) -> dict[str, Any]:
    """Encode both files with ``SentenceEncoder.from_pretrained(model_dir)`` into temporary
    ``.npy`` files next to ``out`` and mine them (:func:`mine_files`)."""
    from xling.embeddings import SentenceEncoder  # lazy: heavy (torch), and optional for embedding-only mining

    encoder = SentenceEncoder.from_pretrained(model_dir)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".xling-mine.", dir=Path(out).parent) as tmp:
        paths = {}
        for side, text, lang in (("src", src_text, src_lang), ("tgt", tgt_text, tgt_lang)):
            with LineFile(text) as lines:
                if not len(lines):
                    raise XlingError(f"{text}: empty file")
                paths[side] = Path(tmp) / f"{side}.npy"
                encode_file(encoder, lines, lang, paths[side], batch_size=batch_size, progress=progress)
        return mine_files(paths["src"], paths["tgt"], out, src_text=src_text, tgt_text=tgt_text,
                          progress=progress, **mine_kw)
