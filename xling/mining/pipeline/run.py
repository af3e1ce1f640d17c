"""The driver: plans the units of each stage, skips the finished ones, runs the rest on an
executor, and writes the run manifest.

    summary = mine_corpus(cfg, "runs/mine-de-en", executor=LocalExecutor(4), force=False)
    summary["pairs"], summary["stages"]["embed"]["seconds"], summary["ran"]["extract"]

Stages run one after the other (every unit of a stage before the next stage), each unit
in any worker. Before the first unit: the model and languages, the shards of the inputs,
``k`` and the index against the sizes after deduplication (before anything is encoded),
the config and model against those of the run directory's last run (a change without
``force`` is refused, naming it), and the disk space for the planned embeddings.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from xling.config import to_dict
from xling.errors import XlingError
from xling.mining.index import check_index, check_k, make_index
from xling.mining.mine import needed_directions
from xling.mining.pipeline.config import MineCorpusConfig, changes, index_spec, result_settings
from xling.mining.pipeline.embed import embed_output, load_encoder
from xling.mining.pipeline.executors import Executor, LocalExecutor
from xling.mining.pipeline.extract import SELECT_OUTPUTS
from xling.mining.pipeline.prepare import (Shard, check_langid, dedup_output, file_fingerprint, plan_shards,
                                           prepare_outputs)
from xling.mining.pipeline.search import index_outputs, knn_outputs, means_output, mergeable, score_outputs
from xling.mining.pipeline.units import Unit, run_unit, valid_record
from xling.utils.io import check_writable, sha256_files, write_json_atomic

STAGE_ORDER = ("prepare", "dedup", "embed", "train", "add", "merge", "search", "means", "score", "select", "extract")
SIDES = ("src", "tgt")
DIRECTIONS = {"fwd": ("src", "tgt"), "bwd": ("tgt", "src")}  # direction -> (query side, indexed side)
OUTPUT = "pairs.tsv"


def model_digest(model: str, name: str) -> str:
    """sha256 over the files of a model directory (weights, config, vocabulary); for an encoder
    named without a directory (``use-multilingual``, a hub id), its signature name (version / commit)."""
    if Path(model).is_dir():
        return sha256_files([p for p in sorted(Path(model).iterdir()) if p.is_file()])
    return f"name:{name}"


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


class Pipeline:
    def __init__(self, cfg: MineCorpusConfig, out: str | Path, executor: Executor, force: bool = False,
                 progress: bool = False) -> None:
        self.cfg, self.out, self.executor, self.force, self.progress = cfg, Path(out), executor, force, progress
        self.records: dict[str, dict] = {}  # unit name -> its record (finished units)
        self.ran: dict[str, list[str]] = {}  # stage -> keys of the units this run computed
        self.wall: dict[str, float] = {}  # stage -> seconds this run spent in it
        self.units: dict[str, list[Unit]] = {}

    # ------------------------------------------------------------------ checks before any work
    def check(self) -> None:
        cfg = self.cfg
        check_writable(self.out, "dir", "run directory")
        enc = load_encoder(cfg.model, "cpu")  # an unknown directory or name is a one-line error
        for side in (cfg.src, cfg.tgt):
            enc.check_lang(side.lang)
        self.dim = enc.dim
        self.model_sha = model_digest(cfg.model, enc.name)
        if cfg.prepare.langid:
            check_langid()
        self.shards = {side: plan_shards(side, getattr(cfg, side).files, cfg.prepare.shard_size) for side in SIDES}
        self.fwd, self.bwd = needed_directions(cfg.mining.margin, cfg.mining.mode)
        self._check_previous_run()
        self._check_disk()

    def _run_record(self) -> dict:
        return {"config": result_settings(self.cfg), "model_sha256": self.model_sha}

    def _check_previous_run(self) -> None:
        path = self.out / "run.json"
        if not path.is_file():
            return
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # unreadable: every unit is still checked against its own record
        new = self._run_record()
        diff = changes(old.get("config", {}), new["config"])
        if old.get("model_sha256") != new["model_sha256"]:
            diff.append(f"model files (sha256 {str(old.get('model_sha256'))[:12]} -> {new['model_sha256'][:12]})")
        if diff and not self.force:
            shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
            raise XlingError(f"{self.out}: changed since its last run: {shown}; rerun with --force to recompute "
                             f"what depends on it, or use another --out")

    def _check_disk(self) -> None:
        itemsize = np.dtype(self.cfg.embed.dtype).itemsize
        lines = sum(s.lines for shards in self.shards.values() for s in shards)
        done = sum((self.out / embed_output(s.key)).stat().st_size for shards in self.shards.values()
                   for s in shards if (self.out / embed_output(s.key)).is_file())
        need = lines * self.dim * itemsize - done
        where = self.out
        while not where.exists():
            where = where.parent
        free = shutil.disk_usage(where).free
        if need > free:
            raise XlingError(f"{self.out}: {_gb(free)} free on its disk, but the planned embeddings need about "
                             f"{_gb(need)} ({lines} lines x {self.dim} dims x {itemsize} bytes); free space or "
                             f"use another --out")

    # ------------------------------------------------------------------ running stages
    def digest(self, name: str) -> str:
        return self.records[name]["digest"]

    def file_digest(self, name: str, rel: str) -> str:
        """sha256 of one output file of the finished unit ``name``."""
        return self.records[name]["outputs"][rel]["sha256"]

    def run_stage(self, name: str, units: list[Unit]) -> None:
        from tqdm import tqdm

        self.units[name] = units
        todo = []
        for u in units:
            rec = valid_record(self.out, u)
            if rec is None:
                todo.append(u)
            else:
                self.records[u.name] = rec
        self.ran[name] = [u.key for u in todo]
        start = time.perf_counter()
        failed: list[tuple[Unit, BaseException]] = []
        with tqdm(total=len(units), initial=len(units) - len(todo), desc=f"{name:8s}", unit="unit",
                  disable=not self.progress, leave=True) as bar:
            for (_, unit), result in self.executor.map(run_unit, [(str(self.out), u) for u in todo],
                                                       gpu=name == "embed"):
                if isinstance(result, BaseException):
                    failed.append((unit, result))
                else:
                    self.records[unit.name] = result
                    bar.update(1)
        self.wall[name] = time.perf_counter() - start
        if failed:
            self._fail(name, len(units), failed)

    def _fail(self, name: str, total: int, failed: list[tuple[Unit, BaseException]]) -> None:
        unit, err = failed[0]
        if isinstance(err, XlingError):
            msg = str(err)
        elif isinstance(err, BrokenProcessPool) or type(err).__module__.startswith("ray"):
            msg = f"{unit.name}: a worker died ({type(err).__name__}: {' '.join(str(err).split())[:200]})"
        else:
            raise err  # a bug: keep its traceback
        raise XlingError(f"{msg} ({len(failed)} of {total} {name} units failed, the other units are kept; "
                         f"rerun to resume)")

    def _side_keys(self, side: str, nonempty: bool = False) -> list[str]:
        return [s.key for s, n in zip(self.shards[side], self.sizes[side]) if n or not nonempty]

    def run(self) -> dict:
        cfg = self.cfg
        self.check()
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / ".lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise XlingError(f"{self.out}: another xling mine-corpus run is using it") from None
            write_json_atomic(self.out / "run.json", self._run_record())
            t0 = time.perf_counter()
            self._text_stages()
            self._check_sizes()
            self._vector_stages()
            manifest = self._manifest(time.perf_counter() - t0)
            write_json_atomic(self.out / "manifest.json", manifest)
        return {**manifest, "ran": self.ran}

    def _text_stages(self) -> None:
        p = self.cfg.prepare
        units = []
        for side in SIDES:
            lang = getattr(self.cfg, side).lang
            settings = {"normalize": p.normalize, "min_chars": p.min_chars, "max_chars": p.max_chars,
                        "langid": p.langid, "lang": lang if p.langid else None, "shard_size": p.shard_size}
            for s in self.shards[side]:
                units.append(Unit("prepare", s.key, prepare_outputs(s.key), settings,
                                  {"input": f"{s.file}:{file_fingerprint(s.file)}:{s.start}-{s.end}"},
                                  {"file": s.file, "start": s.start, "end": s.end, "first_line": s.first_line}))
        self.run_stage("prepare", units)
        self.run_stage("dedup", [Unit("dedup", side, tuple(dedup_output(s.key) for s in self.shards[side]), {},
                                      {f"prepare/{s.key}": self.digest(f"prepare/{s.key}") for s in self.shards[side]},
                                      {"shards": [s.key for s in self.shards[side]]}) for side in SIDES])
        self.sizes = {side: [int(np.load(self.out / dedup_output(s.key)).sum()) for s in self.shards[side]]
                      for side in SIDES}

    def _check_sizes(self) -> None:
        """k and the index against the sides' sizes, before anything is encoded."""
        n = {side: sum(self.sizes[side]) for side in SIDES}
        names = {side: f"{side} ({', '.join(getattr(self.cfg, side).files)})" for side in SIDES}
        self.spec = {side: index_spec(self.cfg, n[side], self.dim) for side in SIDES}
        for side in SIDES:
            check_k(self.cfg.mining.k, n[side], names[side], filtered=True)
        for wanted, side in ((self.fwd, "tgt"), (self.bwd, "src")):
            if wanted:
                check_index(self.spec[side], self.dim, n[side], names[side], self.cfg.index.train_size)

    def _vector_stages(self) -> None:
        cfg, m = self.cfg, self.cfg.mining
        units = []
        for side in SIDES:
            settings = {"model": self.model_sha, "dtype": cfg.embed.dtype, "lang": getattr(cfg, side).lang}
            for s in self.shards[side]:
                units.append(Unit("embed", s.key, (embed_output(s.key),), settings,
                                  {f"prepare/{s.key}": self.digest(f"prepare/{s.key}"),
                                   dedup_output(s.key): self.file_digest(f"dedup/{side}", dedup_output(s.key))},
                                  {"model": cfg.model, "device": cfg.embed.device, "batch_size": cfg.embed.batch_size}))
        self.run_stage("embed", units)
        indexed = [side for wanted, side in ((self.fwd, "tgt"), (self.bwd, "src")) if wanted]
        self._index_stages(indexed)
        directions = [d for d, wanted in (("fwd", self.fwd), ("bwd", self.bwd)) if wanted]
        search, means, score = [], [], []
        for d in directions:
            query, idx = DIRECTIONS[d]
            for key in self._side_keys(query, nonempty=True):
                k = f"{d}/{key.split('/')[1]}"
                search.append(Unit("search", k, knn_outputs(d, key),
                                   {"k": m.k, "nprobe": cfg.index.nprobe, "ef_search": cfg.index.ef_search},
                                   {f"merge/{idx}": "", f"embed/{key}": ""},
                                   {"indexed": idx, "shard": key, "chunk_size": m.chunk_size}))
        self._run_with_inputs("search", search)
        for d in directions:
            keys = self._side_keys(DIRECTIONS[d][0], nonempty=True)
            means.append(Unit("means", d, (means_output(d),), {},
                              {f"search/{d}/{k.split('/')[1]}": "" for k in keys}, {"shards": keys}))
        self._run_with_inputs("means", means)
        other = {"fwd": "bwd", "bwd": "fwd"}
        for d in directions:
            for key in self._side_keys(DIRECTIONS[d][0], nonempty=True):
                k = f"{d}/{key.split('/')[1]}"
                inputs = {f"search/{k}": ""} | ({f"means/{other[d]}": ""} if m.margin != "absolute" else {})
                score.append(Unit("score", k, score_outputs(d, key), {"margin": m.margin}, inputs,
                                  {"direction": d, "shard": key, "other": other[d]}))
        self._run_with_inputs("score", score)
        self._run_with_inputs("select", [Unit(
            "select", "all", SELECT_OUTPUTS, {"mode": m.mode, "threshold": m.threshold},
            {u.name: "" for u in score},
            {"src_shards": self._side_keys("src", True) if self.fwd else None,
             "tgt_shards": self._side_keys("tgt", True) if self.bwd else None})])
        texts = {f"prepare/{s.key}": "" for side in SIDES for s in self.shards[side]}
        self._run_with_inputs("extract", [Unit(
            "extract", "all", (OUTPUT,), to_dict(cfg.filters), {"select/all": "", **texts},
            {"src_shards": self._side_keys("src"), "src_sizes": self.sizes["src"],
             "tgt_shards": self._side_keys("tgt"), "tgt_sizes": self.sizes["tgt"]})])

    def _run_with_inputs(self, name: str, units: list[Unit]) -> None:
        """Run units whose ``inputs`` name upstream units (digests filled in here)."""
        for u in units:
            u.inputs = {k: self.digest(k) for k in u.inputs}
        self.run_stage(name, units)

    def _index_stages(self, indexed: list[str]) -> None:
        cfg = self.cfg
        train = [Unit("train", side, index_outputs(side)[:1],
                      {"spec": self.spec[side], "train_size": cfg.index.train_size, "seed": cfg.index.seed},
                      {f"embed/{k}": "" for k in self._side_keys(side)},
                      {"dim": self.dim, "rows": self.sizes[side], "shards": self._side_keys(side)}) for side in indexed]
        self._run_with_inputs("train", train)
        # an index that cannot merge gets no add units: the merge stage adds the vectors itself
        merges = {side: mergeable(make_index(self.spec[side], self.dim)) for side in indexed}
        add = [Unit("add", key, (f"index/{key}.faiss",), {}, {f"train/{side}": "", f"embed/{key}": ""},
                    {"side": side, "chunk_size": cfg.mining.chunk_size})
               for side in indexed if merges[side] for key in self._side_keys(side, nonempty=True)]
        self._run_with_inputs("add", add)
        added = {u.key for u in add}
        merge = [Unit("merge", side, index_outputs(side)[1:], {},
                      {f"train/{side}": "", **{(f"add/{k}" if k in added else f"embed/{k}"): ""
                                               for k in self._side_keys(side, nonempty=True)}},
                      {"shards": self._side_keys(side, nonempty=True), "chunk_size": cfg.mining.chunk_size})
                 for side in indexed]
        self._run_with_inputs("merge", merge)

    # ------------------------------------------------------------------ the manifest
    def _manifest(self, seconds: float) -> dict:
        stages = {}
        for name in STAGE_ORDER:
            units = self.units.get(name, [])
            recs = [self.records[u.name] for u in units]
            counts: dict[str, int] = {}
            for rec in recs:
                for key, value in rec["counts"].items():
                    counts[key] = counts.get(key, 0) + value
            work = sum(r["seconds"] for r in recs)
            rows = sum(r["rows"] for r in recs)
            stages[name] = {"units": len(units), "computed": len(self.ran.get(name, [])), "rows": rows,
                            "seconds": round(work, 3), "wall_seconds": round(self.wall.get(name, 0.0), 3),
                            "rows_per_second": round(rows / work, 1) if work > 0 else None, "counts": counts}
        extract = self.records["extract/all"]
        return {"output": str(self.out / OUTPUT), "pairs": extract["rows"], "config": to_dict(self.cfg),
                "model": {"path": self.cfg.model, "sha256": self.model_sha, "dim": self.dim},
                "engine": self.executor.name, "index": {side: self.spec[side] for side in SIDES},
                "sentences": {side: sum(self.sizes[side]) for side in SIDES},
                "shards": {side: len(self.shards[side]) for side in SIDES},
                "wall_seconds": round(seconds, 3), "stages": stages}


def mine_corpus(cfg: MineCorpusConfig, out: str | Path, *, executor: Executor | None = None, force: bool = False,
                progress: bool = False) -> dict:
    """Run (or resume) the pipeline into the run directory ``out``; returns the manifest plus
    ``ran`` (stage -> units computed by this call)."""
    executor = executor or LocalExecutor(1)
    return Pipeline(cfg, out, executor, force, progress).run()


__all__ = ["OUTPUT", "STAGE_ORDER", "Pipeline", "Shard", "mine_corpus", "model_digest"]
