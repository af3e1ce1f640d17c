"""The ``xling`` command: thin subcommands over the library.

Each subcommand lives in ``xling/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (a callable
taking the parsed args and returning an exit code or None). User errors
(:class:`xling.errors.XlingError`) and malformed arguments print one line and exit 2.
"""

from __future__ import annotations

import importlib
import os
import sys

from xling import __version__
from xling.commands.args import Parser
from xling.errors import XlingError
from xling.training.preemption import Stopped

COMMANDS = ["corpus", "vocab", "train", "evaluate", "generate", "embed", "mine", "mine_corpus", "classify", "convert", "export"]  # modules; "generate" adds translate + generate; missing ones are skipped


def build_parser() -> Parser:
    parser = Parser(prog="xling", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"xling {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"xling.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"xling.commands.{name}":
                continue  # not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # a malformed command line (one line printed), --help or --version
        return e.code if isinstance(e.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except XlingError as e:
        print(f"xling: error: {e}", file=sys.stderr)
        return 2
    except Stopped as e:  # training stopped by SIGTERM / SIGINT after a checkpoint (message already said)
        return int(e.code)
    except KeyboardInterrupt:
        print("xling: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a reader that stopped (e.g. `| head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit flush
        return 141
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
