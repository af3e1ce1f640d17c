"""Shards and the text stages: plan, prepare (per shard) and dedup (per side).

- :func:`plan_shards` cuts each input file into shards of ``shard_size`` lines (byte ranges,
  found by counting newlines; nothing is decoded).
- ``prepare`` (one unit per shard): strict UTF-8 (an invalid byte is an error naming the file
  and line; the other shards still finish), Unicode normalisation, length limits, optional
  language ID (py3langid); writes the kept lines, their line numbers in the input file and a
  64-bit hash of each.
- ``dedup`` (one unit per side): the first occurrence of every hash over all the side's
  shards, in order (``xling mine`` keeps the first occurrence of each line the same way);
  writes a keep mask per shard. Row ``r`` of a side (in every later stage) is the ``r``-th
  kept line, shard after shard.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xling.errors import XlingError
from xling.mining.lines import first_occurrences
from xling.mining.pipeline.units import Unit, stage
from xling.utils.io import atomic_path, nul_byte_error

BLOCK = 1 << 24  # bytes read at a time when counting lines


@dataclass(frozen=True)
class Shard:
    side: str  # "src" or "tgt"
    index: int  # shard number on its side (the unit key is side/index)
    file: str  # input file
    start: int  # byte range [start, end) of its lines
    end: int
    first_line: int  # 1-based line number of its first line in the file
    lines: int  # lines in the shard

    @property
    def key(self) -> str:
        return f"{self.side}/{self.index:05d}"


def _line_starts(path: Path, every: int) -> tuple[list[int], list[int], int, int]:
    """Byte offsets and 0-based numbers of every ``every``-th line start; lines; file size."""
    offsets, numbers, lines, pos, last = [0], [0], 0, 0, b"\n"
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            nl = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)  # newline positions
            ended = lines + 1 + np.arange(len(nl))  # lines ended by each newline
            cut = (ended % every) == 0
            offsets += (pos + nl[cut] + 1).tolist()
            numbers += ended[cut].tolist()
            lines += len(nl)
            pos += len(block)
            last = block[-1:]
    if pos and last != b"\n":
        lines += 1  # a last line without newline
    if offsets[-1] == pos:  # a shard starting at the end of the file is empty
        offsets.pop()
        numbers.pop()
    return offsets, numbers, lines, pos


def plan_shards(side: str, files: list[str], shard_size: int) -> list[Shard]:
    """The shards of one side's files, in order."""
    shards: list[Shard] = []
    for name in files:
        path = Path(name)
        if not path.is_file():
            raise XlingError(f"{path}: no such file" + (" (a directory)" if path.is_dir() else ""))
        offsets, numbers, lines, size = _line_starts(path, shard_size)
        for j, (start, first) in enumerate(zip(offsets, numbers)):
            end = offsets[j + 1] if j + 1 < len(offsets) else size
            n = (numbers[j + 1] if j + 1 < len(numbers) else lines) - first
            shards.append(Shard(side, len(shards), str(path), start, end, first + 1, n))
    if not shards:
        raise XlingError(f"{side}: no lines in {', '.join(files)}")
    return shards


def file_fingerprint(path: str) -> str:
    """What says an input file changed: size and modification time (not a content hash:
    reading terabytes to find out that nothing changed costs as much as the work)."""
    st = Path(path).stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def line_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little", signed=True)


_LANGID = None


def _langid():
    global _LANGID
    if _LANGID is None:
        try:
            import py3langid
        except ImportError:
            raise XlingError('config prepare.langid needs py3langid: pip install "xling[langid]"') from None
        _LANGID = py3langid
    return _LANGID


def check_langid() -> None:
    _langid()


def _decode(raw: bytes, path: str, line_no: int, offset: int) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise XlingError(f"{path}:{line_no}: invalid UTF-8 (byte offset {offset + e.start})") from None
    if "\0" in text:
        raise nul_byte_error(path, line_no)
    return text


def prepare_outputs(key: str) -> tuple[str, str, str]:
    return f"prepare/{key}.txt", f"prepare/{key}.rows.npy", f"prepare/{key}.hash.npy"


@stage("prepare")
def prepare(run: Path, unit: Unit) -> dict:
    a, s = unit.args, unit.settings
    with open(a["file"], "rb") as f:
        f.seek(a["start"])
        data = f.read(a["end"] - a["start"])
    raws = data.split(b"\n")
    if data.endswith(b"\n"):
        raws.pop()
    counts = {"lines": len(raws), "too_short": 0, "too_long": 0, "wrong_lang": 0}
    kept, rows, hashes = [], [], []
    offset = a["start"]
    langid = _langid() if s["langid"] else None
    for i, raw in enumerate(raws):
        text = _decode(raw.rstrip(b"\r"), a["file"], a["first_line"] + i, offset)
        offset += len(raw) + 1
        if s["normalize"] != "none":
            text = unicodedata.normalize(s["normalize"], text)
        n = len(text.strip())
        if n < s["min_chars"]:
            counts["too_short"] += 1
        elif s["max_chars"] is not None and n > s["max_chars"]:
            counts["too_long"] += 1
        elif langid is not None and langid.classify(text)[0] != s["lang"]:
            counts["wrong_lang"] += 1
        else:
            kept.append(text)
            rows.append(a["first_line"] - 1 + i)
            hashes.append(line_hash(text))
    txt, rows_out, hash_out = (run / p for p in prepare_outputs(unit.key))
    with atomic_path(txt) as tmp:
        tmp.write_bytes("".join(t + "\n" for t in kept).encode("utf-8"))
    for out, values in ((rows_out, rows), (hash_out, hashes)):
        with atomic_path(out) as tmp, open(tmp, "wb") as f:
            np.save(f, np.asarray(values, dtype=np.int64))
    return {"rows": len(kept), **counts}


def dedup_output(key: str) -> str:
    return f"dedup/{key}.keep.npy"


@stage("dedup")
def dedup(run: Path, unit: Unit) -> dict:
    keys = unit.args["shards"]
    hashes = [np.load(run / prepare_outputs(k)[2]) for k in keys]
    sizes = np.cumsum([0] + [len(h) for h in hashes])
    keep = np.zeros(int(sizes[-1]), dtype=bool)
    keep[first_occurrences(np.concatenate(hashes), np.ones(len(keep), dtype=bool))] = True
    for j, k in enumerate(keys):
        with atomic_path(run / dedup_output(k)) as tmp, open(tmp, "wb") as f:
            np.save(f, keep[sizes[j] : sizes[j + 1]])
    return {"rows": int(keep.sum()), "duplicates": int((~keep).sum())}


def shard_texts(run: Path, key: str) -> list[str]:
    """The kept (prepared, deduplicated) lines of a shard: its rows, in order."""
    data = (run / prepare_outputs(key)[0]).read_bytes().decode("utf-8")
    lines = data.split("\n")[:-1]
    keep = np.load(run / dedup_output(key))
    return [t for t, k in zip(lines, keep) if k]
