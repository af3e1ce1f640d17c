"""``xling mine-corpus`` at scale: wall time, throughput, CPU, peak memory and disk written per
stage, recall of the approximate index against exact search, and (text mode) the whole pipeline
against ``xling mine --model`` on the same files.

Two modes, each run of the pipeline in a fresh child process (``LocalExecutor(--workers)``):

- ``text``: synthetic sentences (``mine_pipeline.write_texts``: random words, half of the targets
  near copies of sources) through every stage with a random sentence encoder built here
  (``mine_pipeline.tiny_model``: a 32-d BiLSTM, or ``--encoder laser``: LASER's shape; or
  ``--model DIR``); then ``xling mine --model`` with the same index on the same files (another
  child), and the ratio of the two wall times.
- ``vectors``: short unique text lines (``src 17``) through prepare and dedup, then the embed
  stage replaced by synthetic clustered vectors written straight into its float16 shards (about
  ``n/1000`` cluster centres; target shard j: half noisy copies of source shard j's vectors in
  shuffled order, half new points), so that the index stages (train / add / merge), search,
  means, score, select and extract run on realistic sizes without an encoder. ``--workers`` is 1
  here (the replaced stage lives in the child process); faiss uses every core.

Per stage: ``wall s``, ``rows/s`` (the stage's rows over its wall time), ``CPU s`` (user + system
of the child and its workers, from /proc), ``peak RSS MB`` (VmHWM of the child plus its worker
processes, each reset through /proc/PID/clear_refs when the stage starts: the stage's own peak;
a sum of per-process peaks when workers > 1), ``disk MB`` (the outputs the stage wrote, from its
``.done`` records). Recall (``--recall N``): N sampled source sentences searched exactly (numpy
over the target's float16 shards, normalised as the index saw them) against the pipeline's
forward neighbours: top-1 agreement and the share of the exact k nearest found.

    python benchmarks/mine_pipeline_scale.py text --size 1M --index IVF4096,Flat --recall 2000
    python benchmarks/mine_pipeline_scale.py text --size 2k --shard-size 500 --encoder laser --no-mine --recall 0
    python benchmarks/mine_pipeline_scale.py vectors --size 10M --dim 256 --index IVF16384,PQ32 \\
        --shard-size 250k --recall 2000

Prints markdown tables (and ``--json FILE`` with every number); ``--workdir`` holds the data and
run directories (default: a temporary directory, removed at the end; ``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from mine_pipeline import _size, pairs, tiny_model, write_texts  # noqa: E402
from pipeline import cpu_model  # noqa: E402

ENCODERS = {"tiny": (32, 1, 32), "laser": (1024, 5, 320)}  # random BiLSTMs: (dim, layers, token emb dim); laser:
#   LASER's shape (5 x 512 both ways, 320-d tokens, 1024-d sentences), for encode rates
TEXT_CHUNK = 1_000_000  # lines written at a time (vectors mode)
TICKS = os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------- /proc measurements


def _family(pid: int | None = None) -> list[int]:
    """This process (or ``pid``) and all its descendants."""
    pid = pid or os.getpid()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def reset_peaks() -> None:
    for p in _family():
        try:
            Path(f"/proc/{p}/clear_refs").write_text("5")  # VmHWM := current RSS
        except OSError:
            pass


def peak_mb() -> float:
    total = 0
    for p in _family():
        try:
            total += int(re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{p}/status").read_text()).group(1))
        except (OSError, AttributeError):
            pass
    return total / 1024


def cpu_s() -> float:
    """User + system seconds of this process and its live descendants, plus its reaped children."""
    total = 0.0
    for p in _family():
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
        except (OSError, IndexError):
            pass
    t = os.times()
    return total + t.children_user + t.children_system


# ----------------------------------------------------------------------------- child: the pipeline


CLEAR = 0.05  # recall "clear" queries: exact top-1 cosine at least this far above the 2nd
SYNTH: dict = {}  # vectors mode: dim, seed, clusters (read by synthetic_embed in the child)


def _clustered(r: np.random.Generator, centres: np.ndarray, n: int) -> np.ndarray:
    return centres[r.integers(0, len(centres), n)] + r.normal(size=(n, centres.shape[1])).astype(np.float32)


def synthetic_vectors(side: str, shard: int, n_src: int, n: int) -> np.ndarray:
    """Shard ``shard`` of a side, (n, d) float32: source points around the centres; target
    points half noisy copies of the same source shard's points (shuffled), half new points."""
    seed, d = SYNTH["seed"], SYNTH["dim"]
    centres = np.random.default_rng(seed).normal(size=(SYNTH["clusters"], d)).astype(np.float32)  # (C, d)
    src = _clustered(np.random.default_rng([seed, 1, shard]), centres, n_src)
    if side == "src":
        return src
    r = np.random.default_rng([seed, 2, shard])
    tgt = _clustered(r, centres, n)
    m = min(n, n_src) // 2
    rows, copies = r.permutation(n)[:m], r.permutation(n_src)[:m]
    tgt[rows] = src[copies] + 0.35 * r.normal(size=(m, d)).astype(np.float32)
    return tgt


