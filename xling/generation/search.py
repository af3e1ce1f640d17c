"""Batched search over a :class:`~xling.generation.base.StepDecoder`.

``greedy``, ``beam_search`` and ``sample`` decode N sources at once; every step is one
``decoder.step`` on all live rows (sources x beams) and tensor operations over them. Python
loops only do the bookkeeping of hypotheses that just ended.

Rules shared by all three (see :class:`GenerationConfig` for the settings):

- Step 0 runs on the N sources once; the decoder is then expanded with ``reorder`` to the
  beams (or the ``n_best`` samples) of each source, so the first step costs N rows, not N*K.
- PAD and BOS (and ``banned_ids``) are never generated; EOS is banned before ``min_len``
  tokens; at a source's maximum length (``a * src_len + b``, capped by the decoder's
  ``max_target_len``) EOS is forced, so every hypothesis ends with EOS and decoding stops.
- ``no_repeat_ngram`` n: a token that would complete an n-gram already in the output is banned.
- Finished rows (greedy, sampling) and finished sources (beam) are dropped from the live
  batch with ``decoder.reorder``, so long outputs do not keep short ones' rows busy.
- A hypothesis's score is ``sum(token log-probs incl. EOS) / (len + 1) ** length_penalty``
  (fairseq), with the model's log-probs (before temperature / top-k / top-p when sampling).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from xling.generation.base import GenerationConfig, Hypothesis, StepDecoder

NEG_INF = float("-inf")


def _score(logprobs: list[float], length_penalty: float) -> float:
    """fairseq's normalised score; ``logprobs`` has one value per token plus EOS."""
    return sum(logprobs) / len(logprobs) ** length_penalty


def _hypothesis(tokens: list[int], logprobs: list[float], length_penalty: float) -> Hypothesis:
    return Hypothesis(tokens, _score(logprobs, length_penalty), logprobs)


def _ban_repeats(lp: torch.Tensor, hist: torch.Tensor, n: int) -> None:
    """In place: forbid tokens completing an n-gram that ``hist`` (R, t) already holds.

    lp: (R, V) log-probs of the next token of each row.
    """
    if hist.shape[1] < n:
        return
    grams = hist.unfold(1, n, 1)  # (R, t - n + 1, n)
    suffix = hist[:, hist.shape[1] - n + 1 :]  # (R, n - 1) the last n-1 tokens
    match = (grams[:, :, : n - 1] == suffix[:, None, :]).all(-1)  # (R, t - n + 1)
    rows, cols = match.nonzero(as_tuple=True)
    lp[rows, grams[rows, cols, n - 1]] = NEG_INF


def _constrain(
    lp: torch.Tensor, t: int, max_lens: torch.Tensor, hist: torch.Tensor, cfg: GenerationConfig, eos: int,
    banned: list[int],
) -> torch.Tensor:
    """Apply the bans to lp (R, V) in place at step ``t`` (t tokens generated so far).

    max_lens: (R,) per-row maximum length; hist: (R, t) generated tokens.
    Returns forced (R,) bool: rows whose only allowed token is now EOS (at the maximum
    length, or nothing else allowed); their EOS keeps the model's log-prob.
    """
    eos_lp = lp[:, eos].clone()  # (R,)
    ids = [i for i in banned if i < lp.shape[1]]
    if ids:
        lp[:, ids] = NEG_INF
    if t < cfg.min_len:
        lp[:, eos] = NEG_INF
    if cfg.no_repeat_ngram:
        _ban_repeats(lp, hist, cfg.no_repeat_ngram)
    forced = max_lens <= t  # (R,)
    if lp.shape[1] <= len(ids) + 1 + (t if cfg.no_repeat_ngram else 0):  # the bans may cover a whole row
        forced |= ~torch.isfinite(lp).any(-1)
    if bool(forced.any()):
        lp[forced] = NEG_INF
        lp[forced, eos] = eos_lp[forced]
    return forced


