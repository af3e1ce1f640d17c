"""xling next to fairseq's transformer: beam-5 generation speed and BLEU at equal training time.

One direction (en->de by default) of the Bible corpus, one SentencePiece vocabulary for both
systems (xling's; fairseq gets the same pieces: each line is written as xling's token ids and
fairseq's joined dictionary holds exactly those ids), the same training pairs (xling's own
tokenised, truncated pairs), the same network size (configs/bench/mt_model.yaml: 4+4 layers,
d_model 256, d_ff 1024, 4 heads, shared embeddings, dropout 0.1, label smoothing 0.1, inverse-
sqrt lr 7e-4 / 200 warmup; fairseq's ``transformer`` is given xling's pre-norm, GELU, learned
positions, weight decay 0.01 and clipping 1.0), the same number of batches per epoch (fairseq's
``--max-tokens`` counts the longer side of a pair, xling's budget both sides: the script picks
the fairseq budget that matches), the same wall-clock minutes, then the same test sentences (the
first ``--n-test`` verses of the test chapters), beam 5, max length 1.2 * source + 10, batches
of ``--batch-size`` sentences, ``--threads`` torch threads everywhere (OMP/MKL_NUM_THREADS).

    bash benchmarks/setup_fairseq.sh            # once: fairseq-fixed in .cache/fairseq-venv
    python benchmarks/fairseq_peer.py [--out runs/bench_fairseq] [--pair en-de] [--minutes 12]
        [--n-test 1000] [--beam 5] [--threads 2] [--xling-run runs/bench_mt/scratch.en-de]
        [--skip-train] [--repeats 1]

The training budgets are wall-clock minutes (``--stop-time-hours``, ``trainer.max_minutes``):
run it on an otherwise idle machine. fairseq pitfalls handled (REFERENCE.md section 3):
``--required-batch-size-multiple 1`` (otherwise fairseq-generate silently drops the last
sentences; the script also checks that every test sentence has a hypothesis) and
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (torch >= 2.6 refuses fairseq's pickled checkpoints).

Timings (the best of ``--repeats``; all are kept in results.json):
- **generation only**: fairseq's own ``Translated N sentences (M tokens) ... tokens/s`` (its
  timer around ``task.inference_step``: encoder + beam search, per batch); for xling, in this
  process, the time inside ``step_decoder`` (encoder) + ``search.generate`` per batch, measured
  by wrapping the two names ``xling.generation.api`` calls. Model loading, data reading,
  batching, (de)tokenisation and writing are excluded on both sides. Output tokens are the best
  hypotheses' tokens with EOS on both sides.
- **end to end**: wall (and CPU) seconds of ``fairseq-generate`` / ``xling translate`` as
  subprocesses: interpreter start, imports, model load, reading, generation and writing.

BLEU / chrF: ``xling evaluate bleu`` (sacrebleu) on the SentencePiece-decoded outputs against
the raw reference verses, the same file for both. Trainings that finished are reused (and an
interrupted xling run resumes); decoding always runs again. Writes OUT/results.json and prints
a markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MT_CONFIG = ROOT / "configs" / "bench" / "mt_model.yaml"
FAIRSEQ_VENV = ROOT / ".cache" / "fairseq-venv"
SHARED_VOCAB = ROOT / "runs" / "bench_mt" / "vocab"  # built by benchmarks/mt_pretraining.py
FIRST_PIECE = 5  # xling ids 0-4 are <pad> <unk> <s> </s> <mask>; fairseq has its own specials
UNK = 1


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench_fairseq")
    ap.add_argument("--corpus", default="data/bible")
    ap.add_argument("--vocab", default=None, help=f"xling vocabulary dir (default {SHARED_VOCAB.relative_to(ROOT)} "
                    "when it exists, else OUT/vocab); built over the pair's languages when missing")
    ap.add_argument("--pair", default="en-de", help="SRC-TGT direction")
    ap.add_argument("--minutes", type=float, default=12.0, help="training minutes per system")
    ap.add_argument("--n-test", type=int, default=1000, help="first N verses of the test chapters")
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64, help="sentences per generation batch (both systems)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads for every stage")
    ap.add_argument("--repeats", type=int, default=1, help="decoding runs per system (best is reported)")
    ap.add_argument("--xling-run", default=None, help="reuse this finished xling run (same data, size, minutes)")
    ap.add_argument("--fairseq-max-tokens", type=int, default=None,
                    help="fairseq --max-tokens (default: the budget giving as many batches per epoch as "
                    "xling's data.max_tokens, which counts source + target tokens of a pair; fairseq the longer side)")
    ap.add_argument("--fairseq-venv", default=str(FAIRSEQ_VENV.relative_to(ROOT)))
    ap.add_argument("--quantize", default="int8", help="also decode xling with these --quantize modes "
                    "(comma-separated; '' for none)")
    ap.add_argument("--skip-train", action="store_true", help="decode existing models only")
    return ap.parse_args()


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def sh(cmd: list[str], log: Path | None = None, env: dict | None = None) -> tuple[float, float, str]:
    """Run ``cmd`` (echoed) from ROOT; its wall seconds, CPU seconds (user + system, all
    threads: less sensitive than wall time to other processes on a shared machine) and
    output (stdout + stderr, also written to ``log``). A failure shows the output's tail and exits."""
    print("$ " + " ".join(cmd), flush=True)
    t0, c0 = time.perf_counter(), children_cpu()
    p = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds, cpu = time.perf_counter() - t0, children_cpu() - c0
    if log is not None:
        log.write_text(p.stdout)
    if p.returncode:
        sys.exit(f"{cmd[0]} failed (exit {p.returncode}):\n" + "\n".join(p.stdout.splitlines()[-30:]))
    return seconds, cpu, p.stdout


