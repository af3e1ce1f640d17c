"""``xling mine-corpus``: bitext mining of large corpora, sharded and resumable.

    xling mine-corpus --config configs/mine_corpus.yaml --out runs/mine-de-en
    xling mine-corpus --config mine.yaml --out RUN --engine ray [--address HOST:PORT]
    xling mine-corpus --config mine.yaml --out RUN --set filters.min_score=1.06 --force

Stages, each unit (stage x shard) written under a temporary name, renamed, then recorded in
RUN/done/: prepare (NFC, length limits, language ID) -> dedup -> embed (float16 .npy) ->
train the index on a sample -> add shards -> merge -> k-NN both ways -> neighbour means ->
margin scores -> selection (forward / backward / intersection / max) -> extraction with
filters -> RUN/pairs.tsv (score<TAB>src<TAB>tgt, best first) and RUN/manifest.json (config,
model, counts and time per stage). A rerun skips the finished units: a killed run resumes.
A config or model that changed since the run directory's last run is refused unless
--force, which recomputes only the stages that depend on the change.
"""

from __future__ import annotations

import argparse
import sys

from xling.commands import args as A
from xling.errors import XlingError


def _summary(m: dict) -> str:
    lines = [f"{m['pairs']} pairs -> {m['output']}  ({m['sentences']['src']} x {m['sentences']['tgt']} sentences, "
             f"index {m['index']['tgt']} / {m['index']['src']}, {m['wall_seconds']:.1f} s)"]
    for name, s in m["stages"].items():
        if not s["units"]:
            continue
        rate = f"{s['rows_per_second']:.0f} rows/s" if s["rows_per_second"] else "-"
        counts = ", ".join(f"{k} {v}" for k, v in s["counts"].items() if v)
        lines.append(f"  {name:8s} {s['units']:5d} units ({s['computed']} computed)  {s['seconds']:8.1f} s  "
                     f"{rate:>14s}" + (f"  {counts}" if counts else ""))
    return "\n".join(lines)


def run(args) -> int:
    from xling.config import load_config
    from xling.mining.pipeline import MineCorpusConfig, make_executor, mine_corpus

    cfg = load_config(MineCorpusConfig, args.config, args.set)
    if args.engine == "local" and args.address:
        raise XlingError("--address joins a Ray cluster: use it with --engine ray")
    executor = make_executor(args.engine, args.workers, args.address)
    try:
        manifest = mine_corpus(cfg, args.out, executor=executor, force=args.force,
                               progress=not args.quiet and sys.stderr.isatty())
    finally:
        executor.close()
    if not args.quiet:
        print(_summary(manifest), file=sys.stderr)
    return 0


def register(sub) -> None:
    p = sub.add_parser("mine-corpus", help="mine parallel sentences from large corpora (sharded, resumable)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="YAML config (configs/mine_corpus.yaml)")
    p.add_argument("--out", required=True, type=A.out_dir, help="run directory (resumed when it holds a run)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--engine", default="local", choices=("local", "ray"),
                   help="local: processes on this machine (default); ray: a Ray cluster or a local Ray")
    p.add_argument("--workers", type=A.positive_int,
                   help="local: worker processes (default: cores, at most 8; 1 = this process); ray: CPUs of a local Ray")
    p.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    p.add_argument("--force", action="store_true", help="accept a changed config or model (recomputes what depends on it)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or summary")
    p.set_defaults(func=run)
