"""``xling export``: xling models for inference outside xling, one FORMAT per sub-command.

    xling export onnx --model DIR --out DIR [--int8] [--quiet]

``onnx`` (:mod:`xling.export.onnx`; needs ``pip install "xling[onnx]"``): a sentence embedder
(BiLSTM or transformer) or a frozen-embedding classifier on one, as ``model.onnx`` with its
vocabulary, ``onnx_config.json`` and a README of its inputs and outputs. ``--int8``: dynamic
quantization (int8 weights). The output directory is written whole under a temporary name and
renamed into place; ``--model OUT`` then works in ``xling embed`` / ``xling mine``.
"""

from __future__ import annotations

import argparse
import sys

from xling.commands import args as A
from xling.errors import XlingError


def run_onnx(args: argparse.Namespace) -> int:
    from xling.export.onnx import export_onnx

    cfg = export_onnx(args.model, args.out, int8=args.int8)
    if not args.quiet:
        what = "sentence encoder" if cfg["kind"] == "sentence_encoder" else "frozen classifier"
        weights = "int8" if args.int8 else "float32"
        print(f"xling export onnx: {what} ({cfg['encoder']}, {cfg['dim']}-d, {weights}) -> {args.out} "
              f"(onnxruntime vs PyTorch: max |diff| {cfg['check']['max_abs_diff']:.2g})", file=sys.stderr)
    return 0


def run_none(args: argparse.Namespace) -> int:
    raise XlingError("export: name a FORMAT (onnx): xling export onnx --model DIR --out DIR")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export a model for inference outside xling (ONNX)",
                              description="Export an xling model for inference outside xling.")
    p.set_defaults(func=run_none)
    formats = p.add_subparsers(dest="format", metavar="FORMAT")
    o = formats.add_parser(
        "onnx", help="a sentence encoder or frozen-embedding classifier as an ONNX graph (onnxruntime)",
        description="Export a sentence embedder (BiLSTM or transformer) or a frozen-embedding classifier on one "
                    "to ONNX: model.onnx, the vocabulary, onnx_config.json and a README of the inputs and outputs. "
                    'Needs pip install "xling[onnx]".')
    o.add_argument("--model", required=True, metavar="DIR",
                   help="an xling sentence embedder directory, or a frozen classifier directory (xling classify train)")
    o.add_argument("--out", required=True, metavar="DIR", type=A.out_dir, help="the exported directory (replaced whole)")
    o.add_argument("--int8", action="store_true",
                   help="dynamic int8 quantization of the weights (onnxruntime.quantization.quantize_dynamic)")
    o.add_argument("--quiet", action="store_true", help="no summary line")
    o.set_defaults(func=run_onnx)
