"""The generic trainer: AdamW + schedule, accumulation, clipping, checkpoints, DDP, logs.

The trainer knows no objective and no model type::

    trainer = Trainer(model, loss_fn, batches, cfg, out_dir, valid_fn=None, save_extra=None,
                      resume=False, run_config=None)
    summary = trainer.train()            # or train(stop_after=N): stop (and save) after N steps

- ``loss_fn(model, batch) -> (loss, stats)``: a scalar loss tensor and
  ``{name: tensor | float}``; a stat is a detached one-element tensor (best: it stays on the
  device) or a Python number. The trainer never reads a tensor stat, the loss or the
  gradient norm back per micro-batch: it sums them on the device (float64) and syncs only
  when it logs (every ``log_every`` updates) or checkpoints, so a loss_fn should not call
  ``.item()`` / ``float()`` on its stats either (nanoGPT's and fairseq's practice).
  ``model`` is the training model: with several ranks a DistributedDataParallel wrapper
  whose call runs the synchronised forward and whose other attributes (``lm_logits``,
  ``config``...) are the bare model's. The stat ``"tokens"`` is the number of input
  tokens of the micro-batch (summed, gives tokens/s); every other stat is averaged
  (see :mod:`xling.training.metrics`). ``"loss"``, ``"lr"`` and ``"grad_norm"`` are
  the trainer's own names; a stat with one of these names is ignored.
- ``batches``: a stateful iterator built per rank (``next``, ``state_dict()`` returning
  JSON-able data, ``load_state_dict(d)``). Tensors in the batch (also inside dicts,
  lists and tuples) are moved to the device; anything else is passed through.
- ``valid_fn(model) -> {metric: float}`` runs on rank 0 only, every ``valid_every`` steps
  and at the end, on the bare model, under ``torch.no_grad()`` and ``model.eval()``
  (train mode restored after); every global RNG is restored after it, so validation
  never changes training. Other ranks wait for it.
- ``save_extra(dir)`` adds files (model config, vocab) to each checkpoint directory.
- ``run_config``: the task's whole config (JSON-able), kept in each checkpoint; resuming
  under a different one warns in one line naming what changed (:mod:`xling.training.resume`).

Each micro-batch's loss is weighted ``1 / grad_accum``, so with equal-sized micro-batches
and a mean-reduced loss, accumulation equals one big batch. A non-finite loss is found when
the trainer next syncs (log line, validation or checkpoint; always before a checkpoint is
written): a one-line XlingError ``loss is nan at step N (found at step M)``, on every rank.
After ``train()`` the parameters' ``.grad`` hold the last update's (clipped) gradients.

Resuming (``resume=True``) restores model, optimizer, step (hence the LR schedule),
every RNG and the batch source from ``out_dir/checkpoints/latest``; a resumed run
reproduces the uninterrupted one exactly on CPU. It needs the same number of ranks.
The current config's lr schedule, betas, eps and weight decay apply after resuming.
A damaged newest checkpoint is skipped for the newest intact one (one warning line), and
temporaries of a killed writer are removed first. A fresh run refuses an ``out_dir`` that
already holds checkpoints.

SIGTERM / SIGINT during ``train()`` stop it after the current step with a checkpoint
(``"stopped": "signal"``); a second signal aborts. See :mod:`xling.training.preemption`
(exit status 128 + the signal number in the task layer).

With ``best_metric`` (a key of ``valid_fn``'s result), the weights of the best validation
are kept in ``out_dir/best`` (:mod:`xling.training.best`) and loaded back into the model when
training ends, so the final model is the best one; checkpoints keep the latest weights.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from xling.config import to_dict
from xling.errors import XlingError
from xling.training import distributed as dist
from xling.training import resume as resume_checks
from xling.training.best import BestKeeper
from xling.training.checkpoint import (
    capture_rng,
    find_latest,
    latest_intact,
    list_checkpoints,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from xling.training.metrics import TOKENS, MetricsLog, StatWindow, plot_curves
from xling.training.preemption import SIGNAL_STOP, StopSignals, signal_name
from xling.training.config import TrainerConfig, check_config, make_optimizer, resolve_device, to_device
from xling.training.schedule import lr_at
from xling.utils.io import write_json_atomic

_RESERVED = ("loss", "lr", "grad_norm")


class Trainer:
    """Trains ``model`` on ``loss_fn`` over ``batches``; see the module docstring."""

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: Callable[[Any, Any], tuple[torch.Tensor, dict[str, torch.Tensor | float]]],
        batches: Iterator[Any],
        cfg: TrainerConfig,
        out_dir: str | Path,
        valid_fn: Callable[[torch.nn.Module], dict[str, float]] | None = None,
        save_extra: Callable[[Path], None] | None = None,
        resume: bool = False,
        run_config: dict[str, Any] | None = None,
    ) -> None:
        check_config(cfg)
        self.cfg, self.loss_fn, self.batches = cfg, loss_fn, batches
        self.valid_fn, self.save_extra, self.run_config = valid_fn, save_extra, run_config
        self.signals = StopSignals()
        self.out_dir = Path(out_dir)
        self.ckpt_root = self.out_dir / "checkpoints"
        self.rank, self.world, local = dist.init_distributed()
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        self.device = resolve_device(cfg.device, local)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
            torch.backends.cudnn.allow_tf32 = cfg.tf32
        torch.manual_seed(cfg.seed + self.rank)
        self.module = model.to(self.device)  # the bare model (checkpoints, validation)
        self.params = [p for p in self.module.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.module, cfg)
        self.metrics = MetricsLog(self.out_dir / "metrics.jsonl") if dist.is_main() else None
        self.window = StatWindow()
        self.step = 0
        self.lr = lr_at(1, cfg)
        self.tokens_local = 0.0  # tokens seen by this rank, up to the last log (the window holds the rest)
        self._losses: list[tuple[int, torch.Tensor]] = []  # (step, loss) not yet checked for divergence
        self.tokens_seen = 0.0  # tokens seen by all ranks (as of the last log / checkpoint)
        self.elapsed_before = 0.0  # training seconds of earlier (interrupted) runs
        self.last_loss: float | None = None
        self.last_valid: dict[str, float] | None = None
        self.last_valid_step = -1
        if cfg.best_metric and valid_fn is None:
            raise XlingError(f"trainer best_metric={cfg.best_metric!r}: this run has no validation")
        self.best = BestKeeper(cfg.best_metric, cfg.best_mode, self.out_dir) if cfg.best_metric else None
        rank_state = self._resume() if resume else self._fresh()
        self.last_saved = self.step
        self.model = dist.wrap_model(self.module, self.device, cfg.find_unused_parameters)
        if rank_state is not None:
            self.batches.load_state_dict(rank_state["batches"])
            restore_rng(rank_state["rng"])

    # ------------------------------------------------------------------ start-up

    def _fresh(self) -> None:
        if list_checkpoints(self.ckpt_root):
            raise XlingError(
                f"{self.ckpt_root}: holds checkpoints of an earlier run; resume it "
                "(--resume) or use another output directory"
            )
        if self.metrics is not None:
            self.metrics.truncate(0)
        return None

    def _resume(self) -> dict[str, Any]:
        """Load the newest intact checkpoint; return this rank's RNG + batch-source state."""
        if dist.is_main():
            resume_checks.remove_temps(self.out_dir, self.ckpt_root)
        dist.barrier()
        path, state, skipped = latest_intact(self.ckpt_root)
        if dist.is_main():
            resume_checks.warn_skipped(skipped, path)
            resume_checks.warn_config_changes(state.get("run_config"), self.run_config, path)
        hyper = [{k: g[k] for k in ("betas", "eps", "weight_decay")}
                 for g in self.optimizer.param_groups]
        state = load_checkpoint(path, self.module, self.optimizer, state=state)
        for group, settings in zip(self.optimizer.param_groups, hyper):
            group.update(settings)  # the current config's hyperparameters win over the saved ones
        where = path / "trainer_state.json"
        try:
            ranks = state["ranks"]
            if len(ranks) != self.world:
                raise XlingError(
                    f"{where}: written by {len(ranks)} rank(s), resuming with {self.world}; "
                    "resume with the same number of processes"
                )
            self.step = int(state["step"])
            self.tokens_seen = float(state["tokens_seen"])
            self.tokens_local = float(ranks[self.rank]["tokens_seen"])
            self.elapsed_before = float(state["elapsed_s"])
            self.last_loss = state.get("loss")
            self.last_valid = state.get("valid")
            self.last_valid_step = int(state.get("valid_step", -1))
            if self.best is not None:
                self.best.load_state(state.get("best"))
            mine = {"batches": ranks[self.rank]["batches"], "rng": ranks[self.rank]["rng"]}
        except (KeyError, TypeError, ValueError) as e:
            problem = f"{type(e).__name__}: {e}"
            raise XlingError(f"{where}: malformed trainer state ({problem})") from None
        self.lr = lr_at(self.step + 1, self.cfg)
        if self.metrics is not None:
            self.metrics.truncate(self.step)
        return mine

    # ------------------------------------------------------------------ training

    def _elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self._run_start

    def _autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.cfg.dtype == "bfloat16"
        )

    def _next_batch(self) -> Any:
        try:
            return to_device(next(self.batches), self.device)
        except StopIteration:
            raise XlingError(f"batch source exhausted at step {self.step + 1}") from None

    def _update(self) -> None:
        """One optimizer update over ``grad_accum`` micro-batches."""
        cfg = self.cfg
        self.lr = lr_at(self.step + 1, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        self.optimizer.zero_grad(set_to_none=True)
        if hasattr(self.batches, "set_step"):  # a batch source whose mixture follows the update count
            self.batches.set_step(self.step + 1)
        total: torch.Tensor | None = None  # summed micro-batch losses, float64, on the device
        for i in range(cfg.grad_accum):
            batch = self._next_batch()
            last = i == cfg.grad_accum - 1
            sync = contextlib.nullcontext() if last or self.world == 1 else self.model.no_sync()
            with sync:
                with self._autocast():
                    loss, stats = self.loss_fn(self.model, batch)
                (loss / cfg.grad_accum).backward()
            value = loss.detach().reshape(()).to(torch.float64)  # no host sync (see _divergence)
            total = value if total is None else total + value
            self.window.add({k: v for k, v in stats.items() if k not in _RESERVED})
        step_stats = {"loss": total / cfg.grad_accum}
        self._losses.append((self.step + 1, step_stats["loss"]))
        if cfg.clip_norm > 0:  # the norm stays a tensor
            step_stats["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.params, cfg.clip_norm)
        self.optimizer.step()
        self.window.add(step_stats)
        self.step += 1

    def _stop_reason(self, stop_after: int | None, start_step: int) -> str | None:
        if self.step >= self.cfg.max_steps:
            return "max_steps"
        if stop_after is not None and self.step >= stop_after:
            return "stop_after"
        used = (self.cfg.max_minutes is not None and self.step > start_step
                and time.perf_counter() - self._run_start >= self.cfg.max_minutes * 60)
        signalled, used = dist.any_true_each([self.signals.requested, used])  # all ranks agree
        return SIGNAL_STOP if signalled else "max_minutes" if used else None

    def train(self, stop_after: int | None = None) -> dict[str, Any]:
        """Train until ``max_steps`` (or ``stop_after`` steps, or ``max_minutes``, or a
        signal: see :mod:`xling.training.preemption`).

        Logs every ``log_every`` updates, validates every ``valid_every``, saves every
        ``save_every``; at the end flushes the log, validates, saves a checkpoint,
        plots the curves and writes ``out_dir/summary.json``. Returns the summary.
        """
        self.signals.at_step(self.step)
        with self.signals:  # SIGTERM / SIGINT handlers only while training
            return self._train(stop_after)

    def _train(self, stop_after: int | None) -> dict[str, Any]:
        cfg = self.cfg
        self._run_start = time.perf_counter()
        self._window_start, self._pause = self._run_start, 0.0
        start_step, start_tokens = self.step, self.tokens_seen
        self.module.train()
        bar = tqdm(
            total=cfg.max_steps, initial=self.step, desc="train", dynamic_ncols=True,
            disable=not (cfg.progress and dist.is_main()),
        )
        while (reason := self._stop_reason(stop_after, start_step)) is None:
            self.signals.at_step(self.step)
            self._update()
            bar.update(1)
            if self.step % cfg.log_every == 0:
                self._log(bar)
            if self.valid_fn is not None and cfg.valid_every and self.step % cfg.valid_every == 0:
                self._validate()
            if cfg.save_every and self.step % cfg.save_every == 0:
                self._save()
        bar.close()
        if not self.window.empty():
            self._log(None)
        signalled = reason == SIGNAL_STOP  # not finished: no final validation, no best restore
        if self.valid_fn is not None and self.last_valid_step != self.step and not signalled:
            self._validate()
        if self.step > self.last_saved:
            self._save()
        if self.best is not None and reason not in ("stop_after", SIGNAL_STOP):  # the final model is the best one
            dist.barrier()
            self.best.restore(self.module)
        run_s = time.perf_counter() - self._run_start
        summary = {
            "steps": self.step,
            "stopped": reason,
            "final_loss": self.last_loss,
            "elapsed_s": round(self._elapsed(), 3),
            "tokens_seen": int(self.tokens_seen),
            "tokens_per_s": (self.tokens_seen - start_tokens) / run_s if run_s > 0 else None,
            "valid": self.last_valid,
            "checkpoint": str(find_latest(self.ckpt_root)) if self.step > 0 else None,
        }
        if self.best is not None:
            summary["best"] = self.best.state()
        if signalled:  # the first rank's signal (a rank may have seen none)
            summary["signal"] = signal_name(next(n for n in dist.all_gather_json(self.signals.signum) if n))
        self.elapsed_before = self._elapsed()  # a later train() call continues the clock
        if dist.is_main():
            if self.metrics.path.exists():
                plot_curves(self.metrics.path, self.out_dir / "curves.png")
            write_json_atomic(self.out_dir / "summary.json", summary)
        return summary

    # ------------------------------------------------- logging, validation, saving

    def _divergence(self, window_loss: float | None = None) -> list | None:
        """``[step, loss]`` of this rank's first non-finite loss since the last check, or None.

        One host sync, none when ``window_loss`` (the sum of the window's step losses, read at
        log time; the unchecked steps are in the window) is finite."""
        losses, self._losses = self._losses, []
        if not losses or (window_loss is not None and math.isfinite(window_loss)):
            return None
        values = torch.stack([v for _, v in losses])  # (S,) float64
        bad = ~torch.isfinite(values)
        if not bool(bad.any()):
            return None
        i = int(bad.nonzero()[0, 0])
        return [losses[i][0], float(values[i])]

    def _raise_if_diverged(self, found: list) -> None:
        """Raise on every rank when any rank's :meth:`_divergence` found a non-finite loss."""
        found = [d for d in found if d is not None]
        if found:
            step, value = min(found, key=lambda d: d[0])
            seen = f" (found at step {self.step})" if step != self.step else ""
            raise XlingError(
                f"loss is {value} at step {step}{seen}: training diverged "
                "(lower lr, longer warmup_steps or clip_norm)"
            )

    def _check_divergence(self) -> None:
        """Check the losses since the last log (before validating or saving between logs)."""
        if self._losses:  # the same on every rank (same steps)
            self._raise_if_diverged(dist.all_gather_json(self._divergence()))

    def _log(self, bar: tqdm | None) -> None:
        """Write one metrics line with the window's averages over all ranks."""
        window = self.window.to_json()  # the window's one host sync
        tokens_local = self.tokens_local + window["sums"].get(TOKENS, 0.0)
        diverged = self._divergence(window["sums"].get("loss"))
        parts = dist.all_gather_json({"window": window, "tokens": tokens_local, "diverged": diverged})
        self._raise_if_diverged([p["diverged"] for p in parts])
        self.tokens_local = tokens_local
        now = time.perf_counter()
        stats, tokens = StatWindow.merge([p["window"] for p in parts])
        self.tokens_seen = sum(p["tokens"] for p in parts)
        self.last_loss = stats.pop("loss")
        record: dict[str, Any] = {"step": self.step, "lr": self.lr, "loss": self.last_loss}
        if "grad_norm" in stats:
            record["grad_norm"] = stats.pop("grad_norm")
        record.update(sorted(stats.items()))
        seconds = now - self._window_start - self._pause
        if tokens > 0 and seconds > 0:
            record["tokens_per_s"] = tokens / seconds
        record["tokens_seen"] = int(self.tokens_seen)
        record["elapsed_s"] = round(self._elapsed(), 3)
        if self.metrics is not None:
            self.metrics.append(record)
        if bar is not None:
            postfix = {"loss": f"{self.last_loss:.4f}", "lr": f"{self.lr:.2e}"}
            if "tokens_per_s" in record:
                postfix["tok/s"] = f"{record['tokens_per_s']:.0f}"
            bar.set_postfix(postfix, refresh=False)
        self.window.reset()
        self._window_start, self._pause = now, 0.0

    def _validate(self) -> None:
        """Run ``valid_fn`` on rank 0 (eval mode, no grad, RNG untouched) and log it."""
        self._check_divergence()
        start = time.perf_counter()
        metrics = None
        if dist.is_main():
            rng = capture_rng()
            was_training = self.module.training
            self.module.eval()
            try:
                with torch.no_grad(), self._autocast():
                    metrics = {k: float(v) for k, v in self.valid_fn(self.module).items()}
            finally:
                self.module.train(was_training)
                restore_rng(rng)
            elapsed = round(self._elapsed(), 3)
            record = {"step": self.step, "split": "valid", **metrics, "elapsed_s": elapsed}
            self.metrics.append(record)
            plot_curves(self.metrics.path, self.out_dir / "curves.png")
        self.last_valid = dist.all_gather_json(metrics)[0]
        self.last_valid_step = self.step
        if self.best is not None:  # every rank tracks it, rank 0 writes the weights
            self.best.update(self.last_valid, self.step, self.module, save=dist.is_main())
        self._pause += time.perf_counter() - start

    def _save(self) -> None:
        """Checkpoint (all ranks contribute RNG + batch state; rank 0 writes)."""
        start = time.perf_counter()
        pending = self.window.sums.get(TOKENS, 0.0)  # tokens of the window not yet logged
        mine = {
            "rng": capture_rng(),
            "batches": self.batches.state_dict(),
            "tokens_seen": self.tokens_local + float(pending),
            "diverged": self._divergence(),
        }
        ranks = dist.all_gather_json(mine)
        self._raise_if_diverged([r.pop("diverged") for r in ranks])  # before anything is written
        self.tokens_seen = sum(r["tokens_seen"] for r in ranks)
        if dist.is_main():
            state = {
                "tokens_seen": self.tokens_seen,
                "elapsed_s": self._elapsed(),
                "loss": self.last_loss,
                "valid": self.last_valid,
                "valid_step": self.last_valid_step,
                "best": self.best.state() if self.best is not None else None,
                "world_size": self.world,
                "ranks": ranks,
                "config": to_dict(self.cfg),
                "run_config": self.run_config,
            }
            save_checkpoint(
                self.ckpt_root, self.step, self.module, self.optimizer, state,
                self.save_extra, self.cfg.keep_checkpoints,
            )
        dist.barrier()
        self.last_saved = self.step
        self._pause += time.perf_counter() - start