def last(pattern: str, text: str, cast=float, default=None):
    """The last match of ``pattern``'s group 1 in ``text`` (commas dropped), cast."""
    found = re.findall(pattern, text)
    return cast(found[-1].replace(",", "")) if found else default


# ---------------------------------------------------------------- data (one vocabulary)

def xling_config(corpus: Path, vocab: Path, src: str, tgt: str) -> list[str]:
    """The --set overrides of the xling run (as benchmarks/mt_pretraining.py's scratch system;
    ``pipeline.train_for`` adds the minutes)."""
    return [f"data.corpus={corpus}", f"data.vocab={vocab}", f"objectives=[{{type: translation, langs: [{src}-{tgt}]}}]"]


def write_ids(path: Path, rows) -> None:
    path.write_text("".join(" ".join(str(i) if i != UNK else "<unk>" for i in r) + "\n" for r in rows))


def prepare_fairseq_data(data: Path, sets: list[str], vocab, src: str, tgt: str, test_src: Path, test_tgt: Path,
                         env: dict, fs_bin: Path) -> tuple[Path, Path]:
    """fairseq's binaries: train/valid are xling's own training pairs (tokenised, truncated,
    empty ones dropped, by :func:`xling.tasks.build.task_data`), once; the test set is what
    `xling translate` feeds the model (sources cut to the trained length), every time. The
    joined dictionary holds xling's piece ids; returns the train and test binary dirs."""
    from xling.config import load_config
    from xling.tasks.build import task_data
    from xling.tasks.train import TrainConfig, build_context
    from xling.utils.io import read_lines

    cfg = load_config(TrainConfig, MT_CONFIG, sets)
    pre = [str(fs_bin / "fairseq-preprocess"), "--source-lang", src, "--target-lang", tgt,
           "--srcdict", str(data / "dict.txt"), "--joined-dictionary", "--workers", "1", "--destdir"]
    if not (data / "bin" / f"train.{src}-{tgt}.{src}.bin").is_file():
        data.mkdir(parents=True, exist_ok=True)
        s = build_context(cfg, vocab)
        counts: Counter = Counter()
        for split in ("train", "valid"):
            ex, _, _ = task_data("translation", f"{src}-{tgt}", s, str(cfg.data.corpus), split)
            write_ids(data / f"{split}.{src}", (x.tolist() for x, _ in ex))
            write_ids(data / f"{split}.{tgt}", (y.tolist() for _, y in ex))
            if split == "train":
                for x, y in ex:
                    counts.update(x.tolist() + y.tolist())
        (data / "dict.txt").write_text("".join(f"{i} {counts[i]}\n" for i in range(FIRST_PIECE, len(vocab))))
        shutil.rmtree(data / "bin", ignore_errors=True)
        sh(pre + [str(data / "bin"), "--trainpref", str(data / "train"), "--validpref", str(data / "valid")],
           log=data / "preprocess.log", env=env)
    write_ids(data / f"test.{src}", (x[: cfg.data.max_len] for x in vocab.encode_batch(read_lines(test_src))))
    write_ids(data / f"test.{tgt}", (y[: cfg.data.max_tgt_len] for y in vocab.encode_batch(read_lines(test_tgt))))
    shutil.rmtree(data / "bin_test", ignore_errors=True)  # fairseq-preprocess refuses existing dictionaries
    sh(pre + [str(data / "bin_test"), "--testpref", str(data / "test")], log=data / "preprocess_test.log", env=env)
    return data / "bin", data / "bin_test"


