"""``xling vocab``: train the shared SentencePiece vocabulary on a corpus's training split."""

from __future__ import annotations

import argparse

from xling.errors import XlingError
from xling.commands import args as A
from xling.tokenization.vocab import MODEL_TYPES, Vocab, train_vocab_from_corpus


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``vocab`` subcommand."""
    p = subparsers.add_parser(
        "vocab", help="train a shared multilingual SentencePiece vocabulary",
        description="Train a shared SentencePiece vocabulary on the train.{lang} files of a corpus "
                    "(never valid/test), sampling sentences per language with exponential smoothing.")
    p.add_argument("--corpus", required=True, metavar="DIR", help="corpus directory (Moses layout)")
    p.add_argument("--langs", default=None, type=A.lang_list, metavar="L1,L2,...",
                   help="comma-separated language codes (default: the corpus manifest's languages)")
    p.add_argument("--size", type=A.int_at_least(16), default=8000, help="vocabulary size, special and byte pieces included")
    p.add_argument("--alpha", type=A.float_in(0), default=0.5,
                   help="sampling smoothing q_i ~ p_i^alpha (1 = natural, 0 = uniform; XLM 0.5)")
    p.add_argument("--max-sentences", type=A.positive_int, default=300_000, help="sentences sampled for training in all")
    p.add_argument("--model-type", choices=MODEL_TYPES, default="unigram", help="SentencePiece algorithm")
    p.add_argument("--character-coverage", type=A.fraction, default=0.9995,
                   help="share of characters covered by pieces (rest: byte fallback)")
    p.add_argument("--seed", type=A.count, default=0, help="sampling seed")
    p.add_argument("--out", required=True, metavar="DIR", type=A.out_dir, help="output directory (spm.model + vocab.json)")
    p.set_defaults(func=run)


def parse_langs(text: str | None) -> list[str] | None:
    """``"en, de"`` -> ``["en", "de"]``; None stays None (use the manifest)."""
    if text is None:
        return None
    langs = [c.strip() for c in text.split(",") if c.strip()]
    if not langs:
        raise XlingError(f"--langs {text!r}: no language codes")
    return langs


def summary_lines(vocab: Vocab) -> list[str]:
    """One line per language: sampled sentences, sampling probability, fertility."""
    sampling = vocab.meta.get("sampling", {}).get("languages", {})
    fert = vocab.meta.get("fertility", {})
    lines = []
    for lang in vocab.languages:
        s, f = sampling.get(lang, {}), fert.get(lang, {})
        line = (f"{lang}: {s.get('sampled', 0)} of {s.get('available', 0)} sentences sampled "
                f"(p={s.get('probability', 0.0):.3f}), "
                f"{f.get('tokens_per_sentence', 0.0):.1f} tokens/sentence, "
                f"{f.get('chars_per_token', 0.0):.2f} chars/token")
        if s.get("capped"):
            line += f" [capped: wanted {s.get('wanted', 0.0):.0f}, has only {s.get('available', 0)}]"
        lines.append(line)
    return lines


def run(args: argparse.Namespace) -> int:
    """Train, save and print a per-language summary."""
    vocab = train_vocab_from_corpus(
        args.corpus, parse_langs(args.langs), args.out, vocab_size=args.size, alpha=args.alpha,
        max_sentences=args.max_sentences, seed=args.seed, model_type=args.model_type,
        character_coverage=args.character_coverage)
    for line in summary_lines(vocab):
        print(line)
    print(f"vocab: {len(vocab)} pieces, {len(vocab.languages)} languages -> {args.out}")
    return 0
