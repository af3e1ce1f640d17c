"""Training throughput and model FLOPs utilisation (MFU) of the XLM encoder on this CPU.

A d_model 512 / 6-layer / 8-head encoder (d_ff 2048, vocab 8000) is trained with AdamW
on an MLM-style loss (15% of the positions, logits only there) on random tokens, in
float32 and in bfloat16 autocast. MFU = achieved model FLOP/s (from
``TransformerEncoder.flops_per_token``) / matmul peak of the same dtype, measured in
the same process interleaved with the training steps (the cores are shared and noisy,
so only the ratio to the same-moment peak is meaningful).

    python benchmarks/train_throughput.py [--batch 8] [--steps 5] [--dtypes float32,bfloat16] [--trainer]

``--trainer`` times the library's path instead of a bare step: ``Trainer.train`` with
``masked_lm_loss`` (its stats, loss bookkeeping, clipping and logging every ``--log-every``
steps), a step being the time between two batch pulls (the peak is measured inside the pull
and left out). Prints a markdown block for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peak import matmul_peak  # noqa: E402

from xling.models.config import EncoderConfig  # noqa: E402
from xling.models.encoder import TransformerEncoder  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
MASK_ID = 4  # xling.tokenization.vocab.MASK


def machine() -> str:
    """CPU model name, core count, torch version and threads, one line."""
    from pipeline import cpu_model

    model = cpu_model()
    return f"{model}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def make_batches(cfg: EncoderConfig, batch: int, seq_len: int, n: int, seed: int = 0) -> list[dict]:
    """``n`` random MLM batches: 15% of the positions replaced by MASK and predicted."""
    g = torch.Generator().manual_seed(seed)
    n_pred = max(1, round(0.15 * batch * seq_len))
    out = []
    for _ in range(n):
        tokens = torch.randint(5, cfg.vocab_size, (batch, seq_len), generator=g)  # (B, T), no specials
        pos = torch.randperm(batch * seq_len, generator=g)[:n_pred]  # (P,) flat positions
        targets = tokens.view(-1)[pos].clone()  # (P,)
        inputs = tokens.clone()
        inputs.view(-1)[pos] = MASK_ID
        langs = torch.zeros_like(tokens)
        out.append({"tokens": inputs, "langs": langs, "pos": pos, "targets": targets})
    return out


def mlm_step(model: TransformerEncoder, opt: torch.optim.Optimizer, b: dict, dtype: torch.dtype) -> float:
    """One AdamW step on the MLM loss; returns the loss."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        h = model(b["tokens"], langs=b["langs"])  # (B, T, D)
        logits = model.lm_logits(h.view(-1, h.shape[-1])[b["pos"]])  # (P, V)
        loss = F.cross_entropy(logits.float(), b["targets"])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def _model(args: argparse.Namespace) -> tuple[EncoderConfig, TransformerEncoder]:
    """The benchmarked encoder (seed 0) and its config, from the command-line sizes."""
    torch.manual_seed(0)
    cfg = EncoderConfig(
        vocab_size=args.vocab, n_langs=4, d_model=args.d_model, n_layers=args.layers, n_heads=args.heads,
        d_ff=args.d_ff, max_positions=max(512, args.seq_len), dropout=args.dropout, attn_dropout=args.attn_dropout,
    )
    return cfg, TransformerEncoder(cfg)


def _figures(name: str, model, flops_tok: float, tokens: int, times: list, peaks: list, loss: float) -> dict:
    """Throughput and MFU of timed steps; the MFU of each step is against the mean of the matmul
    peaks measured just before and after it."""
    mfus = [flops_tok * tokens / t / 1e9 / ((p0 + p1) / 2) for t, p0, p1 in zip(times, peaks, peaks[1:])]
    return {
        "dtype": name,
        "params": model.num_parameters(),
        "tok_s": tokens * len(times) / sum(times),
        "step_s": statistics.median(times),
        "gflops": flops_tok * tokens * len(times) / sum(times) / 1e9,
        "peak": statistics.median(peaks),
        "mfu": statistics.median(mfus),
        "mfu_min": min(mfus),
        "mfu_max": max(mfus),
        "loss": loss,
    }


def measure(args: argparse.Namespace, dtype_name: str) -> dict:
    """Warm up, then time ``args.steps`` steps with a matmul peak before and after each."""
    dtype = DTYPES[dtype_name]
    cfg, model = _model(args)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    batches = make_batches(cfg, args.batch, args.seq_len, args.warmup + args.steps)
    step_fn = torch.compile(mlm_step) if args.compile else mlm_step
    for b in batches[: args.warmup]:
        step_fn(model, opt, b, dtype)
    flops_tok = model.flops_per_token(args.seq_len, lm_fraction=len(batches[0]["pos"]) / (args.batch * args.seq_len))
    tokens = args.batch * args.seq_len
    peaks = [matmul_peak(dtype, repeats=args.peak_repeats)]
    times, losses = [], []
    for b in batches[args.warmup :]:
        t0 = time.perf_counter()
        losses.append(step_fn(model, opt, b, dtype))
        times.append(time.perf_counter() - t0)
        peaks.append(matmul_peak(dtype, repeats=args.peak_repeats))
    return _figures(dtype_name, model, flops_tok, tokens, times, peaks, losses[-1])


class _TimedBatches:
    """The trainer's batch source: fixed batches; times each pull and measures the matmul
    peak inside it (outside the timed interval) before every timed step."""

    def __init__(self, batches: list[dict], timed: range, peak) -> None:
        self.batches, self.timed, self.peak = batches, timed, peak
        self.i, self.start, self.end, self.peaks = 0, [], [], []

    def __next__(self) -> dict:
        self.start.append(time.perf_counter())
        if self.i in self.timed or self.i == self.timed.stop:
            self.peaks.append(self.peak())
        self.end.append(time.perf_counter())
        self.i += 1
        return self.batches[self.i - 1]

    def state_dict(self) -> dict:
        return {"i": self.i}

    def load_state_dict(self, state: dict) -> None:
        self.i = state["i"]


