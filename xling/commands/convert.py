"""``xling convert``: other toolkits' checkpoints to xling models and back, one FORMAT per converter
module in ``xling/convert/`` (the registry: :mod:`xling.convert.registry`).

    xling convert --list                                   # the formats, one per line
    xling convert FORMAT --input PATH --out DIR [...]      # the format's options: xling convert FORMAT --help
"""

from __future__ import annotations

import argparse

from xling.commands import args as A
from xling.errors import XlingError


def _no_format(text: str) -> str:
    """FORMAT while no converter is registered: every name is unknown."""
    from xling.convert.registry import unknown_format

    raise argparse.ArgumentTypeError(str(unknown_format(text, [])))


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``convert`` with one sub-command per registered format."""
    from xling.convert.registry import converters

    known = converters()
    p = subparsers.add_parser(
        "convert", help="convert checkpoints between xling and other toolkits (fairseq, XLM, LASER)",
        description="Convert a checkpoint of another toolkit into an xling model directory, or an xling "
                    "model into another toolkit's files. Pickled checkpoints are read without running code "
                    "(torch weights_only with an allow-list of harmless globals).")
    p.add_argument("--list", action="store_true", help="print the formats and exit")
    p.set_defaults(func=run_list)
    if not known:  # argparse would say "choose from" nothing
        p.add_argument("format", nargs="?", metavar="FORMAT", type=_no_format, help="no formats are available yet")
        return
    formats = p.add_subparsers(dest="format", metavar="FORMAT")
    for c in known.values():
        f = formats.add_parser(c.name, help=c.help, description=c.help)
        f.add_argument("--input", required=True, metavar="PATH", help=c.input_help)
        f.add_argument("--out", required=True, metavar="DIR", type=A.out_dir, help=c.out_help)
        c.add_arguments(f)
        f.set_defaults(func=c.run)


def format_list() -> list[str]:
    """One line per format: its name and what it converts."""
    from xling.convert.registry import converters

    known = converters()
    if not known:
        return ["no formats are available yet"]
    width = max(len(n) for n in known)
    return [f"{name:<{width}}  {c.help}" for name, c in known.items()]


def run_list(args: argparse.Namespace) -> int:
    """``xling convert --list``; without --list and without a FORMAT, a one-line error."""
    if not args.list:
        raise XlingError("convert: name a FORMAT (xling convert --list shows them)")
    for line in format_list():
        print(line)
    return 0
