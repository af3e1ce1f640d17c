"""``xling translate`` and ``xling generate``: decode text with a trained model.

    xling translate --model DIR --src-lang de --tgt-lang en [--input FILE|-] [--output FILE]
                    [--beam 5] [--lenpen 1.0] [--max-len-a 1.2 --max-len-b 10] [--min-len 1]
                    [--no-repeat-ngram N] [--sampling --temperature T --top-k K --top-p P --seed S]
                    [--n-best N] [--batch-size 64] [--max-tokens N] [--device cpu|cuda]
    xling generate --model DIR --lang en ...     (source language = target language, e.g. summarization)

Input: a UTF-8 file or stdin (``-``, the default), one text per line, read strictly
(invalid UTF-8 is an error naming the line); empty lines are allowed and give empty
outputs. Output: one line per input line, in input order, to ``--output`` (written
atomically) or stdout. With ``--n-best N`` > 1 each line is ``LINE<TAB>SCORE<TAB>TEXT``
(LINE: 1-based input line number), up to N per input, best first.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from xling.commands import args as A
from xling.errors import XlingError
from xling.utils.io import read_lines, write_lines_atomic

DEFAULT_BEAM = 5  # beam search unless --sampling (which decodes with beam 1)


def read_input(spec: str) -> list[str]:
    """Lines of file ``spec`` or of stdin (``-``), strict UTF-8, empty lines kept."""
    if spec != "-":
        return read_lines(spec, allow_empty=True)
    data = sys.stdin.buffer.read()
    with tempfile.TemporaryDirectory() as tmp:  # one strict reader for files and stdin
        path = Path(tmp) / "stdin"
        path.write_bytes(data)
        try:
            return read_lines(path, allow_empty=True)
        except XlingError as e:
            raise XlingError(str(e).replace(str(path), "<stdin>", 1)) from None


def generation_config(args: argparse.Namespace):
    """GenerationConfig from the command-line options (validated there)."""
    from xling.generation.base import GenerationConfig

    beam = args.beam if args.beam is not None else (1 if args.sampling else DEFAULT_BEAM)
    return GenerationConfig(
        beam=beam, max_len_a=args.max_len_a, max_len_b=args.max_len_b, min_len=args.min_len,
        length_penalty=args.lenpen, no_repeat_ngram=args.no_repeat_ngram,
        early_stopping=not args.no_early_stopping, sampling=args.sampling, temperature=args.temperature,
        top_k=args.top_k, top_p=args.top_p, n_best=args.n_best, seed=args.seed)


def _device(name: str | None) -> str:
    import torch

    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return A.device(name)


def run(args: argparse.Namespace) -> int:
    from xling.generation.api import generate_nbest, load_generation_model

    src_lang, tgt_lang = (args.lang, args.lang) if args.command == "generate" else (args.src_lang, args.tgt_lang)
    cfg = generation_config(args)
    texts = read_input(args.input)  # input errors before the (slower) model load
    m = load_generation_model(args.model, device=_device(args.device), quantize=args.quantize)
    for code in (src_lang, tgt_lang):
        m.vocab.lang_id(code)
    nbest = generate_nbest(m.model, m.vocab, texts, src_lang, tgt_lang, cfg, batch_size=args.batch_size,
                           max_tokens=args.max_tokens, progress=not args.quiet, max_src_len=m.source_len,
                           decoding=m.decoding)
    if cfg.n_best == 1:
        lines = [hyps[0][0] for hyps in nbest]
    else:
        lines = [f"{i}\t{score:.4f}\t{text}" for i, hyps in enumerate(nbest, 1) for text, score in hyps]
    if args.output:
        write_lines_atomic(args.output, lines)
    else:
        sys.stdout.write("".join(line + "\n" for line in lines))
        sys.stdout.flush()
    return 0


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="DIR", help="model directory (config.json, weights, vocabulary)")
    p.add_argument("--input", default="-", metavar="FILE", help="input text, one per line; - = stdin (default)")
    p.add_argument("--output", metavar="FILE", type=A.out_file, help="output file (written atomically); default stdout")
    s = p.add_argument_group("search")
    s.add_argument("--beam", type=A.positive_int, default=None, help=f"beam size (default {DEFAULT_BEAM}; 1 = greedy)")
    s.add_argument("--lenpen", type=A.finite_float, default=1.0, help="length penalty alpha: score = logprob / length**alpha")
    s.add_argument("--max-len-a", type=A.float_in(0), default=1.2, help="max output tokens = a * source tokens + b")
    s.add_argument("--max-len-b", type=A.count, default=10, help="see --max-len-a")
    s.add_argument("--min-len", type=A.count, default=1, help="fewest output tokens before EOS is allowed")
    s.add_argument("--no-repeat-ngram", type=A.count, default=0, metavar="N", help="never repeat an n-gram of size N")
    s.add_argument("--no-early-stopping", action="store_true",
                   help="beam: go on until no live hypothesis can beat the finished ones")
    s.add_argument("--n-best", type=A.positive_int, default=1, metavar="N",
                   help="hypotheses per input (LINE\\tSCORE\\tTEXT lines)")
    r = p.add_argument_group("sampling")
    r.add_argument("--sampling", action="store_true", help="sample tokens instead of searching")
    r.add_argument("--temperature", type=A.float_in(0, low_open=True), default=1.0, help="sampling temperature")
    r.add_argument("--top-k", type=A.count, default=0, help="sample among the k most likely tokens (0 = all)")
    r.add_argument("--top-p", type=A.fraction, default=1.0, help="sample from the smallest set with this mass (nucleus)")
    r.add_argument("--seed", type=A.count, default=0, help="sampling seed")
    b = p.add_argument_group("batching")
    b.add_argument("--batch-size", type=A.positive_int, default=64, help="sentences per batch")
    b.add_argument("--max-tokens", type=A.positive_int, default=None, help="padded source tokens per batch (beams counted)")
    b.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.add_argument("--quantize", choices=["int8"], default=None,
                   help="int8: dynamic int8 Linear layers on CPU (faster; check BLEU on a dev set)")
    p.set_defaults(func=run)


def register(sub) -> None:
    t = sub.add_parser("translate", help="translate text with an encoder-decoder or UNILM model",
                       description="Translate text, one input line -> one output line.")
    t.add_argument("--src-lang", required=True, type=A.lang, help="source language code")
    t.add_argument("--tgt-lang", required=True, type=A.lang, help="target language code")
    _add_options(t)
    g = sub.add_parser("generate", help="generate text in the input's language (e.g. summarization)",
                       description="Generate one output line per input line, in the same language.")
    g.add_argument("--lang", required=True, type=A.lang, help="language code of the input and the output")
    _add_options(g)