def _sample_tokens(lp: torch.Tensor, cfg: GenerationConfig, generator: torch.Generator) -> torch.Tensor:
    """Draw one token per row of lp (R, V) with temperature, top-k and top-p -> (R,) long."""
    logits = lp / cfg.temperature  # (R, V)
    V = logits.shape[1]
    if 0 < cfg.top_k < V:
        kth = logits.topk(cfg.top_k, dim=-1).values[:, -1:]  # (R, 1)
        logits = logits.masked_fill(logits < kth, NEG_INF)
    if cfg.top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)  # (R, V)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # mass of the more likely tokens
        drop = before >= cfg.top_p  # the nucleus: smallest prefix with mass >= top_p
        drop[:, 0] = False
        logits = torch.full_like(logits, NEG_INF).scatter(1, order, sorted_logits.masked_fill(drop, NEG_INF))
    logits[~torch.isfinite(logits).any(-1)] = 0.0  # rows with nothing allowed (forced EOS, fixed by the caller)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(1)


def _setup(decoder: StepDecoder, src_lens: Sequence[int], cfg: GenerationConfig, bos_id: int, eos_id: int,
           pad_id: int, banned_ids: Sequence[int]) -> tuple[list[int], list[int], torch.device]:
    max_lens = cfg.max_lens(src_lens, getattr(decoder, "max_target_len", None))
    banned = sorted({pad_id, bos_id, *banned_ids} - {eos_id})
    return max_lens, banned, torch.device(getattr(decoder, "device", "cpu"))


def _first_step(decoder: StepDecoder, n: int, k: int, bos_id: int, device: torch.device) -> torch.Tensor:
    """Step 0 on the n sources, then expand the decoder to k rows per source -> (n*k, V)."""
    lp = decoder.step(torch.full((n,), bos_id, dtype=torch.long, device=device)).float()  # (n, V)
    if k > 1:
        decoder.reorder(torch.arange(n, device=lp.device).repeat_interleave(k))
        lp = lp.repeat_interleave(k, dim=0)
    return lp


def _row_search(decoder: StepDecoder, src_lens: Sequence[int], cfg: GenerationConfig, bos_id: int, eos_id: int,
                pad_id: int, banned_ids: Sequence[int], generator: torch.Generator | None) -> list[list[Hypothesis]]:
    """Greedy (generator None) or sampling: every row extends by one token per step until EOS."""
    max_lens, banned, device = _setup(decoder, src_lens, cfg, bos_id, eos_id, pad_id, banned_ids)
    n = len(max_lens)
    results: list[list[Hypothesis]] = [[] for _ in range(n)]
    if n == 0:
        return results
    k = cfg.n_best if generator is not None else 1
    lp = _first_step(decoder, n, k, bos_id, device)  # (R, V), R = n*k
    dev = lp.device
    row_src = torch.arange(n, device=dev).repeat_interleave(k)  # (R,) source of each live row
    row_max = torch.tensor(max_lens, device=dev)[row_src]  # (R,)
    hist = torch.zeros(n * k, 0, dtype=torch.long, device=dev)  # (R, t) generated tokens
    hist_lp = torch.zeros(n * k, 0, device=dev)  # (R, t) their log-probs
    t = 0
    while True:
        forced = _constrain(lp, t, row_max, hist, cfg, eos_id, banned)
        tok = _sample_tokens(lp, cfg, generator) if generator is not None else lp.argmax(-1)  # (R,)
        tok = torch.where(forced, torch.full_like(tok, eos_id), tok)
        hist = torch.cat([hist, tok[:, None]], 1)
        hist_lp = torch.cat([hist_lp, lp.gather(1, tok[:, None])], 1)
        done = tok == eos_id  # (R,)
        if bool(done.any()):
            for r in done.nonzero().flatten().tolist():
                results[int(row_src[r])].append(
                    _hypothesis(hist[r, :-1].tolist(), hist_lp[r].tolist(), cfg.length_penalty))
            keep = (~done).nonzero().flatten()  # (R',)
            if keep.numel() == 0:
                break
            decoder.reorder(keep)
            tok, hist, hist_lp, row_src, row_max = tok[keep], hist[keep], hist_lp[keep], row_src[keep], row_max[keep]
        lp = decoder.step(tok).float()
        t += 1
    return [sorted(hyps, key=lambda h: -h.score) for hyps in results]


