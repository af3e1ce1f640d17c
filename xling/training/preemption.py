"""Preemption-safe training: SIGTERM / SIGINT stop the run cleanly at a step boundary.

While :meth:`xling.training.trainer.Trainer.train` runs, :class:`StopSignals` replaces the
handlers of SIGTERM (what schedulers such as SLURM or Kubernetes send before killing a job)
and SIGINT (Ctrl-C); the previous handlers are restored when ``train()`` returns or raises.

- The first signal only sets a flag (rank 0 prints one line saying it was received). The
  trainer finishes the optimizer step in progress (and a validation already running), then
  all ranks agree on stopping at the same step (one all-reduce per step,
  :func:`xling.training.distributed.any_true_each`), write a checkpoint and return a summary
  with ``"stopped": "signal"`` and ``"signal": "SIGTERM"`` (or ``"SIGINT"``). No final
  validation and no best-weights restore happen then: the run is not finished, and
  ``--resume`` continues it exactly as if it had never stopped.
- A second signal while stopping aborts at once (:class:`Stopped` raised from the handler,
  ``aborted=True``): temporaries are removed by the atomic writers, nothing new is saved, and
  ``--resume`` starts from the last complete checkpoint. Signals within
  :data:`REPEAT_WINDOW_S` of the first count as that one: launchers forward what they get
  (torchrun passes SIGTERM / Ctrl-C's SIGINT on to workers that already got it from the
  terminal or from ``scancel``), and a forwarded copy must not turn a clean stop into an abort.
  (torchrun then SIGKILLs its workers 30 s later: a step plus a checkpoint must fit in that.)

Exit status rule (the shell convention for a process ended by a signal): **128 + the signal
number**, i.e. **143 for SIGTERM and 130 for SIGINT**, for a clean stop and for an abort alike.
The task layer (``xling train``, ``xling classify train``) calls :func:`raise_if_stopped`
after ``train()``: it prints one line on rank 0, e.g.
``xling: stopped by SIGTERM at step 37; checkpoint saved, continue with --resume``, skips the
final model and raises :class:`Stopped`, a :class:`SystemExit` carrying that status, which
unwinds to the interpreter (like ``KeyboardInterrupt`` would) so every rank exits with it.
Code driving :class:`~xling.training.trainer.Trainer` directly just reads the summary.
Handlers are only installed from the main thread (Python's rule); elsewhere signals keep
their previous behaviour.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from types import FrameType
from typing import Any



def _is_main() -> bool:
    from xling.training import distributed as dist  # lazy: torch, and cli imports Stopped

    return dist.is_main()

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)
SIGNAL_STOP = "signal"  # the summary's "stopped" reason
REPEAT_WINDOW_S = 2.0  # a signal this soon after the first is the same one, forwarded


def exit_status(signum: int) -> int:
    """The process exit status after stopping for ``signum``: 128 + its number."""
    return 128 + int(signum)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class Stopped(SystemExit):
    """Training stopped by a signal; ``code`` is :func:`exit_status`, ``str()`` the message."""

    def __init__(self, signum: int, step: int, message: str, aborted: bool = False) -> None:
        super().__init__(exit_status(signum))
        self.signum, self.step, self.message, self.aborted = signum, step, message, aborted

    def __str__(self) -> str:
        return self.message


class StopSignals:
    """Context manager: records the first SIGTERM / SIGINT, aborts on the second."""

    def __init__(self, signals: tuple[int, ...] = SIGNALS) -> None:
        self.signals = signals
        self.signum: int | None = None  # the first signal received, None until then
        self._first_at = 0.0  # time.monotonic() of the first signal
        self.step = 0  # the step counter at the last :meth:`at_step` (for the messages)
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def at_step(self, step: int) -> None:
        self.step = step

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # os.write, not logging: a handler may interrupt a write to the buffered sys.stderr
        name = signal_name(signum)
        if self.signum is None:
            self.signum, self._first_at = signum, time.monotonic()
            if _is_main():
                os.write(2, f"xling: {name} received: stopping after step {self.step + 1} with a "
                            f"checkpoint (send it again to abort without saving)\n".encode())
            return
        if time.monotonic() - self._first_at < REPEAT_WINDOW_S:
            return  # the first signal, forwarded by a launcher
        message = (f"xling: second {name}: aborted without saving at step {self.step}; "
                   "--resume continues from the last complete checkpoint")
        if _is_main():
            os.write(2, (message + "\n").encode())
        raise Stopped(signum, self.step, message, aborted=True)

    def __enter__(self) -> "StopSignals":
        self.signum = None
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()


def stop_message(summary: dict[str, Any]) -> str | None:
    """The one-line message of a summary stopped by a signal (None otherwise)."""
    if summary.get("stopped") != SIGNAL_STOP:
        return None
    where = f"xling: stopped by {summary.get('signal', 'a signal')} at step {summary.get('steps')}"
    if summary.get("checkpoint"):
        return f"{where}; checkpoint saved, continue with --resume"
    return f"{where}; no checkpoint yet, start the run again"


def raise_if_stopped(summary: dict[str, Any]) -> None:
    """After ``Trainer.train()``: on a signal stop print the message (rank 0) and raise
    :class:`Stopped` with exit status 128 + the signal number; otherwise return."""
    message = stop_message(summary)
    if message is None:
        return
    if _is_main():
        log.warning(message)
    signum = int(signal.Signals[summary["signal"]]) if summary.get("signal") else signal.SIGTERM
    raise Stopped(signum, int(summary.get("steps") or 0), message)
