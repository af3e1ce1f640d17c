"""Validation by generation for translation and summarization (``seq2seq.valid_generate: N``).

Every validation greedy-decodes the first N valid pairs (at most ``data.valid_examples``) of each ``translation`` /
``summarization`` task (outputs at most ``data.max_tgt_len`` tokens, the length targets were
cut to in training) and scores the detokenised outputs against the detokenised references
with sacrebleu: ``bleu/<task>``, ``chrf/<task>`` and their means ``bleu/avg``, ``chrf/avg``.
With ``trainer.best_metric: bleu/avg`` and ``best_mode: max`` the final model is the one that
translates best on the valid split. Validation cross-entropy is a poor stand-in for that on
small data: it bottoms out within a few hundred updates and then rises while BLEU keeps
improving (``benchmarks/RESULTS.md``, early stopping).

Without parallel data (unsupervised MT), the same setting round-trips the first N valid sentences
of each back-translation direction ``l1-l2-l1`` (greedy l1 -> l2, then l2 -> l1, at most
``1.3 |x| + 5`` tokens each way) and scores the result against the sentence itself:
``rtbleu/<task>``, ``rtchrf/<task>`` and ``rtbleu/avg``, a selection metric that needs no
reference translation (Lample et al. 2018).
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
    cycles = [t for t in tasks if objective_kind(t.group).langs == "cycle"]
    if n <= 0 or not (chosen or cycles):
        return None
    roundtrip = _roundtrip(cycles, vocab, n, batch_size, decoding)
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
            if chosen:
                out[f"{metric}/avg"] = float(np.mean([out[f"{metric}/{t.name}"] for t in chosen]))
        out.update(roundtrip(model))
        return out

    return valid


def _roundtrip(cycles: list, vocab: Vocab, n: int, batch_size: int, decoding: str
               ) -> Callable[[torch.nn.Module], dict[str, float]]:
    """Round-trip BLEU / chrF of the back-translation directions (their valid sentences in l1)."""
    cfg = GenerationConfig(beam=1, max_len_a=1.3, max_len_b=5)

    def valid(model: torch.nn.Module) -> dict[str, float]:
        out: dict[str, float] = {}
        for t in cycles:
            l1, l2 = t.lang
            src = [[int(i) for i in x] for x in t.examples[:n]]
            there = [h[0].tokens for h in generate_ids(model, vocab, src, l1, l2, cfg, batch_size, decoding=decoding)]
            back = generate_ids(model, vocab, [x or [vocab.unk_id] for x in there], l2, l1, cfg, batch_size,
                                decoding=decoding)
            r = bleu([vocab.decode(h[0].tokens) for h in back], [vocab.decode(x) for x in src], vocab.languages[l1])
            out[f"rtbleu/{t.name}"], out[f"rtchrf/{t.name}"] = r["bleu"], r["chrf"]
        if cycles:
            out["rtbleu/avg"] = float(np.mean([out[f"rtbleu/{t.name}"] for t in cycles]))
        return out

    return valid
