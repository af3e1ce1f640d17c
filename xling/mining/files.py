"""Mining with texts: files of embeddings and sentences in, ``score<TAB>src<TAB>tgt`` out.

    stats = mine_files("A.npy", "B.npy", "pairs.tsv", src_text="a.txt", tgt_text="b.txt", threshold=1.06)
    stats = mine_with_model("runs/laser/model", "a.txt", "de", "b.txt", "en", "pairs.tsv")
    triples = mine_texts(src_texts, tgt_texts, src_emb, tgt_emb)   # in memory: [(score, src, tgt)]

With texts, empty lines and repeated lines (after the first occurrence) are left out
before mining (a duplicate would be its own nearest neighbour and distort the margin),
so the output holds no pair twice and no sentence twice on a side in ``max`` mode.
Without texts the output has 0-based row numbers in place of sentences. The output is
sorted by score descending and written atomically.

With a model, every check that needs no vector (the files, the languages, ``k`` and the
faiss index against the number of sentences) runs before the first sentence is encoded,
and errors name the user's text files, never the temporary embeddings. Lines cut to the
model's length are counted over both files and said once.
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
from xling.mining.mine import Pairs, check_settings, mine
from xling.utils.io import atomic_path
from xling.utils.truncation import Truncation

log = logging.getLogger(__name__)

ENCODE_CHUNK = 50_000  # lines encoded per call to the model (bounded memory for big files)


def _rows(lines: LineFile, side: str) -> tuple[np.ndarray, dict]:
    """The rows of a text file to mine (first occurrences of non-empty lines) and its counts."""
    rows = lines.unique_rows()
    stats = {"lines": len(lines), "empty": int((~lines.nonempty).sum()), "duplicates": int(lines.nonempty.sum()) - len(rows)}
    if stats["empty"] or stats["duplicates"]:
        log.warning("%s side (%s): left out %d empty and %d duplicate lines of %d", side, lines.path,
                    stats["empty"], stats["duplicates"], len(lines))
    if not len(rows):
        raise XlingError(f"{lines.path}: no non-empty lines to mine")
    return rows, stats


def _side(emb_path: str | os.PathLike, text_path: str | os.PathLike | None, side: str) -> tuple[Embeddings, LineFile | None, dict]:
    emb = Embeddings(emb_path)
    if text_path is None:
        return emb, None, {"lines": emb.total}
    lines = LineFile(text_path)
    if len(lines) != emb.total:
        raise XlingError(f"{text_path}: {len(lines)} lines but {emb_path} has {emb.total} embeddings (one per line)")
    rows, stats = _rows(lines, side)
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
    return _mine_sides(src, tgt, out, (src_lines, tgt_lines), (src_stats, tgt_stats), **mine_kw)


def _mine_sides(src: Embeddings, tgt: Embeddings, out: str | os.PathLike, lines: tuple, stats: tuple,
                **mine_kw: Any) -> dict[str, Any]:
    """Mine ``src`` against ``tgt`` into ``out``, writing the lines of ``lines`` (closed after)."""
    try:
        pairs = mine(src, tgt, **mine_kw)
        write_pairs(out, pairs, *lines)
    finally:
        for f in lines:
            if f is not None:
                f.close()
    return {"pairs": len(pairs), "src": stats[0], "tgt": stats[1], "out": str(out)}


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
                progress: bool = False, truncation: Truncation | None = None) -> None:
    """Encode a text file with a ``SentenceEncoder`` into ``out_npy`` (n, d) float32, chunk by
    chunk; empty lines get zero vectors (they are not mined). Lines cut to the model's
    length are counted into ``truncation`` (else one warning per chunk)."""
    from tqdm import tqdm

    arr = None  # the .npy is created (zero-filled) once the first vectors give the dimension
    start = 0
    with tqdm(total=len(lines), desc=f"encode {lines.path.name}", unit="sent", unit_scale=True,
              disable=not progress, leave=False) as bar:
        for chunk in lines.chunks(ENCODE_CHUNK):
            keep = np.asarray([i for i, t in enumerate(chunk) if t.strip()], dtype=np.int64)
            if keep.size:
                vecs = encoder.encode([chunk[i] for i in keep], lang, batch_size=batch_size, normalize=True,
                                      truncation=truncation)  # (c', d)
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
                    progress: bool = False, truncation: Truncation | None = None, **mine_kw: Any) -> dict[str, Any]:
    """Encode both files with the encoder ``model_dir`` names (any backend of
    :func:`xling.embeddings.backends.load_encoder`) into temporary
    ``.npy`` files next to ``out`` and mine them (as :func:`mine_files` does). Files, languages,
    ``k`` and the index are checked first (see the module doc); lines cut to the model's
    length are counted into ``truncation``, else said in one warning for both files."""
    from xling.embeddings.backends import load_encoder  # lazy: heavy (torch), and optional for embedding-only mining

    texts = (src_text, tgt_text)
    files: list[LineFile] = []
    try:
        for text in texts:
            files.append(LineFile(text))
            if not len(files[-1]):
                raise XlingError(f"{text}: empty file")
        (src_rows, src_stats), (tgt_rows, tgt_stats) = _rows(files[0], "source"), _rows(files[1], "target")
        encoder = load_encoder(model_dir)
        for lang in (src_lang, tgt_lang):
            encoder.check_lang(lang)
        names = (str(src_text), str(tgt_text))
        check_settings(len(src_rows), len(tgt_rows), encoder.dim, names=names, filtered=True, **mine_kw)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".xling-mine.", dir=Path(out).parent) as tmp:
            cut = truncation or Truncation()
            for lines, lang, side in zip(files, (src_lang, tgt_lang), ("src", "tgt")):
                before = cut.cut
                encode_file(encoder, lines, lang, Path(tmp) / f"{side}.npy", batch_size=batch_size, progress=progress,
                            truncation=cut)
                cut.parts[str(lines.path)] = cut.cut - before  # the message names each file's share
            if truncation is None and (msg := cut.message()):
                log.warning("%s", msg)
            src = Embeddings(Path(tmp) / "src.npy", name=names[0], rows=src_rows)
            tgt = Embeddings(Path(tmp) / "tgt.npy", name=names[1], rows=tgt_rows)
            return _mine_sides(src, tgt, out, tuple(files), (src_stats, tgt_stats), progress=progress, **mine_kw)
    finally:
        for f in files:
            f.close()
