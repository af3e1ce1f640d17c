"""Training sentence embedders (``model_type: sentence``) with ``xling train``.

Three objective types, all listed with plain languages and expanded into directions with the
config's ``sentence.pivots`` (LASER translated every language into English and Spanish)::

    model_type: sentence
    sentence: {pivots: [en], margin: 0.3, scale: 20}
    objectives:
      - {type: laser_translation, langs: [de, fr, zh, en], weight: 1.0}   # de->en fr->en zh->en en->en
      - {type: translation_ranking, langs: [de, fr, zh], weight: 1.0}     # de-en fr-en zh-en

- ``laser_translation``: language ``l`` -> every pivot but ``l``, through the bottleneck
  decoder (teacher-forced cross-entropy). A language with no other pivot (``en`` with pivots
  ``[en]``) is reconstructed (``en -> en``, from ``{split}.en``) when ``sentence.autoencode``
  (the default), so the encoder sees it too; with two pivots each is translated into the other.
- ``translation_ranking``: the contrastive loss of :mod:`xling.objectives.sentence` on the
  pairs ``l``-pivot (a pair is used once whatever its order; ``l`` = pivot is skipped).
- ``distill`` (:mod:`xling.objectives.distill`): ``l`` -> the teacher's vector of its pivot
  translation, and each pivot -> the teacher's vector of itself (``distill.teacher``).

Pairs are read from ``{split}.{l1}-{l2}.*`` (a Bible corpus built with ``--pairs en`` holds
the English pairs only; pivots other than ``en`` need ``--pairs all``). Validation adds the
retrieval accuracy (P@1, both directions averaged) of every pair on its valid split. The
saved model records the languages its encoder was trained on (``extra.sentence``), which
:class:`xling.embeddings.SentenceEncoder` enforces.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from xling.config import from_dict, to_dict
from xling.errors import XlingError
from xling.objectives.registry import objective_kind
from xling.objectives.sentence import SentenceConfig
from xling.tokenization.vocab import Vocab

DROPOUT_KEYS = ("dropout", "attn_dropout")  # may change when starting from a saved model


def trained_languages(objectives: list[Any], spec: SentenceConfig) -> dict[str, list[str]]:
    """``{"languages": encoder-side languages, "target_languages": decoder targets}`` of a run."""
    from xling.objectives.registry import BuildContext

    ctx = BuildContext(vocab=None, model_type="sentence", data=None, sections={"sentence": spec})
    src: set[str] = set()
    tgt: set[str] = set()
    for o in objectives:
        kind = objective_kind(o.type)
        for d in kind.expand(list(o.langs), ctx) if kind.expand else []:
            a, b = d.split("-", 1)
            src.add(a)
            if kind.ranking:
                src.add(b)
            else:
                tgt.add(b)
    return {"languages": sorted(src), "target_languages": sorted(tgt)}


# ---------------------------------------------------------------- the model


def _sizes(vocab: Vocab) -> dict[str, int]:
    return {"vocab_size": len(vocab), "n_langs": len(vocab.languages)}


def _section(model: dict[str, Any], vocab: Vocab, base_transformer: dict | None = None):
    """SentenceEmbedderConfig from the config's model section (sizes from the vocabulary)."""
    from xling.embeddings.config import SentenceEmbedderConfig

    sizes = _sizes(vocab)
    t = model.get("transformer")
    if t is not None and not isinstance(t, dict):
        raise XlingError("config model.transformer: expected a mapping")
    for k in sizes:
        if k in model or k in (t or {}):
            raise XlingError(f"config model.{k}: set by the vocabulary, remove it")
    data = dict(model)
    if base_transformer is not None:
        data.setdefault("encoder", "transformer")
        t = {**base_transformer, **(t or {})}
    if t is not None:
        data["transformer"] = {**t, **sizes}
    return from_dict(SentenceEmbedderConfig, {**data, **sizes}, "model.")


