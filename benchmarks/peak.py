"""The machine's matrix-multiply peak, measured in the calling process.

Throughput figures are only meaningful next to the peak of the same machine at the
same moment (the cores are shared and noisy), so benchmarks call :func:`matmul_peak`
right before and after their own measurement and report the ratio.

    python benchmarks/peak.py            # prints float32 and bfloat16 GFLOP/s
"""

from __future__ import annotations

import statistics
import time

import torch


def matmul_peak(dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 5) -> float:
    """Median GFLOP/s of an (n x n) @ (n x n) matmul in ``dtype`` over ``repeats`` runs."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dtype)
    b = torch.randn(n, n, generator=g).to(dtype)
    out = torch.empty(n, n, dtype=dtype)
    torch.mm(a, b, out=out)  # warm-up (kernel selection, page faults)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        times.append(time.perf_counter() - t0)
    return 2.0 * n**3 / statistics.median(times) / 1e9


if __name__ == "__main__":
    torch.set_num_threads(torch.get_num_threads())
    for dt in (torch.float32, torch.bfloat16):
        print(f"{str(dt).removeprefix('torch.')}: {matmul_peak(dt):.1f} GFLOP/s")
