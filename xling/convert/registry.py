"""The converter registry: every ``xling convert FORMAT`` declared once, in its own module.

A format's module (``xling/convert/<format>.py``) builds a :class:`Converter` and calls
:func:`register_converter` at import; ``xling/convert/__init__.py`` imports the modules (one line
per module), so the registry is complete whenever :func:`converters` is asked. The command
(``xling/commands/convert.py``) gives every format a sub-command with ``--input`` and ``--out``
and lets the converter add its own options::

    register_converter(Converter(
        name="fairseq", help="fairseq transformer checkpoint -> xling model directory",
        add_arguments=lambda p: p.add_argument("--dict", required=True, help="dict.txt of the model"),
        run=convert_fairseq))            # run(args): reads args.input, writes args.out (atomic_dir)

Converter modules are imported to build the command line: they import torch and other heavy
packages inside their functions, not at the top.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from xling.errors import XlingError, unknown


def _no_options(parser: argparse.ArgumentParser) -> None:
    """A format with only --input and --out."""


@dataclass(frozen=True)
class Converter:
    name: str  # FORMAT on the command line: xling convert <name> --input PATH --out DIR
    help: str  # one line: what it reads and writes (--list, --help)
    run: Callable[[argparse.Namespace], int | None]  # reads args.input, writes args.out (through xling.utils.io)
    add_arguments: Callable[[argparse.ArgumentParser], None] = _no_options  # the format's own options
    input_help: str = "the checkpoint to convert"  # what --input names
    out_help: str = "output directory (replaced as a whole)"  # what --out receives

    def __post_init__(self) -> None:
        if not self.name or self.name.startswith("-") or " " in self.name:
            raise ValueError(f"converter name {self.name!r}: a single word, the FORMAT on the command line")


_CONVERTERS: dict[str, Converter] = {}


def register_converter(converter: Converter) -> Converter:
    """Add ``converter`` to the registry (a name is registered once)."""
    if _CONVERTERS.setdefault(converter.name, converter) is not converter:
        raise ValueError(f"converter {converter.name!r} is registered twice")
    return converter


def converters() -> dict[str, Converter]:
    """Every registered converter, by name (importing the modules that register them)."""
    import xling.convert  # noqa: F401  (its __init__ imports every format's module)

    return dict(sorted(_CONVERTERS.items()))


def converter(name: str) -> Converter:
    """The converter called ``name``; an unknown one is an XlingError naming the known ones."""
    known = converters()
    if name not in known:
        raise unknown_format(name, known)
    return known[name]


def unknown_format(name: str, known: Iterable[str]) -> XlingError:
    """The one-line error for an unknown FORMAT: the nearest or all known formats."""
    known = list(known)
    if not known:
        return XlingError(f"unknown convert format {name!r}; no formats are available yet")
    return unknown("convert format", name, known)
