"""Multi-process training helpers (torchrun / torch.distributed).

Launch with ``torchrun --nproc_per_node K ...``: torchrun sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``, and
:func:`init_distributed` joins the process group (``nccl`` when CUDA is
available, ``gloo`` on CPU). Without those variables everything here is a cheap
single-process no-op, so the same code runs with and without torchrun.

Objects are exchanged between ranks as JSON bytes in uint8 tensors (never pickle).
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from xling.errors import XlingError


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise XlingError(f"environment variable {name}={value!r}: expected an integer") from None


def init_distributed() -> tuple[int, int, int]:
    """Join the torchrun process group if there is one; idempotent.

    Returns ``(rank, world_size, local_rank)``; ``(0, 1, 0)`` without torchrun.
    """
    world = _env_int("WORLD_SIZE", 1)
    if world > 1 and not is_initialized():
        local = _env_int("LOCAL_RANK", 0)
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
            backend = "nccl"
        else:
            backend = "gloo"
        dist.init_process_group(backend=backend, init_method="env://")
    return rank(), world_size(), local_rank()


def is_initialized() -> bool:
    """Whether a process group is active."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if is_initialized() else 1


def local_rank() -> int:
    """This process's rank on its machine (selects its GPU)."""
    return _env_int("LOCAL_RANK", 0) if is_initialized() else 0


def is_main() -> bool:
    """True on rank 0, the process that writes files and logs."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if world_size() > 1:
        dist.barrier()


def _comm_device() -> torch.device:
    """Device the backend communicates from (nccl needs CUDA tensors)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def any_true(flag: bool) -> bool:
    """True if ``flag`` is true on any rank (so all ranks take the same decision)."""
    if world_size() == 1:
        return bool(flag)
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def any_true_each(flags: list[bool]) -> list[bool]:
    """:func:`any_true` of several flags in one all-reduce (e.g. once per training step)."""
    if world_size() == 1:
        return [bool(f) for f in flags]
    t = torch.tensor([1 if f else 0 for f in flags], dtype=torch.int32, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def all_gather_json(obj: Any) -> list[Any]:
    """Gather one JSON-able object from every rank; returns them ordered by rank."""
    if world_size() == 1:
        return [obj]
    device = _comm_device()
    data = torch.tensor(list(json.dumps(obj).encode("utf-8")), dtype=torch.uint8, device=device)
    size = torch.tensor([data.numel()], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(size) for _ in range(world_size())]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros(longest, dtype=torch.uint8, device=device)
    padded[: data.numel()] = data
    chunks = [torch.zeros_like(padded) for _ in range(world_size())]
    dist.all_gather(chunks, padded)
    return [
        json.loads(bytes(c[: int(s.item())].cpu().tolist()).decode("utf-8"))
        for c, s in zip(chunks, sizes)
    ]


class DDP(DistributedDataParallel):
    """DistributedDataParallel that forwards unknown attributes to the wrapped model.

    A ``loss_fn`` can then call ``model(...)`` (the synchronised forward) and also
    ``model.lm_logits(...)`` or read ``model.config`` as on the bare model.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def wrap_model(model: torch.nn.Module, device: torch.device, find_unused: bool) -> torch.nn.Module:
    """Wrap ``model`` in :class:`DDP` when there are several ranks, else return it."""
    if world_size() == 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return DDP(model, device_ids=ids, find_unused_parameters=find_unused)
