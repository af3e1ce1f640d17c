"""The ``xling mine-corpus`` config: one dataclass per section, loaded from YAML.

    model: runs/laser/model
    src: {lang: de, files: [de.000.txt, de.001.txt]}
    tgt: {lang: en, files: [en.txt]}
    prepare: {shard_size: 100000, max_chars: 1000}
    index: {type: auto}
    mining: {k: 4, margin: ratio, mode: max}
    filters: {min_score: 1.04, max_score: 1.25, max_len_ratio: 2.0, drop_identical: true}

Speed-only settings (batch size, device, query chunk) do not change a result, so they are
not part of any stage's settings hash: changing them never reruns a stage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from xling.config import to_dict
from xling.errors import XlingError, unknown
from xling.mining.index import DEFAULT_CHUNK, DEFAULT_EF_SEARCH, DEFAULT_NPROBE
from xling.mining.mine import check_scoring
from xling.tokenization.langs import Lang

NORMAL_FORMS = ("NFC", "NFKC", "NFD", "NFKD", "none")
DTYPES = ("float16", "float32")
FLAT_MAX = 1_000_000  # auto index: exact (Flat) up to this many sentences on the indexed side
IVF_MAX = 10_000_000  # auto index: IVF with full vectors up to this many; OPQ + IVF + PQ beyond


def _positive(where: str, value: int | float | None, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if value is None or value < 1:
        raise XlingError(f"config {where}: must be at least 1, got {value!r}")


@dataclass
class SideConfig:
    lang: Lang  # language code of this side (one the sentence encoder was trained on)
    files: list[str] = field(default_factory=list)  # UTF-8 text files, one sentence per line, read in this order

    def check(self, side: str) -> None:
        if not self.files:
            raise XlingError(f"config {side}.files: give at least one text file")


@dataclass
class PrepareConfig:
    shard_size: int = 100_000  # lines per shard: the unit of work of every per-shard stage
    normalize: str = "NFC"  # Unicode normal form applied to every line (NFC, NFKC, NFD, NFKD) or none
    min_chars: int = 1  # lines with fewer characters (spaces at both ends not counted) are dropped
    max_chars: int | None = None  # lines with more characters are dropped; null: no limit
    langid: bool = False  # drop lines py3langid does not identify as the side's language (pip install "xling[langid]")

    def __post_init__(self) -> None:
        _positive("prepare.shard_size", self.shard_size, allow_none=False)
        _positive("prepare.min_chars", self.min_chars, allow_none=False)
        _positive("prepare.max_chars", self.max_chars)
        if self.normalize not in NORMAL_FORMS:
            raise unknown("config prepare.normalize", self.normalize, NORMAL_FORMS)
        if self.max_chars is not None and self.max_chars < self.min_chars:
            raise XlingError(f"config prepare.max_chars: {self.max_chars} is below min_chars {self.min_chars}")


@dataclass
class EmbedConfig:
    dtype: str = "float16"  # embeddings on disk: float16 (half the disk) or float32 (as xling mine --model computes)
    batch_size: int = 64  # sentences per encoder batch (speed only)
    device: str | None = None  # cpu, cuda, cuda:1 ...; default: cuda when available (speed only)

    def __post_init__(self) -> None:
        _positive("embed.batch_size", self.batch_size, allow_none=False)
        if self.dtype not in DTYPES:
            raise unknown("config embed.dtype", self.dtype, DTYPES)


@dataclass
class IndexConfig:
    type: str = "auto"  # faiss factory string, or auto: Flat up to 1M sentences, IVF up to 10M, OPQ+IVF+PQ beyond
    train_size: int | None = None  # vectors sampled to train an IVF/PQ index (default max(100k, 64 x lists))
    seed: int = 0  # seed of the training sample
    nprobe: int = DEFAULT_NPROBE  # IVF lists visited per query
    ef_search: int = DEFAULT_EF_SEARCH  # HNSW search breadth

    def __post_init__(self) -> None:
        _positive("index.train_size", self.train_size)
        _positive("index.nprobe", self.nprobe, allow_none=False)
        _positive("index.ef_search", self.ef_search, allow_none=False)
        if not self.type.strip():
            raise XlingError("config index.type: give a faiss factory string or auto")


@dataclass
class MiningConfig:
    k: int = 4  # neighbours for the margin
    margin: str = "ratio"  # margin score: ratio, distance or absolute
    mode: str = "max"  # retrieval: forward, backward, intersection or max (global one-to-one)
    threshold: float | None = None  # keep pairs scoring >= this before the selection (xling mine --threshold)
    chunk_size: int = DEFAULT_CHUNK  # query rows per faiss call (speed and memory only)

    def __post_init__(self) -> None:
        _positive("mining.k", self.k, allow_none=False)
        _positive("mining.chunk_size", self.chunk_size, allow_none=False)
        check_scoring(self.margin, self.mode)


@dataclass
class FilterConfig:
    min_score: float | None = None  # score window: drop pairs scoring below this (e.g. 1.04)
    max_score: float | None = None  # drop pairs scoring above this (e.g. 1.25: near copies, boilerplate)
    max_len_ratio: float | None = None  # drop pairs whose longer side has more than this times the shorter's characters
    drop_identical: bool = False  # drop pairs whose sides are the same text (case and outer spaces ignored)

    def __post_init__(self) -> None:
        if self.max_len_ratio is not None and self.max_len_ratio < 1:
            raise XlingError(f"config filters.max_len_ratio: must be at least 1, got {self.max_len_ratio}")
        if None not in (self.min_score, self.max_score) and self.min_score > self.max_score:
            raise XlingError(f"config filters: min_score {self.min_score} is above max_score {self.max_score}")


@dataclass
class MineCorpusConfig:
    model: str  # sentence encoder: an xling directory (xling train / xling convert laser), a sentence-transformers
    #   or transformers directory, a hub id, or use-multilingual (xling.embeddings.backends)
    src: SideConfig  # source side: language and text files
    tgt: SideConfig  # target side
    prepare: PrepareConfig = field(default_factory=PrepareConfig)  # normalisation, length limits, language ID
    embed: EmbedConfig = field(default_factory=EmbedConfig)  # embedding storage and speed
    index: IndexConfig = field(default_factory=IndexConfig)  # faiss index type, training and search breadth
    mining: MiningConfig = field(default_factory=MiningConfig)  # k, margin, retrieval mode, threshold
    filters: FilterConfig = field(default_factory=FilterConfig)  # applied when the pairs are extracted

    def __post_init__(self) -> None:
        self.src.check("src")
        self.tgt.check("tgt")


def auto_index(n: int, d: int) -> str:
    """The faiss index for ``n`` vectors of dimension ``d`` (stopes' choice by size): exact
    up to :data:`FLAT_MAX`, IVF with about 4 sqrt(n) lists up to :data:`IVF_MAX`, then
    OPQ + IVF + PQ with 65536 / 131072 / 262144 lists (up to 100M / 500M / beyond)."""
    if n <= FLAT_MAX:
        return "Flat"
    if n <= IVF_MAX:
        return f"IVF{2 ** round(math.log2(4 * math.sqrt(n)))},Flat"
    nlist = 65536 if n <= 100_000_000 else 131072 if n <= 500_000_000 else 262144
    m = max(x for x in range(1, 65) if d % x == 0)  # PQ sub-vectors must divide d
    return f"OPQ{m},IVF{nlist},PQ{m}"


def index_spec(cfg: MineCorpusConfig, n: int, d: int) -> str:
    """The factory string of the index built over a side of ``n`` sentences."""
    return auto_index(n, d) if cfg.index.type == "auto" else cfg.index.type


def changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every setting that differs between two config dicts."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += changes(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


SPEED_ONLY = {"embed": ("batch_size", "device"), "mining": ("chunk_size",)}


def result_settings(cfg: MineCorpusConfig) -> dict:
    """The config without its speed-only settings: what the run directory is checked against."""
    data = to_dict(cfg)
    for section, keys in SPEED_ONLY.items():
        for key in keys:
            data[section].pop(key)
    return data