def synthetic_embed(run: Path, unit) -> dict:
    """The embed stage of vectors mode: synthetic normalised vectors in the stage's float16 shard."""
    from xling.mining.pipeline.embed import embed_output
    from xling.mining.pipeline.prepare import dedup_output
    from xling.utils.io import atomic_path

    side, shard = unit.key.split("/")
    n = int(np.load(run / dedup_output(unit.key)).sum())
    n_src = int(np.load(run / dedup_output(f"src/{shard}")).sum())
    x = synthetic_vectors(side, int(shard), n_src, n)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    with atomic_path(run / embed_output(unit.key)) as tmp, open(tmp, "wb") as f:
        np.save(f, x.astype(unit.settings["dtype"]))
    return {"rows": n}


def child_pipeline(spec: dict) -> dict:
    from xling.config import from_dict
    from xling.mining.pipeline import LocalExecutor, MineCorpusConfig
    from xling.mining.pipeline import units as U
    from xling.mining.pipeline.run import Pipeline

    if spec.get("synthetic"):
        from xling.mining.pipeline import stages  # noqa: F401  (registers the real stages first)

        SYNTH.update(spec["synthetic"])
        U.STAGES["embed"] = synthetic_embed
    measured: dict[str, dict] = {}

    class Measured(Pipeline):
        def run_stage(self, name, units):
            reset_peaks()
            cpu0, t0 = cpu_s(), time.perf_counter()
            super().run_stage(name, units)
            wall, cpu = time.perf_counter() - t0, cpu_s() - cpu0
            ran = set(self.ran[name])
            recs = [self.records[u.name] for u in units]
            written = sum(o["size"] for u, r in zip(units, recs) if u.key in ran for o in r["outputs"].values())
            rows = sum(r["rows"] for r in recs)
            measured[name] = {"units": len(units), "computed": len(ran), "rows": rows, "wall_s": wall,
                              "rows_per_s": rows / wall if wall > 0 else None, "cpu_s": cpu,
                              "peak_rss_mb": peak_mb(), "disk_mb": written / 2**20}

    cfg = from_dict(MineCorpusConfig, spec["config"])
    ex = LocalExecutor(spec["workers"])
    t0, cpu0 = time.perf_counter(), cpu_s()
    try:
        manifest = Measured(cfg, spec["out"], ex).run()
    finally:
        ex.close()
    return {"wall_s": time.perf_counter() - t0, "cpu_s": cpu_s() - cpu0, "pairs": manifest["pairs"],
            "index": manifest["index"], "sentences": manifest["sentences"], "shards": manifest["shards"],
            "counts": {k: v["counts"] for k, v in manifest["stages"].items()}, "stages": measured}


def child_mine(argv: list[str]) -> dict:
    import resource

    from xling.cli import main as xling

    t0, cpu0 = time.perf_counter(), time.process_time()
    assert xling(["mine", *argv, "--quiet"]) == 0
    return {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - cpu0,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def child(job: str, arg: str) -> None:
    result = child_pipeline(json.loads(arg)) if job == "pipeline" else child_mine(json.loads(arg))
    print("RESULT " + json.dumps(result), flush=True)


def run_child(job: str, arg) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, __file__, "--child", job, json.dumps(arg)], capture_output=True,
                          text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"child {job} failed:\n{proc.stderr[-3000:]}")
    return json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT ")).removeprefix("RESULT "))