# ---------------------------------------------------------------- training

def fairseq_batches(n_tokens, order, max_tokens: int) -> int:
    """Batches per epoch of fairseq's batch_by_size: greedy over ``order``, a batch holds at
    most ``max_tokens`` = size x its longest ``n_tokens`` (max(source, target) + EOS)."""
    count, size, longest = 1, 0, 0
    for i in order:
        longest2 = max(longest, n_tokens[i])
        if size and longest2 * (size + 1) > max_tokens:
            count, size, longest2 = count + 1, 0, n_tokens[i]
        size, longest = size + 1, longest2
    return count


def matched_max_tokens(data: Path, src: str, tgt: str, xling_max_tokens: int) -> dict:
    """The fairseq --max-tokens whose batches per epoch match xling's on the same pairs:
    xling budgets source + target + 3 padded tokens per pair (``token_budget_batches``),
    fairseq max(source, target) + 1, so an equal number would double fairseq's batches."""
    import numpy as np

    from xling.data.batching import token_budget_batches

    s, t = ([len(line.split()) for line in (data / f"train.{x}").open()] for x in (src, tgt))
    s, t = np.array(s), np.array(t)
    n_xling = len(token_budget_batches(s + t + 3, xling_max_tokens))
    n_tok = (np.maximum(s, t) + 1).tolist()
    order = np.lexsort((t, s)).tolist()  # fairseq's ordered_indices: by source length, then target length
    lo, hi = max(n_tok), 2 * xling_max_tokens
    while lo < hi:  # the smallest budget with no more batches than xling's
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fairseq_batches(n_tok, order, mid) <= n_xling else (mid + 1, hi)
    return {"max_tokens": lo, "xling_batches_per_epoch": n_xling,
            "fairseq_batches_per_epoch": fairseq_batches(n_tok, order, lo), "pairs": len(s)}


def check_reusable(run: Path, expected_sets: list[str], minutes: float) -> None:
    """Exit unless ``run`` is a finished xling run with the config this benchmark would use,
    trained for ``minutes`` (within 5% or 6 seconds, all resumed calls together)."""
    from xling.config import load_config, to_dict
    from xling.tasks.train import TrainConfig
    from pipeline import trained_minutes

    if not (run / "model" / "config.json").is_file() or not (run / "config.yaml").is_file():
        sys.exit(f"--xling-run {run}: no finished run (model/config.json, config.yaml)")
    want = to_dict(load_config(TrainConfig, MT_CONFIG, expected_sets))
    have = to_dict(load_config(TrainConfig, run / "config.yaml"))
    diffs = []
    for key in ("model_type", "init", "objectives", "model", "seq2seq"):
        if want[key] != have[key]:
            diffs.append(f"{key}: {have[key]!r} != {want[key]!r}")
    for key in ("max_len", "max_tgt_len", "max_tokens"):
        if want["data"][key] != have["data"][key]:
            diffs.append(f"data.{key}: {have['data'][key]} != {want['data'][key]}")
    for key in ("corpus", "vocab"):
        a, b = (ROOT / Path(str(have["data"][key]))).resolve(), (ROOT / Path(str(want["data"][key]))).resolve()
        if a != b:
            diffs.append(f"data.{key}: {a} != {b}")
    for key in ("lr", "betas", "eps", "weight_decay", "warmup_steps", "schedule", "clip_norm", "grad_accum",
                "dtype", "max_steps", "seed"):
        if want["trainer"][key] != have["trainer"][key]:
            diffs.append(f"trainer.{key}: {have['trainer'][key]} != {want['trainer'][key]}")
    trained = trained_minutes(run)
    if abs(trained - minutes) > max(0.05 * minutes, 0.1):  # the last step ends past the budget
        diffs.append(f"trained {trained:.2f} minutes, not {minutes}")
    if diffs:
        sys.exit(f"--xling-run {run}: not the same setup: " + "; ".join(diffs))


