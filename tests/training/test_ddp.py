"""Two-process DDP training through the Trainer (gloo on CPU) vs one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ddp_worker import ToyBatches, ToyModel, ddp_config, mse_loss
from xling.training.metrics import read_metrics
from xling.training.trainer import Trainer

WORKER = Path(__file__).with_name("ddp_worker.py")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(out: Path, *mode: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           str(WORKER), str(out), *mode]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=80)


@pytest.mark.timeout(90)
def test_two_ranks_match_single_process_on_global_batch(tmp_path):
    done = _torchrun(tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    rank0 = load_file(str(tmp_path / "rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "rank1.safetensors"))
    initial = ToyModel(seed=0).state_dict()
    for name, value in rank0.items():
        assert torch.equal(value, rank1[name]), name  # DDP kept the replicas identical
    assert any(not torch.equal(rank0[n], initial[n]) for n in initial)  # and they trained

    # One process on the concatenated global batch (8 rows = both ranks' 4).
    ref_model = ToyModel(seed=0)
    ref = Trainer(ref_model, mse_loss, ToyBatches(seed=7, batch_size=8), ddp_config(),
                  tmp_path / "single").train()
    for name, value in ref_model.state_dict().items():
        assert torch.allclose(rank0[name], value, atol=1e-5), name

    # Logged stats are merged over ranks: each rank's task, the mean loss, global tokens.
    lines = read_metrics(tmp_path / "run" / "metrics.jsonl")
    ref_lines = read_metrics(tmp_path / "single" / "metrics.jsonl")
    assert [r["step"] for r in lines] == [1, 2, 3]
    assert {"loss/rank0", "loss/rank1"} <= set(lines[0])
    for got, want in zip(lines, ref_lines):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)
        assert got["tokens_seen"] == want["tokens_seen"]
    assert lines[-1]["tokens_seen"] == 8 * 3 == ref["tokens_seen"]
    state = json.loads((tmp_path / "run" / "checkpoints" / "step_00000003" /
                        "trainer_state.json").read_text())
    assert len(state["ranks"]) == 2 and state["world_size"] == 2


@pytest.mark.timeout(90)
def test_a_signal_on_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    """Rank 1 alone gets SIGTERM during step 2: both ranks stop after step 2 (one all-reduce
    per step), with one checkpoint holding both ranks' states; without the agreement rank 0
    would wait in step 3's gradient all-reduce forever."""
    done = _torchrun(tmp_path, "signal")
    assert done.returncode == 0, done.stderr[-3000:]
    summaries = [json.loads((tmp_path / f"summary{r}.json").read_text()) for r in (0, 1)]
    for s in summaries:
        assert (s["stopped"], s["signal"], s["steps"]) == ("signal", "SIGTERM", 2), s
    root = tmp_path / "run" / "checkpoints"
    assert (root / "latest").read_text().strip() == "step_00000002"
    state = json.loads((root / "step_00000002" / "trainer_state.json").read_text())
    assert len(state["ranks"]) == 2