def _changed(section: dict[str, Any], have: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in section.items():
        if isinstance(v, dict) and isinstance(have.get(k), dict):
            out += _changed(v, have[k], f"{prefix}{k}.")
        elif k not in DROPOUT_KEYS and have.get(k) != v:
            out.append(f"{prefix}{k}")
    return out


def init_sentence_model(model: dict[str, Any], vocab: Vocab, init: str, max_len: int):
    """The sentence embedder to train: fresh from the ``model`` section; from ``init``, a saved
    XLM encoder (copied into a transformer embedder, fresh decoder) or a saved sentence
    embedder (continued; only dropout may change)."""
    from xling.embeddings.model import SentenceEmbedder
    from xling.models.encoder import TransformerEncoder
    from xling.models.io import read_model_config

    if not init:
        emb = SentenceEmbedder(_section(model, vocab))
    else:
        meta = read_model_config(init)
        if meta["model_type"] == TransformerEncoder.model_type:
            xlm = TransformerEncoder.from_pretrained(init)
            cfg = _section(model, vocab, base_transformer=to_dict(xlm.config))
            if xlm.config.vocab_size != len(vocab) or xlm.config.n_langs != len(vocab.languages):
                raise XlingError(f"init {init}: its vocabulary differs from data.vocab")
            emb = SentenceEmbedder.from_encoder(xlm, cfg)
        elif meta["model_type"] == SentenceEmbedder.model_type:
            changed = _changed(model, meta["config"])
            if changed:
                raise XlingError(f"config model.{changed[0]}: the architecture comes from init={init}; "
                                 f"only dropout may change")
            emb = SentenceEmbedder.from_pretrained(init)
            if emb.config.vocab_size != len(vocab):
                raise XlingError(f"init {init}: its vocabulary differs from data.vocab")
            over = {k: float(v) for k, v in model.items() if k == "dropout"}
            t_over = {k: float(v) for k, v in (model.get("transformer") or {}).items() if k in DROPOUT_KEYS}
            if over or t_over:
                c = emb.config
                t = dataclasses.replace(c.transformer, **t_over) if c.transformer is not None else None
                rebuilt = SentenceEmbedder(dataclasses.replace(c, transformer=t, **over))
                rebuilt.load_state_dict(emb.state_dict())
                emb = rebuilt
        else:
            raise XlingError(f"init {init}: a {meta['model_type']} cannot initialise model_type sentence")
    if emb.max_positions is not None and max_len + 2 > emb.max_positions:
        raise XlingError(f"data.max_len={max_len} (+ <s> </s>) exceeds the encoder's max_positions="
                         f"{emb.max_positions}: lower data.max_len")
    return emb


# ---------------------------------------------------------------- hard negatives


def cluster_ranking_tasks(tasks: list, model, vocab: Vocab, max_tokens: int, seed: int = 0,
                          batch_size: int = 128) -> int:
    """``sentence.hard_negatives``: give every translation_ranking task ``clusters`` (n,), the
    k-means cluster of each pair's pivot (target) sentence embedded by ``model``, with about
    one batch of pairs per cluster, so that batches hold similar pairs. Equal pivot texts
    share a cluster (and are no negatives of each other: the loss leaves duplicates out).
    Returns the number of clusters (0: no ranking task)."""
    import faiss

    from xling.embeddings.api import embed_ids

    ranking = [t for t in tasks if objective_kind(t.group).ranking]
    if not ranking:
        return 0
    keys = {tuple(int(i) for i in e[1]): None for t in ranking for e in t.examples}  # unique pivot sentences
    unique = list(keys)
    emb = torch.nn.functional.normalize(embed_ids(model, unique, vocab.bos_id, vocab.eos_id, batch_size), dim=-1)
    pairs_per_batch = max_tokens / float(np.mean(np.concatenate([t.lengths for t in ranking])))
    k = int(min(len(unique), max(1, round(len(unique) / max(pairs_per_batch, 1.0)))))
    x = np.ascontiguousarray(emb.numpy(), dtype=np.float32)
    km = faiss.Kmeans(x.shape[1], k, niter=20, seed=seed, spherical=True, verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=max(256, len(unique) // k + 1))
    km.train(x)
    _, assign = km.index.search(x, 1)  # (U, 1)
    cluster_of = dict(zip(unique, assign[:, 0].tolist()))
    for t in ranking:
        t.clusters = np.array([cluster_of[tuple(int(i) for i in e[1])] for e in t.examples], dtype=np.int64)
    return k


# ---------------------------------------------------------------- validation


def retrieval_valid_fn(tasks: list, vocab: Vocab, batch_size: int = 64):
    """valid_fn part for sentence models: P@1 of every pair (both directions, cosine) over
    the valid examples of the tasks (``p1/{l1}-{l2}``, ``p1/{l1}-{l2}@{domain}`` for an objective's own
    corpus, and their mean ``p1/avg``)."""
    from xling.embeddings.api import embed_ids

    sets: dict[str, tuple[list, list, int, int]] = {}
    for t in tasks:
        s, g = t.lang
        if s == g:
            continue
        name = "-".join(sorted((vocab.languages[s], vocab.languages[g]))) + (f"@{t.domain}" if t.domain else "")
        sets.setdefault(name, ([e[0] for e in t.examples], [e[1] for e in t.examples], s, g))  # (x, y, ...) examples

    def valid(model) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, (xs, ys, s, g) in sorted(sets.items()):
            x = embed_ids(model, xs, vocab.bos_id, vocab.eos_id, batch_size, lang_id=s)  # (N, D)
            y = embed_ids(model, ys, vocab.bos_id, vocab.eos_id, batch_size, lang_id=g)
            out[f"p1/{name}"] = float(np.mean(p_at_1(x, y)))
        if sets:
            out["p1/avg"] = float(np.mean([out[f"p1/{n}"] for n in sets]))
        return out

    return valid


def p_at_1(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Share of rows of x whose nearest y (cosine) is its own pair, and the other way round."""
    sim = torch.nn.functional.normalize(x.float(), dim=-1) @ torch.nn.functional.normalize(y.float(), dim=-1).T
    gold = torch.arange(sim.shape[0])
    return float((sim.argmax(1) == gold).float().mean()), float((sim.argmax(0) == gold).float().mean())