def greedy(decoder: StepDecoder, src_lens: Sequence[int], cfg: GenerationConfig, bos_id: int, eos_id: int,
           pad_id: int, banned_ids: Sequence[int] = ()) -> list[list[Hypothesis]]:
    """Argmax decoding of every source -> one hypothesis per source."""
    return _row_search(decoder, src_lens, cfg, bos_id, eos_id, pad_id, banned_ids, None)


def sample(decoder: StepDecoder, src_lens: Sequence[int], cfg: GenerationConfig, bos_id: int, eos_id: int,
           pad_id: int, banned_ids: Sequence[int] = (), generator: torch.Generator | None = None
           ) -> list[list[Hypothesis]]:
    """``cfg.n_best`` independent samples per source (temperature, top-k, top-p), best first.

    generator: a torch.Generator on the decoder's device; default one seeded with cfg.seed.
    """
    if generator is None:
        generator = torch.Generator(device=torch.device(getattr(decoder, "device", "cpu")))
        generator.manual_seed(cfg.seed)
    return _row_search(decoder, src_lens, cfg, bos_id, eos_id, pad_id, banned_ids, generator)


def _live_bound(best: torch.Tensor, t: int, max_lens: torch.Tensor, length_penalty: float) -> torch.Tensor:
    """Highest final score the best live beam (cumulative log-prob ``best`` (n,) of t + 1
    tokens) can still reach: log-probs only fall, and it ends with t + 2 .. max_len + 1
    tokens EOS included, so the bound is at the longest length when alpha > 0, else the shortest."""
    longest = (max_lens + 1).to(best.dtype)
    length = longest if length_penalty > 0 else torch.full_like(best, t + 2.0)
    return best / length**length_penalty


