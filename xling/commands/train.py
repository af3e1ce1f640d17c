"""``xling train``: pretraining from a YAML config.

    xling train --config configs/quickstart.yaml --out runs/x [--set trainer.lr=3e-4 ...] [--resume]

Runs on one process, or on several under ``torchrun --nproc_per_node N``.
"""

from __future__ import annotations

import json

from xling.commands import args as A


def run(args) -> int:
    from xling.config import load_config
    from xling.tasks.pretrain import PretrainConfig, run_pretraining

    cfg = load_config(PretrainConfig, args.config, args.set)
    summary = run_pretraining(cfg, args.out, resume=args.resume)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def register(sub) -> None:
    p = sub.add_parser("train", help="pretrain an encoder (MLM / TLM / CLM) from a YAML config")
    p.add_argument("--config", required=True, help="YAML config (see configs/)")
    p.add_argument("--out", required=True, type=A.out_dir, help="run directory: checkpoints, metrics, final model")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field, e.g. trainer.lr=3e-4")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's latest checkpoint")
    p.set_defaults(func=run)