def fairseq_train_cmd(fs_bin: Path, bin_dir: Path, ckpt: Path, cfg, vocab, minutes: float,
                      max_tokens: int) -> list[str]:
    """fairseq's ``transformer`` with the xling config's sizes and choices (pre-norm or not,
    activation, learned positions, shared embeddings, dropout, label smoothing, Adam betas /
    eps / decoupled weight decay, clipping, inverse-sqrt schedule; no validation, as xling's
    ``valid_every: 0``). xling's language embeddings (n_langs x d_model) have no counterpart."""
    from xling.tasks.recipes import model_config

    m, tr = model_config(cfg, vocab), cfg.trainer
    if not m.tie_embeddings:
        sys.exit(f"{MT_CONFIG}: the fairseq peer shares all embeddings; set model.tie_embeddings: true")
    norm = ["--encoder-normalize-before", "--decoder-normalize-before"] if m.pre_norm else []
    return [str(fs_bin / "fairseq-train"), str(bin_dir), "--arch", "transformer", "--share-all-embeddings",
            "--encoder-layers", str(m.n_layers), "--decoder-layers", str(m.n_dec_layers),
            "--encoder-embed-dim", str(m.d_model), "--decoder-embed-dim", str(m.d_model),
            "--encoder-ffn-embed-dim", str(m.d_ff), "--decoder-ffn-embed-dim", str(m.d_ff),
            "--encoder-attention-heads", str(m.n_heads), "--decoder-attention-heads", str(m.n_heads),
            *norm, "--activation-fn", m.activation, "--encoder-learned-pos", "--decoder-learned-pos",
            "--max-source-positions", str(m.max_positions), "--max-target-positions", str(m.max_positions),
            "--dropout", str(m.dropout), "--attention-dropout", str(m.attn_dropout), "--activation-dropout", "0.0",
            "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", str(cfg.seq2seq.label_smoothing),
            "--optimizer", "adam", "--adam-betas", str(tuple(tr.betas)), "--adam-eps", str(tr.eps),
            "--weight-decay", str(tr.weight_decay), "--clip-norm", str(tr.clip_norm), "--lr", str(tr.lr),
            "--lr-scheduler", "inverse_sqrt", "--warmup-updates", str(tr.warmup_steps), "--warmup-init-lr", "0",
            "--max-tokens", str(max_tokens), "--required-batch-size-multiple", "1",
            "--stop-time-hours", f"{minutes / 60:.6f}", "--disable-validation", "--no-epoch-checkpoints",
            "--save-dir", str(ckpt), "--seed", str(tr.seed), "--cpu", "--num-workers", "0",
            "--log-format", "json", "--log-interval", "20"]


def train_fairseq(cmd: list[str], ckpt: Path, env: dict) -> dict:
    """Run (or reuse) the fairseq training; its updates, wall time, words/s and parameters."""
    summary = ckpt / "summary.json"
    if summary.is_file():
        return json.loads(summary.read_text())
    ckpt.mkdir(parents=True, exist_ok=True)
    seconds, _, out = sh(cmd, log=ckpt / "train.log", env=env)  # resumes from checkpoint_last.pt if present
    res = {"wall_s": seconds, "train_s": last(r"done training in ([\d.]+) seconds", out),
           "updates": last(r'"(?:train_)?num_updates": "?(\d+)', out, int),
           "wps": last(r'"(?:train_)?wps": "?([\d.]+)', out),
           "params": last(r"num\. (?:shared )?model params: ([\d,]+)", out, int), "command": " ".join(cmd)}
    summary.write_text(json.dumps(res, indent=1))
    return res


# ---------------------------------------------------------------- decoding