def beam_search(decoder: StepDecoder, src_lens: Sequence[int], cfg: GenerationConfig, bos_id: int, eos_id: int,
                pad_id: int, banned_ids: Sequence[int] = ()) -> list[list[Hypothesis]]:
    """Beam search of width ``cfg.beam`` -> up to ``cfg.n_best`` hypotheses per source, best first.

    At each step the 2K best (beam, token) candidates of every source are taken; EOS
    candidates among the top K end a hypothesis, the K best others continue (fairseq).
    A source is done when K hypotheses have ended (``early_stopping``; otherwise also
    once no live beam can beat the K-th), at its maximum length, or when no beam is alive.
    """
    K = cfg.beam
    max_lens, banned, device = _setup(decoder, src_lens, cfg, bos_id, eos_id, pad_id, banned_ids)
    n_total = len(max_lens)
    finished: list[list[Hypothesis]] = [[] for _ in range(n_total)]
    if n_total == 0:
        return finished
    lp = _first_step(decoder, n_total, 1, bos_id, device)  # (n, V): one beam per source at step 0
    dev, V = lp.device, lp.shape[1]
    src = torch.arange(n_total, device=dev)  # (n,) original index of each live source
    src_max = torch.tensor(max_lens, device=dev)  # (n,)
    scores = torch.zeros(n_total, 1, device=dev)  # (n, b) cumulative log-probs of the live beams
    hist = torch.zeros(n_total, 0, dtype=torch.long, device=dev)  # (n*b, t)
    hist_lp = torch.zeros(n_total, 0, device=dev)  # (n*b, t)
    n_fin = torch.zeros(n_total, dtype=torch.long, device=dev)  # (n,) ended hypotheses kept (<= K)
    worst_fin = torch.full((n_total,), NEG_INF, device=dev)  # (n,) score of the K-th best ended one
    t = 0
    while True:
        n, b = scores.shape
        _constrain(lp, t, src_max.repeat_interleave(b), hist, cfg, eos_id, banned)
        cand = (scores.reshape(-1, 1) + lp).view(n, b * V)  # (n, b*V)
        top, idx = cand.topk(min(2 * K, b * V), dim=1)  # (n, C) best first
        beam, tok = idx // V, idx % V  # (n, C)
        tok_lp = lp.reshape(n, b, V)[torch.arange(n, device=dev)[:, None], beam, tok]  # (n, C)
        is_eos = tok == eos_id
        ended = (is_eos & torch.isfinite(top))[:, :K]  # (n, min(K, C))
        if bool(ended.any()):
            for i, c in ended.nonzero().tolist():
                r = i * b + int(beam[i, c])
                hyps = finished[int(src[i])]
                hyps.append(_hypothesis(hist[r].tolist(), hist_lp[r].tolist() + [float(tok_lp[i, c])],
                                        cfg.length_penalty))
                hyps.sort(key=lambda h: -h.score)
                del hyps[K:]
                n_fin[i] = len(hyps)
                worst_fin[i] = hyps[-1].score if len(hyps) == K else NEG_INF
        live_top = top.masked_fill(is_eos, NEG_INF)
        scores, sel = live_top.topk(min(K, live_top.shape[1]), dim=1)  # (n, b') new beams, best first
        rows = torch.arange(n, device=dev)[:, None] * b + beam.gather(1, sel)  # (n, b') rows they extend
        new_tok = tok.gather(1, sel)  # (n, b')
        new_lp = tok_lp.gather(1, sel)  # (n, b')
        full = n_fin >= K  # (n,)
        if not cfg.early_stopping:  # ... and no live beam can still beat the K-th ended one
            full &= _live_bound(scores[:, 0], t, src_max, cfg.length_penalty) <= worst_fin
        done = full | (src_max <= t) | ~torch.isfinite(scores[:, 0])  # (n,)
        keep = (~done).nonzero().flatten()  # (n',)
        if keep.numel() == 0:
            break
        b = scores.shape[1]
        rows = rows[keep].reshape(-1)  # (n'*b,)
        hist = torch.cat([hist[rows], new_tok[keep].reshape(-1, 1)], 1)
        hist_lp = torch.cat([hist_lp[rows], new_lp[keep].reshape(-1, 1)], 1)
        scores, src, src_max = scores[keep], src[keep], src_max[keep]
        n_fin, worst_fin = n_fin[keep], worst_fin[keep]
        decoder.reorder(rows)
        lp = decoder.step(new_tok[keep].reshape(-1)).float()  # (n'*b, V)
        t += 1
    out = []
    for hyps in finished:
        out.append(hyps[: cfg.n_best] or [Hypothesis([], NEG_INF, [NEG_INF])])
    return out


def generate(decoder: StepDecoder, src_lens: Sequence[int], cfg: GenerationConfig, bos_id: int, eos_id: int,
             pad_id: int, banned_ids: Sequence[int] = (), generator: torch.Generator | None = None
             ) -> list[list[Hypothesis]]:
    """Decode the decoder's N sources (``src_lens`` (N,) their lengths, for the max length)
    as ``cfg`` says -> per source, up to ``cfg.n_best`` hypotheses sorted by score, best first.

    ``banned_ids``: more token ids never to generate (e.g. MASK); ``generator``: sampling only.
    """
    if cfg.sampling:
        return sample(decoder, src_lens, cfg, bos_id, eos_id, pad_id, banned_ids, generator)
    if cfg.beam == 1 and cfg.early_stopping:  # beam 1 without early stopping may look past the first EOS
        return greedy(decoder, src_lens, cfg, bos_id, eos_id, pad_id, banned_ids)
    return beam_search(decoder, src_lens, cfg, bos_id, eos_id, pad_id, banned_ids)
