"""User-facing errors.

Anything a user can cause (bad file, unknown language, bad config key, corrupt
checkpoint) raises :class:`XlingError` with a one-line message naming the problem.
The CLI prints ``xling: error: <message>`` and exits with status 2, no traceback.
Programming errors stay ordinary exceptions so they keep their traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class XlingError(Exception):
    """An error caused by user input; its message is shown as one line."""


def nearest(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """The closest valid names to ``name`` (for 'did you mean' hints)."""
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    return close


def unknown(kind: str, name: str, choices: Iterable[str]) -> XlingError:
    """An error for an unknown key / language / option, with the nearest valid ones."""
    choices = sorted(set(choices))
    hint = nearest(name, choices)
    if hint:
        tail = f"; did you mean {', '.join(repr(h) for h in hint)}?"
    else:
        shown = ", ".join(choices[:40]) + (" ..." if len(choices) > 40 else "")
        tail = f"; valid: {shown}"
    return XlingError(f"unknown {kind} {name!r}{tail}")
