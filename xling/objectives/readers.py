"""Example readers shared by several objective kinds (see :mod:`xling.objectives.registry`):
``(ctx, task lang, corpus, split, cache) -> (examples, language id or (src, tgt) ids)``."""

from __future__ import annotations

from xling.data.examples import nonempty, pairs, sentences, stream_rows
from xling.objectives.registry import BuildContext


def read_streams(ctx: BuildContext, lang: str, corpus: str, split: str, cache: dict) -> tuple[list, int]:
    """XLM stream rows of one language (mlm, clm and unilm: read once per run)."""
    lang_id = ctx.vocab.lang_id(lang)  # an unknown language is an error before any reading
    key = (corpus, split, lang, ctx.data.stream_len)
    if key not in cache:
        cache[key] = stream_rows(ctx.vocab, corpus, split, lang, ctx.data.stream_len)
    return list(cache[key]), lang_id


def read_direction(ctx: BuildContext, direction: str, corpus: str, split: str, cache: dict
                   ) -> tuple[list, tuple[int, int]]:
    """Aligned pairs of ``src-tgt``, sources cut at data.max_len, targets at data.max_tgt_len,
    pairs with an empty side dropped."""
    src, tgt = direction.split("-", 1)
    ids = (ctx.vocab.lang_id(src), ctx.vocab.lang_id(tgt))  # unknown languages before any reading
    d = ctx.data
    ex = pairs(ctx.vocab, corpus, split, src, tgt, max(d.max_len, d.max_tgt_len))
    return nonempty([(x[: d.max_len], y[: d.max_tgt_len]) for x, y in ex]), ids


def read_sentences(ctx: BuildContext, lang: str, corpus: str, split: str, cache: dict) -> tuple[list, int]:
    """Non-empty sentences of one language, cut at data.max_len (mass, denoise, backtranslation)."""
    lang_id = ctx.vocab.lang_id(lang)
    return [x for x in sentences(ctx.vocab, corpus, split, lang, ctx.data.max_len) if len(x)], lang_id
