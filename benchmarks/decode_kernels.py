"""The two kernels of an incremental decoding step, next to what they replaced.

1. Attention of a few queries per row (a decoding step: 1 query per beam for self-attention,
   the 5 beams of a source together for the shared cross-attention memory):
   ``xling.models.layers.few_query_attention`` (batched matmuls) vs
   ``torch.nn.functional.scaled_dot_product_attention`` (torch's fused kernel), with and
   without a padding mask, and at more queries, where SDPA wins (training, full forwards).
2. A beam-search cache update (reorder the rows, append one position) over 8 tensors (4
   layers x keys/values) for 50 steps: ``LayerKV``'s fused gather-append vs ``index_select``
   then ``cat``.

    python benchmarks/decode_kernels.py [--threads 2] [--repeats 50]

Prints a markdown table (milliseconds per call, best of 7 rounds, the two sides alternating) for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from xling.models.layers import LayerKV, few_query_attention

H, HD = 4, 64  # heads, head dim of the benchmark models (d_model 256)


def best_ms(fns, repeats: int, rounds: int = 7) -> list[float]:
    """Milliseconds per call of each of ``fns``, the best of ``rounds`` rounds; the functions
    take turns within every round, so both see the same moments of a noisy machine."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            for _ in range(repeats):
                fn()
            best[i] = min(best[i], (time.perf_counter() - t) / repeats * 1e3)
    return best


def attention_rows(repeats: int) -> list[tuple[str, float, float]]:
    g = torch.Generator().manual_seed(0)
    rows = []
    # (label, rows B, queries per row, keys, masked)
    for label, B, Tq, Tk, masked in (("self-attention step, 320 beams, 10 cached", 320, 1, 10, False),
                                     ("self-attention step, 320 beams, 60 cached", 320, 1, 60, False),
                                     ("cross-attention step, 64 sources x 5 beams, 40 source tokens", 64, 5, 40, True),
                                     ("16 queries per row (64 rows, 100 keys)", 64, 16, 100, True),
                                     ("64 queries per row (64 rows, 100 keys)", 64, 64, 100, True)):
        q, k, v = (torch.randn(B, H, T, HD, generator=g) for T in (Tq, Tk, Tk))
        mask = None
        if masked:
            mask = torch.ones(B, 1, Tq, Tk, dtype=torch.bool)
            mask[B // 2 :, ..., Tk - Tk // 4 :] = False  # half the rows padded
        sdpa, few = best_ms([lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
                             lambda: few_query_attention(q, k, v, mask)], repeats)
        assert torch.allclose(few_query_attention(q, k, v, mask),
                              F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-5)
        rows.append((label, sdpa, few))
    return rows


def cache_rows(steps: int = 50, B: int = 320) -> tuple[float, float]:
    g = torch.Generator().manual_seed(1)
    new = [torch.randn(B, H, 1, HD, generator=g) for _ in range(8)]
    index = torch.randint(0, B, (B,), generator=g)

    def eager() -> None:
        ks = [x.clone() for x in new]
        for _ in range(steps):
            ks = [torch.cat([k.index_select(0, index), x], 2) for k, x in zip(ks, new)]

    def fused() -> None:
        kvs = [LayerKV() for _ in range(4)]
        for kv in kvs:
            kv.append(new[0], new[1])
        for _ in range(steps):
            for kv in kvs:
                kv.reorder(index)
                kv.append(new[0], new[1])

    return tuple(best_ms([eager, fused], 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with torch.inference_mode():
        att = attention_rows(args.repeats)
        eager, fused = cache_rows()
    print(f"torch {torch.__version__}, {args.threads} threads\n")
    print("| kernel | torch (SDPA / index_select+cat) ms | xling ms | speed-up |")
    print("|---|---:|---:|---:|")
    for label, sdpa, few in att:
        print(f"| {label} | {sdpa:.3f} | {few:.3f} | {sdpa / few:.2f}x |")
    print(f"| cache update, 320 rows, 8 tensors, 50 steps | {eager:.1f} | {fused:.1f} | {eager / fused:.2f}x |")


if __name__ == "__main__":
    main()