def measure_trainer(args: argparse.Namespace, dtype_name: str) -> dict:
    """Like :func:`measure`, through ``Trainer.train`` on ``masked_lm_loss`` (CPU, no compile)."""
    import tempfile

    from xling.data.masking import IGNORE
    from xling.objectives.base import masked_lm_loss
    from xling.training.trainer import Trainer, TrainerConfig

    dtype = DTYPES[dtype_name]
    cfg, model = _model(args)
    batches = []
    for b in make_batches(cfg, args.batch, args.seq_len, args.warmup + args.steps + 1):
        targets = torch.full_like(b["tokens"], IGNORE)  # (B, T)
        targets.view(-1)[b["pos"]] = b["targets"]
        batches.append({"tokens": b["tokens"], "langs": b["langs"], "targets": targets, "task": "mlm"})
    source = _TimedBatches(batches, range(args.warmup, args.warmup + args.steps),
                           lambda: matmul_peak(dtype, repeats=args.peak_repeats))
    tcfg = TrainerConfig(lr=1e-4, warmup_steps=0, max_steps=len(batches), schedule="constant",
                         log_every=args.log_every, valid_every=0, save_every=0, dtype=dtype_name,
                         device="cpu", progress=False)
    n_pred = int((batches[0]["targets"] != IGNORE).sum())
    flops_tok = model.flops_per_token(args.seq_len, lm_fraction=n_pred / (args.batch * args.seq_len))
    with tempfile.TemporaryDirectory() as out:
        summary = Trainer(model, lambda m, b: masked_lm_loss(m, b, b["task"]), source, tcfg, out).train()
    tokens = args.batch * args.seq_len
    times = [source.start[k + 1] - source.end[k] for k in range(args.warmup, args.warmup + args.steps)]
    peaks = source.peaks
    return _figures(f"{dtype_name} (Trainer)", model, flops_tok, tokens, times, peaks, summary["final_loss"])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8, help="sequences per step")
    p.add_argument("--seq-len", type=int, default=256, help="tokens per sequence")
    p.add_argument("--steps", type=int, default=5, help="timed steps per dtype")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--dtypes", default="float32,bfloat16", help="comma list of float32, bfloat16")
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--d-model", type=int, default=512)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--d-ff", type=int, default=2048)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--attn-dropout", type=float, default=0.1)
    p.add_argument("--peak-repeats", type=int, default=3, help="matmuls per peak measurement (median)")
    p.add_argument("--compile", action="store_true", help="torch.compile the training step")
    p.add_argument("--force", action="store_true", help="train a dtype even if its matmul peak is tiny")
    p.add_argument("--trainer", action="store_true", help="time Trainer.train on masked_lm_loss (see above)")
    p.add_argument("--log-every", type=int, default=50, help="--trainer: updates between metrics lines")
    args = p.parse_args(argv)
    for name in args.dtypes.split(","):
        if name not in DTYPES:
            p.error(f"--dtypes: unknown dtype {name!r} (choose from {', '.join(DTYPES)})")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0]] + (argv if argv is not None else sys.argv[1:]))
    rows, notes = [], []
    fp32_probe = matmul_peak(torch.float32, n=512, repeats=1)  # small probes: a slow dtype costs seconds
    for name in args.dtypes.split(","):
        probe = matmul_peak(DTYPES[name], n=512, repeats=1)
        if probe < 0.25 * fp32_probe and not args.force:
            notes.append(
                f"{name}: skipped, its 512x512 matmul runs at {probe:.1f} GFLOP/s against {fp32_probe:.1f} in "
                f"float32 (no native {name} GEMM on this CPU); --force to train anyway"
            )
            continue
        r = measure_trainer(args, name) if args.trainer else measure(args, name)
        rows.append(r)
        print(f"[{name}] {r['tok_s']:.0f} tok/s, MFU {100 * r['mfu']:.1f}%", file=sys.stderr)
    print(f"### Training throughput, {datetime.date.today().isoformat()}\n")
    print(f"- command: `{command}`")
    print(f"- machine: {machine()}")
    print(
        f"- model: d_model {args.d_model}, {args.layers} layers, {args.heads} heads, d_ff {args.d_ff}, vocab "
        f"{args.vocab}, dropout {args.dropout}/{args.attn_dropout}; batch {args.batch} x {args.seq_len} tokens, "
        f"MLM on 15% of positions, "
        + (f"xling Trainer (AdamW, clip 1.0, log every {args.log_every}), masked_lm_loss; " if args.trainer else
           f"AdamW (fused){', torch.compile' if args.compile else ''}; ") +
        f"{args.warmup} warmup + {args.steps} timed steps"
    )
    print("- MFU: model FLOP/s (flops_per_token, fwd+bwd) / matmul peak of the same dtype measured between steps\n")
    print("| dtype | params | step (s) | tokens/s | model GFLOP/s | matmul peak GFLOP/s | MFU median (min-max) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['dtype']} | {r['params'] / 1e6:.1f}M | {r['step_s']:.2f} | {r['tok_s']:.0f} | {r['gflops']:.1f} | "
            f"{r['peak']:.1f} | {100 * r['mfu']:.1f}% ({100 * r['mfu_min']:.0f}-{100 * r['mfu_max']:.0f}%) |"
        )
    for note in notes:
        print(f"\n- {note}")


if __name__ == "__main__":
    main()
