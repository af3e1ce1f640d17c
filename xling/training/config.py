"""The trainer's settings (:class:`TrainerConfig`, the ``trainer`` section of a config) and the
pieces it sets up from them: device, optimizer, moving batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from xling.errors import XlingError, unknown
from xling.training.best import MODES as BEST_MODES
from xling.training.schedule import check_schedule

DTYPES = ("float32", "bfloat16")


@dataclass
class TrainerConfig:
    """Optimisation, schedule, logging and checkpointing settings of :class:`Trainer`."""

    lr: float = 5e-4  # peak learning rate, reached at the end of warmup
    betas: tuple[float, float] = (0.9, 0.98)  # AdamW moment decay rates
    eps: float = 1e-6  # AdamW denominator epsilon
    weight_decay: float = 0.01  # decoupled weight decay; never on 1-D params (biases, norms)
    warmup_steps: int = 1000  # updates of linear warmup from 0 to lr
    max_steps: int = 100_000  # total optimizer updates; the schedule is laid out over them
    max_minutes: float | None = None  # wall-clock budget of one train() call; then save and stop
    schedule: str = "linear"  # linear (to 0 at max_steps) | cosine | inverse_sqrt | constant
    grad_accum: int = 1  # micro-batches per optimizer update
    clip_norm: float = 1.0  # max global gradient L2 norm; 0 = no clipping
    log_every: int = 50  # updates between metrics.jsonl lines (averages over the window)
    valid_every: int = 1000  # updates between validations (0 = only at the end)
    save_every: int = 1000  # updates between checkpoints (0 = only at the end)
    keep_checkpoints: int = 2  # most recent checkpoints kept on disk (0 = keep all)
    best_metric: str | None = None  # validation metric (e.g. ce/avg) whose best value picks the final model; None = last
    best_mode: str = "min"  # min | max: whether a lower or a higher best_metric is better
    seed: int = 0  # torch seed for dropout etc.; rank r uses seed + r
    dtype: str = "float32"  # float32 | bfloat16 (autocast; weights and optimizer stay float32)
    device: str = "auto"  # auto (cuda if available, else cpu) | cpu | cuda | cuda:N
    num_threads: int | None = None  # torch CPU threads (None = torch's default)
    tf32: bool = True  # on CUDA: TensorFloat-32 matmuls and convolutions (float32 weights kept)
    progress: bool = True  # tqdm progress bar on rank 0
    find_unused_parameters: bool = False  # DDP: allow params without gradient in a step (slower)


def check_config(cfg: TrainerConfig) -> None:
    """Raise XlingError for an invalid trainer configuration."""
    check_schedule(cfg)
    if cfg.dtype not in DTYPES:
        raise unknown("dtype", cfg.dtype, DTYPES)
    for name in ("grad_accum", "log_every"):
        if getattr(cfg, name) < 1:
            raise XlingError(f"trainer {name}={getattr(cfg, name)}: must be >= 1")
    for name in ("valid_every", "save_every", "keep_checkpoints", "clip_norm", "lr"):
        if getattr(cfg, name) < 0:
            raise XlingError(f"trainer {name}={getattr(cfg, name)}: must be >= 0")
    if cfg.best_mode not in BEST_MODES:
        raise unknown("best_mode", cfg.best_mode, BEST_MODES)
    if cfg.max_minutes is not None and cfg.max_minutes <= 0:
        raise XlingError(f"trainer max_minutes={cfg.max_minutes}: must be > 0 (or null)")


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> this rank's GPU if CUDA is available, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise XlingError(f"device {name!r}: not a torch device (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise XlingError(f"device {name!r}: CUDA is not available on this machine")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def to_device(batch: Any, device: torch.device) -> Any:
    """Move the tensors in ``batch`` (nested dicts, lists, tuples) to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def make_optimizer(model: torch.nn.Module, cfg: TrainerConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases / norm weights)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)
