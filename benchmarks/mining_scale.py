"""Mining at scale: time, peak memory and recall of exact and approximate faiss indexes.

For each size (sentences per side) synthetic clustered embeddings are written to .npy
files: sources around ``n/1000`` cluster centres, half of the targets noisy copies of
sources (in shuffled order), the other half new points of the same clusters, so that
neighbourhoods are dense and approximate search has something to get wrong.

Per size and index, two fresh subprocesses (peak RSS = ``ru_maxrss`` of each):

- ``raw``: both embedding files loaded into memory and normalised (not timed), then the
  two raw faiss jobs timed: build the target index (train + add) and search the sources
  for k neighbours; build the source index and search the targets.
- ``xling``: ``xling.mining.mine_files`` end to end (chunked reads from disk, both
  searches, margin scoring, max mode, writing the TSV of row numbers).

Reported: xling time / raw time (the aim: <= 1.2x, i.e. everything but the searches
costs almost nothing) in wall-clock and in CPU seconds (all threads; steadier than wall
time on a shared machine), peak RSS of both, and for approximate indexes the recall against
Flat: the share of Flat's mined pairs also mined, and of sources whose nearest target is
Flat's (from the raw run's top-1). When Flat is not run at a size, top-1 recall is taken
against an exact numpy search of 2,000 sampled sources.

    python benchmarks/mining_scale.py --sizes 10k,100k,1M [--indexes flat,ivf,ivfpq,hnsw] [--dim 256]

Prints a markdown table for benchmarks/RESULTS.md (and ``--json FILE`` with every number).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
GEN_CHUNK = 100_000


def index_spec(name: str, n: int) -> str:
    """Factory string of an index family for n vectors (IVF lists ~ 4 sqrt(n), a power of 2)."""
    nlist = 2 ** round(math.log2(4 * math.sqrt(n)))
    return {"flat": "Flat", "ivf": f"IVF{nlist},Flat", "ivfpq": f"IVF{nlist},PQ32", "hnsw": "HNSW32"}[name]


def parse_size(s: str) -> int:
    s = s.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(s[-1], 1)
    return int(float(s[:-1] if s[-1] in "km" else s) * mult)


# ----------------------------------------------------------------------------- subprocess jobs


def job_generate(n: int, d: int, out: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(16, n // 1000), d)).astype(np.float32)  # (C, d)
    src = np.lib.format.open_memmap(out / "src.npy", mode="w+", dtype=np.float32, shape=(n, d))
    for start in range(0, n, GEN_CHUNK):
        r = np.random.default_rng([seed, 1, start])
        c = min(GEN_CHUNK, n - start)
        src[start : start + c] = centres[r.integers(0, len(centres), c)] + r.normal(size=(c, d)).astype(np.float32)
    src.flush()
    perm = rng.permutation(n)  # target row j is the copy of source perm[j] when perm[j] < n/2
    tgt = np.lib.format.open_memmap(out / "tgt.npy", mode="w+", dtype=np.float32, shape=(n, d))
    for start in range(0, n, GEN_CHUNK):
        r = np.random.default_rng([seed, 2, start])
        p = perm[start : start + GEN_CHUNK]
        block = centres[r.integers(0, len(centres), len(p))] + r.normal(size=(len(p), d)).astype(np.float32)
        copy = p < n // 2
        order = np.argsort(p[copy])
        rows = np.empty((copy.sum(), d), dtype=np.float32)
        rows[order] = src[p[copy][order]]
        block[copy] = rows + 0.35 * r.normal(size=rows.shape).astype(np.float32)
        tgt[start : start + len(p)] = block
    tgt.flush()


def job_raw(data: Path, spec: str, k: int, nprobe: int, out: Path) -> dict:
    import faiss

    from xling.mining.index import DEFAULT_EF_SEARCH, DEFAULT_TRAIN

    x = np.ascontiguousarray(np.load(data / "src.npy"), dtype=np.float32)  # (n, d)
    y = np.ascontiguousarray(np.load(data / "tgt.npy"), dtype=np.float32)
    faiss.normalize_L2(x)
    faiss.normalize_L2(y)
    t_build = t_search = 0.0
    cpu0 = time.process_time()
    top1 = None
    for queries, corpus in ((x, y), (y, x)):
        t0 = time.perf_counter()
        index = faiss.index_factory(corpus.shape[1], spec, faiss.METRIC_INNER_PRODUCT)
        ivf = faiss.try_extract_index_ivf(index)
        if not index.is_trained:
            n_train = min(len(corpus), max(DEFAULT_TRAIN, 64 * (ivf.nlist if ivf else 0)))
            index.train(corpus[np.sort(np.random.default_rng(0).choice(len(corpus), n_train, replace=False))])
        index.add(corpus)
        if ivf is not None:
            ivf.nprobe = nprobe
        if "HNSW" in spec:
            faiss.ParameterSpace().set_index_parameter(index, "efSearch", DEFAULT_EF_SEARCH)
        t1 = time.perf_counter()
        _, ids = index.search(queries, k)
        t_build += t1 - t0
        t_search += time.perf_counter() - t1
        if top1 is None:
            top1 = ids[:, 0].copy()
        del index
    cpu = time.process_time() - cpu0
    np.save(out, top1)
    return {"raw_build_s": t_build, "raw_search_s": t_search, "raw_s": t_build + t_search, "raw_cpu_s": cpu}


def job_xling(data: Path, spec: str, k: int, nprobe: int, out: Path) -> dict:
    from xling.mining import mine_files

    t0, cpu0 = time.perf_counter(), time.process_time()
    stats = mine_files(data / "src.npy", data / "tgt.npy", out, k=k, index=spec, nprobe=nprobe)
    return {"xling_s": time.perf_counter() - t0, "xling_cpu_s": time.process_time() - cpu0, "pairs": stats["pairs"]}


def job_baseline() -> dict:
    import faiss  # noqa: F401

    import xling.mining  # noqa: F401

    return {}


def child(argv: list[str]) -> None:
    job = argv[0]
    if job == "gen":
        job_generate(int(argv[1]), int(argv[2]), Path(argv[3]))
        result = {}
    elif job == "baseline":
        result = job_baseline()
    else:
        data, spec, k, nprobe, out = Path(argv[1]), argv[2], int(argv[3]), int(argv[4]), Path(argv[5])
        result = (job_raw if job == "raw" else job_xling)(data, spec, k, nprobe, out)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print("RESULT " + json.dumps(result))


def run_child(*args: object) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, __file__, "--child", *map(str, args)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"child {args[0]} failed:\n{proc.stderr[-3000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


# ----------------------------------------------------------------------------- recall


def read_pairs(path: Path) -> set[tuple[int, int]]:
    with open(path, encoding="utf-8") as f:
        return {(int(a), int(b)) for _, a, b in (line.rstrip("\n").split("\t") for line in f)}


def exact_top1_sample(data: Path, sample: np.ndarray) -> np.ndarray:
    """Exact nearest target of sampled sources, by chunked numpy over the target file."""
    from xling.mining.index import Embeddings

    q = Embeddings(data / "src.npy").take(sample)  # (s, d)
    tgt = Embeddings(data / "tgt.npy")
    best, best_sim = np.zeros(len(sample), dtype=np.int64), np.full(len(sample), -np.inf, dtype=np.float32)
    for start, y in tgt.chunks(65536):
        sims = q @ y.T  # (s, c)
        j = sims.argmax(axis=1)
        better = sims[np.arange(len(sample)), j] > best_sim
        best[better], best_sim[better] = start + j[better], sims[np.arange(len(sample)), j][better]
    return best


def machine() -> str:
    from pipeline import cpu_model

    model = cpu_model()
    import faiss

    return f"{model}, {os.cpu_count()} cores, faiss {faiss.__version__} ({faiss.omp_get_max_threads()} threads)"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10k,100k,1M", help="sentences per side, e.g. 10k,100k,1M")
    ap.add_argument("--indexes", default="flat,ivf,ivfpq,hnsw", help="flat, ivf (IVF,Flat), ivfpq (IVF,PQ32), hnsw (HNSW32)")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--nprobe", type=int, default=16)
    ap.add_argument("--workdir", help="where the synthetic .npy files go (default: a temporary directory)")
    ap.add_argument("--json", help="also write every number here")
    args = ap.parse_args(argv)
    names = [x.strip() for x in args.indexes.split(",") if x.strip()]
    base = run_child("baseline")
    rows = []
    with tempfile.TemporaryDirectory(prefix="xling-mining-bench.", dir=args.workdir) as tmp:
        for n in [parse_size(s) for s in args.sizes.split(",")]:
            data = Path(tmp) / str(n)
            data.mkdir()
            run_child("gen", n, args.dim, data)
            flat_pairs = flat_top1 = None
            for name in names:
                spec = index_spec(name, n)
                tag = name
                raw = run_child("raw", data, spec, args.k, args.nprobe, data / f"top1.{tag}.npy")
                xl = run_child("xling", data, spec, args.k, args.nprobe, data / f"pairs.{tag}.tsv")
                row = {"n": n, "index": spec, **{f"raw_{k}" if k == "peak_rss_mb" else k: v for k, v in raw.items()},
                       **{f"xling_{k}" if k == "peak_rss_mb" else k: v for k, v in xl.items()}}
                row["ratio"] = row["xling_s"] / row["raw_s"]
                row["cpu_ratio"] = row["xling_cpu_s"] / row["raw_cpu_s"]
                top1 = np.load(data / f"top1.{tag}.npy")
                pairs = read_pairs(data / f"pairs.{tag}.tsv")
                if name == "flat":
                    flat_pairs, flat_top1 = pairs, top1
                    row["pair_recall"] = row["top1_recall"] = 1.0
                elif flat_top1 is not None:
                    row["pair_recall"] = len(pairs & flat_pairs) / max(len(flat_pairs), 1)
                    row["top1_recall"] = float((top1 == flat_top1).mean())
                else:
                    sample = np.sort(np.random.default_rng(0).choice(n, min(n, 2000), replace=False))
                    row["top1_recall"] = float((top1[sample] == exact_top1_sample(data, sample)).mean())
                    row["pair_recall"] = None
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
                (data / f"pairs.{tag}.tsv").unlink()
            for f in data.iterdir():
                f.unlink()
    fmt = lambda v, p: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
    print(f"mining_scale ({datetime.date.today()}, {machine()}; d={args.dim}, k={args.k}, nprobe={args.nprobe}, "
          f"ratio margin, max mode; idle process with faiss + xling.mining: {base['peak_rss_mb']:.0f} MB)\n")
    print("| sentences / side | index | xling total s | raw faiss s (build + search) | xling / raw | "
          "CPU s xling / raw | xling peak RSS MB | raw peak RSS MB | pairs | pair recall vs Flat | top-1 recall vs exact |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['n']:,} | {r['index']} | {r['xling_s']:.2f} | {r['raw_s']:.2f} ({r['raw_build_s']:.2f} + "
              f"{r['raw_search_s']:.2f}) | {r['ratio']:.2f}x | {r['xling_cpu_s']:.1f} / {r['raw_cpu_s']:.1f} = "
              f"{r['cpu_ratio']:.2f}x | {r['xling_peak_rss_mb']:.0f} | {r['raw_peak_rss_mb']:.0f} | "
              f"{r['pairs']:,} | {fmt(r['pair_recall'], 3)} | {fmt(r['top1_recall'], 3)} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "args": vars(args), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    else:
        main()
