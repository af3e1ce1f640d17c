"""``xling train``: train any model type (encoder, seq2seq, sentence embedder) from a YAML config.

    xling train --config configs/quickstart.yaml --out runs/x [--set trainer.lr=3e-4 ...] [--resume]

Runs on one process, or on several under ``torchrun --nproc_per_node N``.
"""

from __future__ import annotations

import json

from xling.commands import args as A


def run(args) -> int:
    from xling.config import load_config
    from xling.tasks.train import TrainConfig, run_training

    cfg = load_config(TrainConfig, args.config, args.set)
    summary = run_training(cfg, args.out, resume=args.resume)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def register(sub) -> None:
    p = sub.add_parser("train", help="pretrain or fine-tune a model (XLM, MASS, UNILM, translation, LASER) from a YAML config")
    p.add_argument("--config", required=True, help="YAML config (see configs/)")
    p.add_argument("--out", required=True, type=A.out_dir, help="run directory: checkpoints, metrics, final model")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field, e.g. trainer.lr=3e-4")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's latest checkpoint")
    p.set_defaults(func=run)
