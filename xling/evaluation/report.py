"""Evaluating an XLM encoder on a corpus split: per-language MLM perplexity and
the TLM translation probe, as one JSON-able result with a signature."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xling.data.batching import make_stream
from xling.data.readers import load_corpus_split, load_parallel_split
from xling.evaluation.signature import model_hash, signature
from xling.evaluation.xlm import mlm_scores, translation_probe
from xling.models.encoder import TransformerEncoder
from xling.models.record import read_record
from xling.tokenization.langs import check_pair
from xling.tokenization.vocab import Vocab
from xling.utils.io import read_json, sha256_files


def corpus_hash(corpus: str | Path) -> str:
    manifest = Path(corpus) / "manifest.json"
    if manifest.is_file():
        return str(read_json(manifest).get("sha256", "?"))[:8]
    return sha256_files([p for p in Path(corpus).iterdir() if p.is_file()])[:8]


def evaluate_xlm(
    model_dir: str | Path,
    corpus: str | Path,
    langs: list[str],
    pairs: list[str],
    split: str = "test",
    seed: int = 0,
    stream_len: int | None = None,
    max_rows: int = 200,
    max_pairs: int = 1000,
    progress: bool = True,
) -> dict:
    """MLM perplexity / accuracy per language and the with/without-translation
    masked-token accuracy per pair direction, on ``split`` of ``corpus``."""
    from tqdm import tqdm

    model = TransformerEncoder.from_pretrained(model_dir)
    vocab = Vocab.load(model_dir)
    if stream_len is None:  # evaluate on streams as long as the model was trained on
        stream_len = min(read_record(model_dir).stream_len or 256, model.config.max_positions)
    pair_langs = {pair: check_pair(pair, "pair") for pair in pairs}
    for lang in [*langs, *(c for p in pair_langs.values() for c in p)]:
        vocab.lang_id(lang)  # every language and data file checked before any scoring
    mono = {lang: load_corpus_split(corpus, split, lang) for lang in langs}
    para = {pair: load_parallel_split(corpus, split, *pair_langs[pair]) for pair in pairs}
    result: dict = {"mlm": {}, "translation_probe": {}}
    for lang in tqdm(langs, desc="mlm", disable=not progress):
        lid = vocab.lang_id(lang)
        rows = make_stream(vocab.encode_batch(mono[lang], lang=lang), stream_len, vocab.eos_id)
        result["mlm"][lang] = mlm_scores(model, rows[:max_rows], lid, len(vocab), seed=seed)
    for pair in tqdm(pairs, desc="probe", disable=not progress):
        l1, l2 = pair_langs[pair]
        a, b = para[pair]
        a, b = a[:max_pairs], b[:max_pairs]
        xa = [np.asarray(x[:126], dtype=np.int64) for x in vocab.encode_batch(a, lang=l1)]
        xb = [np.asarray(x[:126], dtype=np.int64) for x in vocab.encode_batch(b, lang=l2)]
        for src, tgt, xs, xt in ((l1, l2, xa, xb), (l2, l1, xb, xa)):
            result["translation_probe"][f"{src}|{tgt}"] = translation_probe(
                model, list(zip(xs, xt)), vocab.lang_id(src), vocab.lang_id(tgt), seed=seed,
                bos_id=vocab.bos_id, eos_id=vocab.eos_id, mask_id=vocab.mask_id,
            )
    result["signature"] = signature(
        "xlm-eval",
        model=model_hash(model_dir),
        data=corpus_hash(corpus),
        split=split,
        seed=seed,
        mask="0.15-80/10/10",
        probe="0.15-all-mask",
        stream=stream_len,
    )
    return result


def format_table(result: dict) -> str:
    """Markdown tables of an :func:`evaluate_xlm` result."""
    lines = ["| language | MLM perplexity | MLM accuracy | masked tokens |", "|---|---:|---:|---:|"]
    for lang, s in result["mlm"].items():
        lines.append(f"| {lang} | {s['ppl']:.2f} | {s['acc']:.3f} | {s['n']} |")
    lines += ["", "| masked language | translation | acc alone | acc with translation | gap | tokens | "
              "only with / only alone | McNemar p |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for key, s in result["translation_probe"].items():
        a, b = key.split("|")
        lines.append(
            f"| {a} | {b} | {s['acc_alone']:.3f} | {s['acc_with_translation']:.3f} | {s['gap']:+.3f} | {s['n']} | "
            f"{s.get('only_with', '?')} / {s.get('only_alone', '?')} | {s.get('p_value', float('nan')):.2g} |"
        )
    lines += ["", f"`{result['signature']}`"]
    return "\n".join(lines)
