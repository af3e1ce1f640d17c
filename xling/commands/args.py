"""Typed command-line arguments: every number, language code and output path is checked
when the command line is parsed, before any file is read or any model is loaded.

Each function is an argparse ``type=``: it returns the converted value or raises
``argparse.ArgumentTypeError`` with one line, which :class:`Parser` prints as
``xling: error: <command>: argument --x: <problem>`` (exit 2, no usage block).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from xling.errors import XlingError
from xling.tokenization import langs as L
from xling.utils.io import check_writable


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (subcommand parsers inherit it)."""

    def error(self, message: str) -> NoReturn:
        name = self.prog.removeprefix("xling").strip()
        where = f"{name}: " if name else ""
        self.exit(2, f"xling: error: {where}{message} (see {self.prog} --help)\n")


def _typed(name: str, convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from ``convert`` (which raises XlingError / ValueError on bad text)."""

    def parse(text: str) -> Any:
        try:
            return convert(text)
        except XlingError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {name}, got {text!r}") from None

    parse.__name__ = name
    return parse


def int_at_least(minimum: int) -> Callable[[str], int]:
    """Integers >= ``minimum`` (1: positive sizes, 0: counts and seeds)."""

    def convert(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise XlingError(f"must be an integer >= {minimum}, got {text!r}")
        return value

    return _typed(f"an integer >= {minimum}", convert)


def float_in(low: float = -math.inf, high: float = math.inf, *, low_open: bool = False,
             high_open: bool = False) -> Callable[[str], float]:
    """Finite floats in [low, high] (either end open when asked); never NaN or inf."""
    lo, hi = "(" if low_open else "[", ")" if high_open else "]"
    span = "" if (low, high) == (-math.inf, math.inf) else f" in {lo}{low:g}, {high:g}{hi}"

    def convert(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise XlingError(f"must be a finite number, got {text!r}")
        if value < low or value > high or (low_open and value == low) or (high_open and value == high):
            raise XlingError(f"must be a number{span}, got {text!r}")
        return value

    return _typed(f"a number{span}", convert)


positive_int = int_at_least(1)
count = int_at_least(0)
finite_float = float_in()
fraction = float_in(0.0, 1.0, low_open=True)  # (0, 1]

lang = _typed("a language code", lambda t: L.check_lang(t, ""))
known_lang = _typed("a language code", lambda t: L.check_known_lang(t, ""))
lang_or_pair = _typed("a language code or pair", lambda t: "-".join(L.check_lang_or_pair(t, "")))
lang_list = _typed("language codes", lambda t: ",".join(L.split_codes(t, "")) if t else "")  # "" = the default


def _pairs(text: str) -> str:  # "" = the default (none given)
    items = [p.strip() for p in text.split(",") if p.strip()]
    for p in items:
        L.check_pair(p, "")
    return ",".join(items)


pair_list = _typed("language pairs like de-en,en-fr", _pairs)
out_file = _typed("an output file", lambda t: str(check_writable(t, "file")))
out_dir = _typed("an output directory", lambda t: str(check_writable(t, "dir")))


def device(name: str) -> str:
    """A torch device name (``cpu``, ``cuda``, ``cuda:1``...): checked with torch, which is
    imported only here (after parsing) so that ``--help`` stays fast."""
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise XlingError(f"--device {name!r}: not a device (cpu, cuda, cuda:1, mps ...)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise XlingError(f"--device {name}: CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise XlingError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise XlingError(f"--device {name}: MPS is not available on this machine")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise XlingError(f"--device {name!r}: xling runs on cpu, cuda or mps")
    return name


def warn(command: str, message: str) -> None:
    """One warning line for the user on stderr: ``xling <command>: <message>``."""
    print(f"xling {command}: {message}", file=sys.stderr)