# ----------------------------------------------------------------------------- recall


def recall(run: Path, sample_size: int, k: int, seed: int = 0) -> dict:
    """Exact k nearest targets of sampled source rows (numpy over the target's shards) against
    the pipeline's forward neighbours of those rows."""
    from xling.mining.index import Embeddings

    src = sorted((run / "embed" / "src").glob("*.npy"))
    tgt = sorted((run / "embed" / "tgt").glob("*.npy"))
    sizes = np.array([np.load(p, mmap_mode="r").shape[0] for p in src])
    starts = np.concatenate([[0], np.cumsum(sizes)])
    sample = np.sort(np.random.default_rng(seed).choice(int(starts[-1]), min(sample_size, int(starts[-1])),
                                                        replace=False))
    shard = np.searchsorted(starts, sample, side="right") - 1
    q, approx = [], []
    for j in np.unique(shard):
        local = sample[shard == j] - starts[j]
        q.append(Embeddings(src[j]).take(local))
        approx.append(np.load(run / "knn" / "fwd" / f"{src[j].stem}.ids.npy")[local])
    q, approx = np.concatenate(q), np.concatenate(approx)  # (s, d), (s, k)
    best_s = np.full((len(q), k), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(q), k), dtype=np.int64)
    offset = 0
    for path in tgt:
        for start, y in Embeddings(path).chunks(65536):
            sims = q @ y.T  # (s, c)
            top = np.argpartition(-sims, min(k, sims.shape[1] - 1), axis=1)[:, :k]
            s = np.concatenate([best_s, np.take_along_axis(sims, top, 1)], axis=1)
            i = np.concatenate([best_i, top + offset + start], axis=1)
            keep = np.argsort(-s, axis=1, kind="stable")[:, :k]
            best_s, best_i = np.take_along_axis(s, keep, 1), np.take_along_axis(i, keep, 1)
        offset += np.load(path, mmap_mode="r").shape[0]
    found = np.mean([len(set(a) & set(e)) / k for a, e in zip(approx.tolist(), best_i.tolist())])
    hit = approx[:, 0] == best_i[:, 0]
    clear = best_s[:, 0] - best_s[:, 1] >= CLEAR  # the exact nearest stands out: a translation, not a near tie
    return {"queries": len(q), "top1": float(hit.mean()), f"at{k}": float(found),
            "clear": int(clear.sum()), "top1_clear": float(hit[clear].mean()) if clear.any() else None}


def planted_pairs(n: int, shard_size: int) -> set[tuple[int, int]]:
    """Vectors mode: the (source row, target row) pairs :func:`synthetic_vectors` planted (noisy copies),
    regenerated from the same seeds; rows are line numbers, shard j holding lines j*shard_size onwards."""
    seed, d = SYNTH["seed"], SYNTH["dim"]
    centres = np.random.default_rng(seed).normal(size=(SYNTH["clusters"], d)).astype(np.float32)
    out: set[tuple[int, int]] = set()
    for j, start in enumerate(range(0, n, shard_size)):
        m_j = min(shard_size, n - start)
        r = np.random.default_rng([seed, 2, j])
        _clustered(r, centres, m_j)  # the same draws, in the same order, as the target shard
        m = m_j // 2
        rows, copies = r.permutation(m_j)[:m], r.permutation(m_j)[:m]
        out.update(zip((start + copies).tolist(), (start + rows).tolist()))
    return out


def planted_found(run: Path, truth: set[tuple[int, int]]) -> dict:
    """How many planted pairs the pipeline's TSV holds (its lines are ``src i`` / ``tgt j``)."""
    got = set()
    with open(run / "pairs.tsv", encoding="utf-8") as f:
        for line in f:
            _, a, b = line.rstrip("\n").split("\t")
            got.add((int(a.split()[1]), int(b.split()[1])))
    return {"planted": len(truth), "found": len(truth & got), "pairs": len(got)}


