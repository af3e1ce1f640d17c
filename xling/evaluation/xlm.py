"""Evaluation of XLM-style encoders.

- :func:`mlm_scores`: masked-LM perplexity and accuracy on stream rows of one
  language, with masks drawn from a fixed seed (the same for every model).
- :func:`translation_probe`: the evidence that TLM taught cross-lingual use:
  masked-token accuracy in language A with its translation B present versus
  absent (the same masked positions in both conditions).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from xling.data.masking import IGNORE, MaskingConfig, choose_positions, mlm_mask, pad_batch
from xling.objectives.base import predict_masked
from xling.objectives.mlm import concat_pair


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _predict(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    dev = _device(model)
    batch = {k: v.to(dev) if torch.is_tensor(v) else v for k, v in batch.items()}
    return predict_masked(model, batch)


def _score(model, batch) -> tuple[float, int, int]:
    """(summed CE, correct, count) over target positions of one batch."""
    logits, targets = _predict(model, batch)
    ce = F.cross_entropy(logits.float(), targets, reduction="sum").item()
    return ce, int((logits.argmax(-1) == targets).sum()), int(targets.numel())


def mcnemar(only_a: int, only_b: int) -> float:
    """Two-sided p-value of McNemar's test (normal approximation with continuity
    correction) that two paired classifiers are equally accurate, from the counts of
    items only A got right and only B got right."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    z = max(abs(only_a - only_b) - 1, 0) / math.sqrt(n)
    return math.erfc(z / math.sqrt(2))


@torch.no_grad()
def mlm_scores(
    model: torch.nn.Module,
    rows: np.ndarray,
    lang_id: int,
    vocab_size: int,
    seed: int = 0,
    batch_size: int = 16,
    masking: MaskingConfig = MaskingConfig(),
) -> dict[str, float]:
    """Masked-LM perplexity / accuracy on stream rows (N, T) of one language."""
    was_training = model.training
    model.eval()
    rng = np.random.default_rng(seed)
    ce = correct = n = 0
    for i in range(0, len(rows), batch_size):
        tokens = pad_batch(list(rows[i : i + batch_size]))
        inputs, targets = mlm_mask(tokens, vocab_size, rng, masking)
        batch = {
            "tokens": torch.from_numpy(inputs),
            "langs": torch.full(tokens.shape, lang_id, dtype=torch.long),
            "targets": torch.from_numpy(targets),
        }
        c, k, m = _score(model, batch)
        ce, correct, n = ce + c, correct + k, n + m
    model.train(was_training)
    return {"ppl": math.exp(ce / max(n, 1)), "acc": correct / max(n, 1), "n": n}


@torch.no_grad()
def translation_probe(
    model: torch.nn.Module,
    pairs: list[tuple[np.ndarray, np.ndarray]],
    lang_a: int,
    lang_b: int,
    seed: int = 0,
    mask_prob: float = 0.15,
    batch_size: int = 32,
    bos_id: int = 2,
    eos_id: int = 3,
    mask_id: int = 4,
    n_special: int = 5,
) -> dict[str, float]:
    """Accuracy of recovering masked tokens of sentence A (every chosen token
    replaced by <mask>) from A alone versus from A followed by its translation B.

    The same tokens are masked in both conditions, so the comparison is paired:
    ``only_with`` / ``only_alone`` count tokens recovered in one condition only, and
    ``p_value`` is McNemar's test that the gap is zero."""
    was_training = model.training
    model.eval()
    rng = np.random.default_rng(seed)
    hits: dict[str, list[torch.Tensor]] = {"alone": [], "with_translation": []}
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i : i + batch_size]
        a_rows = [np.concatenate([[bos_id], a, [eos_id]]).astype(np.int64) for a, _ in chunk]
        a_tok = pad_batch(a_rows)  # (B, Ta)
        chosen = choose_positions(a_tok >= n_special, mask_prob, rng)
        a_in = np.where(chosen, mask_id, a_tok)
        a_tgt = np.where(chosen, a_tok, IGNORE)
        alone = {
            "tokens": torch.from_numpy(a_in),
            "langs": torch.full(a_in.shape, lang_a, dtype=torch.long),
            "targets": torch.from_numpy(a_tgt),
        }
        toks, poss, langs, tgts = [], [], [], []
        for j, (_, b) in enumerate(chunk):
            la = len(a_rows[j])
            t, p, g = concat_pair(a_in[j, 1 : la - 1], b, lang_a, lang_b, bos_id, eos_id)
            tg = np.full(len(t), IGNORE, dtype=np.int64)
            tg[:la] = a_tgt[j, :la]
            toks.append(t), poss.append(p), langs.append(g), tgts.append(tg)
        both = {
            "tokens": torch.from_numpy(pad_batch(toks)),
            "positions": torch.from_numpy(pad_batch(poss)),
            "langs": torch.from_numpy(pad_batch(langs)),
            "targets": torch.from_numpy(pad_batch(tgts, pad_id=IGNORE)),
        }
        for key, batch in (("alone", alone), ("with_translation", both)):
            logits, targets = _predict(model, batch)  # same masked tokens, same order in both
            hits[key].append((logits.argmax(-1) == targets).cpu())
    model.train(was_training)
    alone_ok = torch.cat(hits["alone"]) if hits["alone"] else torch.zeros(0, dtype=torch.bool)
    with_ok = torch.cat(hits["with_translation"]) if hits["with_translation"] else torch.zeros(0, dtype=torch.bool)
    n = int(alone_ok.numel())
    acc_alone = float(alone_ok.sum()) / max(n, 1)
    acc_with = float(with_ok.sum()) / max(n, 1)
    only_with, only_alone = int((with_ok & ~alone_ok).sum()), int((alone_ok & ~with_ok).sum())
    return {"acc_alone": acc_alone, "acc_with_translation": acc_with, "gap": acc_with - acc_alone, "n": n,
            "only_with": only_with, "only_alone": only_alone, "p_value": mcnemar(only_with, only_alone)}