def generate_fairseq(fs_bin: Path, bin_dir: Path, ckpt: Path, src: str, tgt: str, args, out: Path, env: dict,
                     vocab) -> dict:
    """fairseq-generate on the binarised test set -> hypotheses (input order, decoded), timings."""
    gen = out / "fairseq_gen"
    shutil.rmtree(gen, ignore_errors=True)
    cmd = [str(fs_bin / "fairseq-generate"), str(bin_dir), "--path", str(ckpt / "checkpoint_last.pt"),
           "--gen-subset", "test", "--source-lang", src, "--target-lang", tgt, "--beam", str(args.beam),
           "--batch-size", str(args.batch_size), "--required-batch-size-multiple", "1",
           "--max-len-a", "1.2", "--max-len-b", "10", "--lenpen", "1.0", "--cpu", "--num-workers", "0",
           "--results-path", str(gen)]
    wall, cpu, log = sh(cmd, env=env)
    text = (gen / "generate-test.txt").read_text()
    hyps: dict[int, str] = {}
    for line in text.splitlines():
        if line.startswith("H-"):  # H-<id> <score> <tokens>: xling piece ids, <unk>
            head, _score, toks = (line.split("\t") + [""])[:3]
            ids = [UNK if t == "<unk>" else int(t) for t in toks.split() if t.isdigit() or t == "<unk>"]
            hyps[int(head[2:])] = vocab.decode(ids).replace("\r", " ").replace("\n", " ")
    text += log
    if sorted(hyps) != list(range(args.n_test)):
        sys.exit(f"fairseq-generate: {len(hyps)} hypotheses for {args.n_test} sentences (dropped batch?)")
    m = re.findall(r"Translated [\d,]+ sentences \(([\d,]+) tokens\) in [\d.]+s \([\d.]+ sentences/s, ([\d.]+) "
                   r"tokens/s\)", text)
    if not m:
        sys.exit("fairseq-generate: no 'Translated ... tokens/s' line in its output")
    n_tok, tok_s = int(m[-1][0].replace(",", "")), float(m[-1][1])
    return {"hyps": [hyps[i] for i in range(args.n_test)], "gen_s": n_tok / tok_s, "wall_s": wall, "cpu_s": cpu,
            "out_tokens": n_tok, "command": " ".join(cmd)}


def system_name(quantize: str | None) -> str:
    return f"xling-{quantize}" if quantize else "xling"


