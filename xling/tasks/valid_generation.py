"""Validation by generation for translation and summarization (``seq2seq.valid_generate: N``).

Every validation greedy-decodes the first N valid pairs (at most ``data.valid_examples``) of each ``translation`` /
``summarization`` task (outputs at most ``data.max_tgt_len`` tokens, the length targets were
cut to in training) and scores the detokenised outputs against the detokenised references
with sacrebleu: ``bleu/<task>``, ``chrf/<task>`` and their means ``bleu/avg``, ``chrf/avg``.
With ``trainer.best_metric: bleu/avg`` and ``best_mode: max`` the final model is the one that
translates best on the valid split. Validation cross-entropy is a poor stand-in for that on
small data: it bottoms out within a few hundred updates and then rises while BLEU keeps
improving (``benchmarks/RESULTS.md``, early stopping).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from xling.evaluation.textmetrics import bleu
from xling.generation.api import generate_ids
from xling.generation.base import GenerationConfig
from xling.objectives.registry import objective_kind
from xling.tokenization.vocab import Vocab


def generation_valid_fn(tasks: list, vocab: Vocab, n: int, max_len: int, batch_size: int = 64,
                        decoding: str = "mask") -> Callable[[torch.nn.Module], dict[str, float]] | None:
    """valid_fn part scoring greedy outputs of the seq2seq tasks among ``tasks`` (built on the
    valid split); None when ``n`` is 0 or no task generates."""
    chosen = [t for t in tasks if objective_kind(t.group).supervised]
    if n <= 0 or not chosen:
        return None
    cfg = GenerationConfig(beam=1, max_len_a=0.0, max_len_b=max_len)
    refs = {t.name: [vocab.decode([int(i) for i in y]) for _, y in t.examples[:n]] for t in chosen}

    def valid(model: torch.nn.Module) -> dict[str, float]:
        out: dict[str, float] = {}
        for t in chosen:
            src_id, tgt_id = t.lang
            src = [[int(i) for i in x] for x, _ in t.examples[:n]]
            hyps = generate_ids(model, vocab, src, src_id, tgt_id, cfg, batch_size, decoding=decoding)
            r = bleu([vocab.decode(h[0].tokens) for h in hyps], refs[t.name], vocab.languages[tgt_id])
            out[f"bleu/{t.name}"], out[f"chrf/{t.name}"] = r["bleu"], r["chrf"]
        for metric in ("bleu", "chrf"):
            out[f"{metric}/avg"] = float(np.mean([out[f"{metric}/{t.name}"] for t in chosen]))
        return out

    return valid