# ----------------------------------------------------------------------------- modes


def write_numbered(d: Path, n: int) -> tuple[Path, Path]:
    """Vectors mode's text: ``src 0`` ... (unique lines: dedup keeps every row)."""
    for side in ("src", "tgt"):
        with open(d / f"{side}.txt", "w", encoding="utf-8") as f:
            for start in range(0, n, TEXT_CHUNK):
                f.write("".join(f"{side} {i}\n" for i in range(start, min(n, start + TEXT_CHUNK))))
    return d / "src.txt", d / "tgt.txt"


def config(args, model: Path, src: Path, tgt: Path) -> dict:
    return {"model": str(model), "src": {"lang": "en", "files": [str(src)]}, "tgt": {"lang": "fr", "files": [str(tgt)]},
            "prepare": {"shard_size": _size(args.shard_size)}, "embed": {"dtype": "float16"},
            "index": {"type": args.index, "nprobe": args.nprobe, "train_size": args.train_size},
            "mining": {"k": args.k}}


def run_mode(args, tmp: Path) -> dict:
    n = _size(args.size)
    d = tmp / f"{args.mode}-{n}"
    d.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.mode == "text":
        src, tgt = write_texts(d, n)
        model = Path(args.model) if args.model else tiny_model(d, *ENCODERS[args.encoder])
        spec = {"config": config(args, model, src, tgt), "out": str(d / "run"), "workers": args.workers}
    else:
        src, tgt = write_numbered(d, n)
        model = tiny_model(d, args.dim)  # checks languages and dimension; its vectors are replaced
        spec = {"config": config(args, model, src, tgt), "out": str(d / "run"), "workers": 1,
                "synthetic": {"dim": args.dim, "seed": 0, "clusters": max(16, n // 1000)}}
    result = {"mode": args.mode, "n": n, "setup_s": time.perf_counter() - t0,
              "input_mb": (src.stat().st_size + tgt.stat().st_size) / 2**20}
    result["pipeline"] = run_child("pipeline", spec)
    print(json.dumps({"pipeline": result["pipeline"]["wall_s"]}), file=sys.stderr, flush=True)
    if args.mode == "text" and not args.no_mine:
        index = result["pipeline"]["index"]["tgt"]  # the one the pipeline used (auto resolved)
        argv = ["--model", str(model), "--src", str(src), "--src-lang", "en", "--tgt", str(tgt), "--tgt-lang", "fr",
                "--index", index, "--nprobe", str(args.nprobe), "--k", str(args.k), "--out", str(d / "mine.tsv")]
        result["mine"] = run_child("mine", argv)
        result["ratio"] = result["pipeline"]["wall_s"] / result["mine"]["wall_s"]
        got, ref = pairs(d / "run" / "pairs.tsv"), pairs(d / "mine.tsv")
        common = got.keys() & ref.keys()
        result["pairs_mine"], result["pairs_common"] = len(ref), len(common)
        result["max_score_diff"] = max((abs(got[p] - ref[p]) for p in common), default=0.0)
    if args.recall:
        t1 = time.perf_counter()
        result["recall"] = recall(d / "run", args.recall, args.k)
        result["recall"]["seconds"] = time.perf_counter() - t1
    if args.mode == "vectors":
        SYNTH.update(spec["synthetic"])
        result["planted"] = planted_found(d / "run", planted_pairs(n, _size(args.shard_size)))
    result["run_dir_mb"] = sum(p.stat().st_size for p in (d / "run").rglob("*") if p.is_file()) / 2**20
    if not args.keep:
        shutil.rmtree(d)
    return result


def report(r: dict, args) -> str:
    p = r["pipeline"]
    import faiss

    lines = [f"mine_pipeline_scale {r['mode']} ({datetime.date.today()}; {cpu_model()}, {os.cpu_count()} cores, "
             f"faiss {faiss.__version__}; {r['n']:,} sentences per side, {p['shards']['src']} shards per side, "
             f"index {p['index']['tgt']}, nprobe {args.nprobe}, k {args.k}, float16 shards, "
             f"workers {1 if r['mode'] == 'vectors' else args.workers}; input text {r['input_mb']:.0f} MB)", "",
             "| stage | units | rows | wall s | rows/s | CPU s | peak RSS MB | disk written MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in p["stages"].items():
        label = "embed (synthetic vectors)" if name == "embed" and r["mode"] == "vectors" else name
        rate = f"{s['rows_per_s']:,.0f}" if s["rows_per_s"] else "-"
        lines.append(f"| {label} | {s['units']} | {s['rows']:,} | {s['wall_s']:.2f} | {rate} | {s['cpu_s']:.1f} | "
                     f"{s['peak_rss_mb']:.0f} | {s['disk_mb']:.1f} |")
    peak = max(s["peak_rss_mb"] for s in p["stages"].values())
    lines.append(f"| **pipeline** | | {p['pairs']:,} pairs | **{p['wall_s']:.2f}** | | {p['cpu_s']:.1f} | {peak:.0f} | "
                 f"{r['run_dir_mb']:.1f} (run dir) |")
    if "mine" in r:
        m = r["mine"]
        lines.append(f"| **xling mine --model** | | {r['pairs_mine']:,} pairs | **{m['wall_s']:.2f}** | | "
                     f"{m['cpu_s']:.1f} | {m['peak_rss_mb']:.0f} | - |")
        lines += ["", f"pipeline / xling mine wall time: **{r['ratio']:.2f}x**; pairs found by both: "
                      f"{r['pairs_common']:,} of {p['pairs']:,} / {r['pairs_mine']:,}; largest score difference on "
                      f"them: {r['max_score_diff']:.1e} (float16 shards against float32 in memory)"]
    if "recall" in r:
        rc = r["recall"]
        lines += ["", f"recall of {p['index']['tgt']} against exact search, {rc['queries']:,} sampled sources: "
                      f"top-1 {rc['top1']:.3f}, {args.k} nearest {rc[f'at{args.k}']:.3f} ({rc['seconds']:.0f} s); "
                      f"top-1 on the {rc['clear']:,} whose exact nearest is clear (cosine {CLEAR} above the 2nd): "
                      f"{rc['top1_clear']:.3f}"]
    if "planted" in r:
        pl = r["planted"]
        lines += ["", f"planted pairs (noisy copies) in the mined TSV: {pl['found']:,} of {pl['planted']:,} "
                      f"({pl['found'] / max(pl['planted'], 1):.3f}); {pl['pairs']:,} pairs mined in all"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=("text", "vectors"))
    ap.add_argument("--size", default="10k", help="sentences per side (10k, 1M, 10M)")
    ap.add_argument("--shard-size", default="100k", help="lines per shard")
    ap.add_argument("--index", default="auto", help="faiss factory string or auto (the pipeline's choice by size)")
    ap.add_argument("--nprobe", type=int, default=16)
    ap.add_argument("--train-size", type=_size,
                    help="vectors sampled to train the index (default max(100k, 64 x lists))")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--workers", type=int, default=1, help="text mode: worker processes (1 = in the child)")
    ap.add_argument("--dim", type=int, default=256, help="vectors mode: embedding dimension")
    ap.add_argument("--encoder", choices=sorted(ENCODERS), default="tiny",
                    help="text mode: the random encoder built here (tiny: 32-d; laser: LASER's shape, 1024-d)")
    ap.add_argument("--model", help="text mode: a sentence encoder directory instead of a random one")
    ap.add_argument("--no-mine", action="store_true", help="text mode: skip xling mine")
    ap.add_argument("--recall", type=int, default=2000, help="sampled queries for recall (0: skip)")
    ap.add_argument("--workdir", help="data and run directories (default: a temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the data and run directories")
    ap.add_argument("--json", help="also write every number here")
    args = ap.parse_args(argv)
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    tmp = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="mine-pipeline-scale."))
    try:
        result = run_mode(args, tmp)
    finally:
        if not args.workdir and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(report(result, args))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"args": vars(args), **result}, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        main()