def generate_xling(model_dir: Path, src: str, tgt: str, args, test_src: Path, out: Path,
                   quantize: str | None = None) -> dict:
    """`xling translate` (end to end, subprocess), then the same decoding in this process with
    the encoder + search time measured (see the module doc); ``quantize``: its --quantize."""
    from xling.cli import build_parser
    from xling.commands.generate import generation_config
    from xling.generation import api
    from xling.utils.io import read_lines

    hyp = out / f"{system_name(quantize)}_hyp.{tgt}"
    argv = ["translate", "--model", str(model_dir), "--src-lang", src, "--tgt-lang", tgt, "--input", str(test_src),
            "--beam", str(args.beam), "--batch-size", str(args.batch_size)] + (["--quantize", quantize] if quantize else [])
    wall, cpu, _ = sh([sys.executable, "-m", "xling.cli", *argv, "--output", str(hyp), "--quiet"])
    cli = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    loaded = api.load_generation_model(model_dir, quantize=quantize)
    model, vocab = loaded.model, loaded.vocab
    load_s = time.perf_counter() - t0
    texts = read_lines(test_src, allow_empty=True)
    spent, tokens = [0.0], [0]
    originals = api.step_decoder, api.generate

    def timed(fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                out = fn(*a, **k)
            finally:
                spent[0] += time.perf_counter() - t
            if fn is originals[1]:  # best hypotheses' tokens with EOS, as fairseq counts
                tokens[0] += sum(len(h[0].tokens) + 1 for h in out)
            return out
        return wrapper

    api.step_decoder, api.generate = map(timed, originals)
    try:
        t0 = time.perf_counter()
        outs = api.generate_texts(model, vocab, texts, src, tgt, generation_config(cli), batch_size=args.batch_size,
                                  progress=False, max_src_len=api.trained_source_len(model_dir))
        total = time.perf_counter() - t0
    finally:
        api.step_decoder, api.generate = originals
    same = outs == read_lines(hyp, allow_empty=True)
    return {"gen_s": spent[0], "cpu_s": cpu, "in_process_s": total, "load_s": load_s, "wall_s": wall,
            "same_as_cli": same, "out_tokens": tokens[0], "params": model.num_parameters(),
            "command": "xling " + " ".join(argv)}


def bleu(hyp: Path, ref: Path, tgt: str, out: Path) -> dict:
    from pipeline import xling

    xling("evaluate", "bleu", "--hyp", str(hyp), "--ref", str(ref), "--lang", tgt, "--out", str(out))
    return json.loads(out.read_text())


# ---------------------------------------------------------------- main

def main() -> int:
    args = parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # every subprocess and this one
        os.environ[var] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    from xling.utils.io import write_lines_atomic
    from pipeline import head, run_meta, train_for, xling
    from xling.tokenization.vocab import Vocab

    src, tgt = args.pair.split("-")
    out, corpus = ROOT / args.out, (ROOT / args.corpus).resolve()
    vocab_dir = (ROOT / args.vocab) if args.vocab else (SHARED_VOCAB if (SHARED_VOCAB / "vocab.json").is_file()
                                                       else out / "vocab")
    vocab_dir = vocab_dir.resolve()
    fs_bin = (ROOT / args.fairseq_venv / "bin").resolve()
    if not (fs_bin / "fairseq-train").is_file():
        sys.exit(f"{fs_bin}/fairseq-train: missing; run `bash benchmarks/setup_fairseq.sh` first")
    out.mkdir(parents=True, exist_ok=True)
    if not (corpus / "manifest.json").is_file():
        xling("corpus", "bible", "--langs", f"{src},{tgt}", "--out", str(corpus))
    if not (vocab_dir / "vocab.json").is_file():
        xling("vocab", "--corpus", str(corpus), "--langs", f"{src},{tgt}", "--size", "8000", "--out", str(vocab_dir))
    vocab = Vocab.load(vocab_dir)
    fs_env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    sets = xling_config(corpus, vocab_dir, src, tgt)

    # the same test sentences for both
    test = out / f"test.{src}-{tgt}"
    test.mkdir(exist_ok=True)
    pair_file = corpus / f"test.{'-'.join(sorted((src, tgt)))}"
    test_src = head(Path(f"{pair_file}.{src}"), test / f"test.{src}", args.n_test)
    test_ref = head(Path(f"{pair_file}.{tgt}"), test / f"test.{tgt}", args.n_test)
    if len(test_src.read_text().splitlines()) != args.n_test:
        sys.exit(f"{pair_file}.{src}: fewer than --n-test={args.n_test} lines")

    bin_dir, test_bin = prepare_fairseq_data(out / f"fairseq_data.{src}-{tgt}", sets, vocab, src, tgt, test_src,
                                             test_ref, fs_env, fs_bin)
    from xling.config import load_config
    from xling.tasks.train import TrainConfig

    cfg = load_config(TrainConfig, MT_CONFIG, sets)
    if cfg.trainer.schedule != "inverse_sqrt" or cfg.trainer.grad_accum != 1:
        sys.exit(f"{MT_CONFIG}: the fairseq peer expects schedule inverse_sqrt and grad_accum 1")
    xling_max_tokens = cfg.data.max_tokens
    batching = matched_max_tokens(bin_dir.parent, src, tgt, xling_max_tokens)
    max_tokens = args.fairseq_max_tokens or batching["max_tokens"]

    # training: the same minutes
    ckpt = out / f"fairseq.{src}-{tgt}"
    fs_cmd = fairseq_train_cmd(fs_bin, bin_dir, ckpt, cfg, vocab, args.minutes, max_tokens)
    xrun = (ROOT / args.xling_run).resolve() if args.xling_run else out / f"xling.{src}-{tgt}"
    if args.xling_run:
        check_reusable(xrun, sets, args.minutes)
    if args.skip_train:
        for f in (ckpt / "checkpoint_last.pt", xrun / "model" / "config.json"):
            if not f.is_file():
                sys.exit(f"--skip-train: {f} missing")
    read = lambda f: json.loads(f.read_text()) if f.is_file() else {}  # noqa: E731
    fs_train = read(ckpt / "summary.json") if args.skip_train else train_fairseq(fs_cmd, ckpt, fs_env)
    # pipeline.train_for: a resumed run trains only what its budget has left (fairseq's
    # --stop-time-hours counts the time saved in checkpoint_last.pt the same way)
    x_train = read(xrun / "summary.json") if args.skip_train else train_for(MT_CONFIG, xrun, args.minutes, *sets)

    # decoding: alternate the systems, keep every timing
    quantized = [q for q in args.quantize.split(",") if q]
    runs = {"fairseq": [], "xling": [], **{system_name(q): [] for q in quantized}}
    for _ in range(args.repeats):
        runs["fairseq"].append(generate_fairseq(fs_bin, test_bin, ckpt, src, tgt, args, test, fs_env, vocab))
        for q in [None, *quantized]:
            runs[system_name(q)].append(generate_xling(xrun / "model", src, tgt, args, test_src, test, q))
    write_lines_atomic(test / f"fairseq_hyp.{tgt}", runs["fairseq"][-1]["hyps"])
    scores = {name: bleu(test / f"{name}_hyp.{tgt}", test_ref, tgt, test / f"bleu.{name}.json") for name in runs}

    results = {}
    for name, rs in runs.items():
        best = min(rs, key=lambda r: r["gen_s"])
        tr = fs_train if name == "fairseq" else x_train
        results[name] = {
            "train_min": (tr.get("train_s") or tr.get("elapsed_s") or 0) / 60,
            "updates": tr.get("updates", tr.get("steps")),
            "params": tr.get("params") if name == "fairseq" else best["params"],
            "bleu": scores[name]["bleu"], "chrf": scores[name]["chrf"], "signature": scores[name]["signature"],
            "gen_s": best["gen_s"], "sent_per_s": args.n_test / best["gen_s"],
            "tok_per_s": best["out_tokens"] / best["gen_s"], "e2e_s": min(r["wall_s"] for r in rs),
            "e2e_sent_per_s": args.n_test / min(r["wall_s"] for r in rs),
            "e2e_cpu_s": min(r["cpu_s"] for r in rs),
            "all_gen_s": [r["gen_s"] for r in rs], "all_e2e_s": [r["wall_s"] for r in rs],
            "decode_command": best["command"],
            **({"train_command": " ".join(fs_cmd)} if name == "fairseq" else
               {"train_run": str(xrun), "in_process_s": best["in_process_s"], "load_s": best["load_s"],
                "same_as_cli": all(r["same_as_cli"] for r in rs)}),
        }
    speedups = {name: {"sentences": results["fairseq"]["gen_s"] / r["gen_s"],  # sentences/s ratio
                       "tokens": r["tok_per_s"] / results["fairseq"]["tok_per_s"]}  # per output token
                for name, r in results.items() if name != "fairseq"}
    fs_env_versions = subprocess.run([str(fs_bin / "python"), "-c", "import torch, fairseq; print(f'torch "
                                      "{torch.__version__}, fairseq {fairseq.__version__}')"],
                                     capture_output=True, text=True).stdout.strip()
    meta = run_meta(threads=args.threads, fairseq_env=fs_env_versions, pair=args.pair, n_test=args.n_test,
                    beam=args.beam, batch_size=args.batch_size, minutes=args.minutes, fairseq_max_tokens=max_tokens,
                    xling_max_tokens=xling_max_tokens, batching=batching,
                    vocab=str(vocab_dir), speedup_generation=speedups["xling"]["sentences"],
                    speedup_per_token=speedups["xling"]["tokens"], speedups=speedups)
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(f"\n{args.pair}, {args.n_test} test verses, beam {args.beam}, batches of {args.batch_size}, "
          f"{args.threads} threads; {meta['machine']}")
    print("\n| system | train min (updates) | params | BLEU | chrF | generation s | sent/s | out tok/s "
          "| end-to-end s (CPU s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['train_min']:.1f} ({r['updates']}) | {(r['params'] or 0) / 1e6:.2f}M | {r['bleu']:.2f} | "
              f"{r['chrf']:.2f} | {r['gen_s']:.1f} | {r['sent_per_s']:.1f} | {r['tok_per_s']:.0f} | {r['e2e_s']:.1f} "
              f"({r['e2e_cpu_s']:.1f}) |")
    for name in results:
        if name != "fairseq":
            print(f"\n{name} / fairseq generation speed: {speedups[name]['sentences']:.2f}x in sentences/s, "
                  f"{speedups[name]['tokens']:.2f}x in output tokens/s (the two differ when the outputs' "
                  "lengths do)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
