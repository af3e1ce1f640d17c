"""Toy model and batch source for the trainer tests, and the worker test_ddp launches.

Worker usage (one process per rank)::

    python -m torch.distributed.run --nproc_per_node 2 tests/training/ddp_worker.py OUT [signal]

Each rank trains the toy model on its own shard of every global batch through the
Trainer (gloo, CPU), then writes its final parameters to ``OUT/rank{r}.safetensors``.
With ``signal``, rank 1 alone sends itself SIGTERM during step 2 of 6, and each rank
writes its summary to ``OUT/summary{r}.json`` (the ranks must agree on the stop step).
The test modules import the toy pieces from here, so they exist only once.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

DIM_IN, DIM_HIDDEN, DIM_OUT = 6, 16, 3
_TARGET = np.random.default_rng(1234).standard_normal((DIM_IN, DIM_OUT)).astype(np.float32)


class ToyModel(nn.Module):
    """Linear -> LayerNorm -> ReLU -> Dropout -> Linear, initialised from ``seed``."""

    def __init__(self, dropout: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.inp = nn.Linear(DIM_IN, DIM_HIDDEN)
            self.norm = nn.LayerNorm(DIM_HIDDEN)
            self.drop = nn.Dropout(dropout)
            self.out = nn.Linear(DIM_HIDDEN, DIM_OUT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, DIM_IN) -> (B, DIM_OUT)
        return self.out(self.drop(torch.relu(self.norm(self.inp(x)))))


class ToyBatches:
    """Stateful batch source: Gaussian inputs, targets ``tanh(x @ W)`` for a fixed W.

    Every call draws a global batch of ``batch_size`` rows and returns the
    contiguous chunk of rank ``rank`` among ``world``. Its whole state is the
    NumPy generator's (JSON-able) bit-generator state.
    """

    def __init__(self, seed: int = 0, batch_size: int = 8, rank: int = 0, world: int = 1,
                 task: str = "toy") -> None:
        self.rng = np.random.default_rng(seed)
        self.batch_size, self.rank, self.world, self.task = batch_size, rank, world, task
        self.drawn = 0  # batches handed out (for tests)

    def __iter__(self) -> "ToyBatches":
        return self

    def __next__(self) -> dict:
        x = self.rng.standard_normal((self.batch_size, DIM_IN)).astype(np.float32)
        chunk = self.batch_size // self.world
        x = x[self.rank * chunk:(self.rank + 1) * chunk]
        self.drawn += 1
        return {"x": torch.from_numpy(x), "y": torch.from_numpy(np.tanh(x @ _TARGET)),
                "task": self.task}

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


def mse_loss(model, batch: dict) -> tuple[torch.Tensor, dict]:
    """Mean squared error; reports a per-task loss and the batch's row count as tokens."""
    loss = nn.functional.mse_loss(model(batch["x"]), batch["y"])
    return loss, {f"loss/{batch['task']}": loss.item(), "tokens": batch["x"].shape[0]}


def ddp_config():
    """Trainer settings shared by the DDP worker and the single-process reference."""
    from xling.training.trainer import TrainerConfig

    return TrainerConfig(lr=0.05, warmup_steps=0, max_steps=3, schedule="constant",
                         clip_norm=1.0, log_every=1, valid_every=0, save_every=0,
                         num_threads=1, progress=False, device="cpu")


def signal_on_call(signum: int, calls: set[int], loss_fn=mse_loss):
    """A loss_fn that sends ``signum`` to this process during its ``calls``-th calls (1-based)."""
    import signal

    count = [0]

    def loss(model, batch):
        count[0] += 1
        if count[0] in calls:
            signal.raise_signal(signum)
        return loss_fn(model, batch)

    return loss


def main(out: Path, mode: str = "") -> None:
    import json
    import signal

    from safetensors.torch import save_file

    from xling.training import distributed as dist
    from xling.training.trainer import Trainer

    rank, world, _ = dist.init_distributed()
    model = ToyModel(seed=0)
    batches = ToyBatches(seed=7, batch_size=8, rank=rank, world=world, task=f"rank{rank}")
    if mode == "signal":
        cfg = ddp_config()
        cfg.max_steps = 6
        loss = signal_on_call(signal.SIGTERM, {2}) if rank == 1 else mse_loss
        summary = Trainer(model, loss, batches, cfg, out / "run").train()
        (out / f"summary{rank}.json").write_text(json.dumps(summary))
    else:
        Trainer(model, mse_loss, batches, ddp_config(), out / "run").train()
    params = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(params, str(out / f"rank{rank}.safetensors"))
    dist.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), *sys.argv[2:])
