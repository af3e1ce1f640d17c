"""Tiny fairseq `transformer` translation models, made with fairseq itself (issue 15).

Run with the fairseq SIDE venv's python (`make fairseq-venv`; `scripts/fairseq_env.sh` prints
its path), never with xling's: this script imports fairseq. It is the reference side of the
converter parity tests: every artifact below comes out of fairseq's own tools and code.

    $(scripts/fairseq_env.sh) tests/fairseq_ref/make_tiny.py --corpus CORPUS --out OUT

CORPUS is an xling corpus directory holding the en-fr pair (`xling corpus bible --langs en,fr
--pairs en --db tests/fixtures/bible_mini.db --out CORPUS`); all its en-fr pairs are pooled and
re-split: the last 50 are the test set, the 10 before them valid, the rest train.

For each variant, OUT/<variant>/ holds
    checkpoint.pt            fairseq-train's checkpoint_last.pt (a pickle: cfg, model, optimizer_history, ...)
    dict.en.txt dict.fr.txt  the dictionaries fairseq-preprocess wrote (same file twice when joined)
    spm.model spm.vocab      the SentencePiece model (shared by all variants)
    data-bin/                fairseq-preprocess output: dicts, {train,valid,test}.en-fr.{en,fr}.{bin,idx}
    test.en test.fr          the 50 raw test sentences (text, one a line)
    generate-beam1.txt       fairseq-generate on the test set, beam 1 / beam 5
    generate-beam5.txt       (--required-batch-size-multiple 1, --bpe sentencepiece)
    reference/*.npy          fairseq's model in eval mode on the first REF_SENTENCES test pairs:
        src_tokens (B,S) int64      left-padded source ids, each ending in </s> (fairseq's collater)
        src_lengths (B,)            int64
        prev_output_tokens (B,T)    right-padded decoder input: </s> then the target (teacher forcing)
        target (B,T)                int64, right-padded with <pad>=1
        encoder_out (B,S,C) float32 the encoder's final states (fairseq's (S,B,C), transposed)
        encoder_padding_mask (B,S)  bool, True at padding
        decoder_lprobs (B,T,V)      float32 log-softmax of the decoder's output
    variant.json             the variant's fairseq-train flags and the commands that were run
OUT/manifest.json lists the variants with the fairseq, torch and sentencepiece versions.

The models are random initialisations that fairseq-train trains for a few seconds (--updates,
default 600 updates of 512 tokens on ~45 sentence pairs). Untrained, or after a few updates, they
emit one piece 200 times (max length) for every sentence, with near-flat distributions: useless
for greedy / beam parity, where near-ties flip on float rounding. After 600 updates the outputs
differ per sentence and end with </s> (a few still reach the 200-token limit). The weights are
still far from any real model: these are format and numerics references, not translators.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

SRC, TGT = "en", "fr"
N_TEST, N_VALID = 50, 10
REF_SENTENCES = 4
SPM_VOCAB = 400

TINY = [
    "--arch", "transformer",
    "--encoder-layers", "2", "--decoder-layers", "2",
    "--encoder-embed-dim", "32", "--decoder-embed-dim", "32",
    "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64",
    "--encoder-attention-heads", "4", "--decoder-attention-heads", "4",
]  # fmt: skip

# name -> (joined dictionary?, extra fairseq-train flags)
VARIANTS: dict[str, tuple[bool, list[str]]] = {
    # (a) post-norm, sinusoidal positions, one dictionary, all embeddings shared
    "postnorm_shared": (True, ["--share-all-embeddings"]),
    # (b) pre-norm, learned positions, layernorm_embedding, separate dictionaries and
    #     embeddings, untied output projection, non-default max positions
    "prenorm_learned": (
        False,
        [
            "--encoder-normalize-before", "--decoder-normalize-before",
            "--encoder-learned-pos", "--decoder-learned-pos",
            "--layernorm-embedding",
            "--max-source-positions", "256", "--max-target-positions", "256",
        ],
    ),  # fmt: skip
    # (c) no sqrt(d) embedding scaling; also separate dictionaries with the decoder's input
    #     and output embeddings tied, and GELU (exact erf) instead of ReLU
    "noscale": (
        False,
        ["--no-scale-embedding", "--share-decoder-input-output-embed", "--activation-fn", "gelu"],
    ),
}

TRAIN = [
    "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", "0.01",
    "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "50",
    "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
    "--dropout", "0.1", "--max-tokens", "512", "--seed", "1", "--cpu", "--num-workers", "0",
    "--no-epoch-checkpoints", "--disable-validation", "--log-format", "simple",
    "--log-interval", "10", "--no-progress-bar",
]  # fmt: skip


def tool(name: str) -> str:
    """A fairseq console script of the venv running this file."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        sys.exit(f"make_tiny.py: {path} not found: run this with the fairseq side venv's python")
    return str(path)


def run(cmd: list[str], log: list[list[str]], stdout: Path | None = None) -> None:
    log.append(cmd)
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = open(stdout, "w", encoding="utf-8") if stdout else subprocess.PIPE
    try:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, text=True, env=env)
    finally:
        if stdout:
            out.close()
    if proc.returncode != 0:
        sys.exit(f"make_tiny.py: command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-4000:]}")


def read_pairs(corpus: Path) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for split in ("train", "valid", "test"):
        src = corpus / f"{split}.{SRC}-{TGT}.{SRC}"
        tgt = corpus / f"{split}.{SRC}-{TGT}.{TGT}"
        if src.exists():
            a = src.read_text(encoding="utf-8").splitlines()
            b = tgt.read_text(encoding="utf-8").splitlines()
            assert len(a) == len(b), f"{src}: {len(a)} lines, {tgt}: {len(b)}"
            pairs += [(x.strip(), y.strip()) for x, y in zip(a, b) if x.strip() and y.strip()]
    if len(pairs) < N_TEST + N_VALID + 20:
        sys.exit(f"make_tiny.py: {corpus}: {len(pairs)} {SRC}-{TGT} pairs, need {N_TEST + N_VALID + 20}")
    return pairs


def make_text(corpus: Path, work: Path) -> Path:
    """SentencePiece model + piece-encoded train/valid/test files under work/; returns spm.model."""
    import sentencepiece as spm

    pairs = read_pairs(corpus)
    splits = {
        "train": pairs[: -(N_TEST + N_VALID)],
        "valid": pairs[-(N_TEST + N_VALID) : -N_TEST],
        "test": pairs[-N_TEST:],
    }
    mono = []  # every en and fr line of the corpus (a few hundred) trains the SentencePiece model
    for path in sorted(corpus.glob(f"*.{SRC}")) + sorted(corpus.glob(f"*.{TGT}")):
        mono += [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    (work / "spm.txt").write_text("\n".join(mono) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(work / "spm.txt"), model_prefix=str(work / "spm"), vocab_size=SPM_VOCAB,
        character_coverage=1.0, model_type="unigram", hard_vocab_limit=False, num_threads=1,
        minloglevel=2,
    )  # fmt: skip
    sp = spm.SentencePieceProcessor(model_file=str(work / "spm.model"))
    for split, rows in splits.items():
        for i, lang in enumerate((SRC, TGT)):
            lines = [r[i] for r in rows]
            (work / f"{split}.raw.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
            pieces = [" ".join(sp.encode(line, out_type=str)) for line in lines]
            (work / f"{split}.{lang}").write_text("\n".join(pieces) + "\n", encoding="utf-8")
    return work / "spm.model"


def reference_tensors(vdir: Path, ref: Path) -> dict:
    """Encoder states and decoder log-probs of fairseq's model (eval mode) on a few test pairs."""
    import numpy as np
    import torch
    from fairseq import checkpoint_utils

    torch.set_num_threads(1)
    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(vdir / "checkpoint.pt")], arg_overrides={"data": str(vdir / "data-bin")}
    )
    model = models[0].eval()
    task.load_dataset("test")
    ds = task.dataset("test")
    batch = ds.collater([ds[i] for i in range(REF_SENTENCES)])
    order = batch["id"].argsort()  # the collater sorts by source length: back to test-set order
    net = batch["net_input"]
    src_tokens, src_lengths = net["src_tokens"][order], net["src_lengths"][order]
    prev, target = net["prev_output_tokens"][order], batch["target"][order]
    with torch.no_grad():
        enc = model.encoder(src_tokens, src_lengths=src_lengths)
        out = model.decoder(prev, encoder_out=enc, src_lengths=src_lengths)
        lprobs = model.get_normalized_probs(out, log_probs=True)
    arrays = {
        "src_tokens": src_tokens.numpy(),
        "src_lengths": src_lengths.numpy(),
        "prev_output_tokens": prev.numpy(),
        "target": target.numpy(),
        "encoder_out": enc["encoder_out"][0].transpose(0, 1).float().numpy(),
        "encoder_padding_mask": enc["encoder_padding_mask"][0].numpy(),
        "decoder_lprobs": lprobs.float().numpy(),
    }
    ref.mkdir()
    for name, arr in arrays.items():
        np.save(ref / f"{name}.npy", arr)
    return {name: list(arr.shape) for name, arr in arrays.items()}


def portable(arg: str, out: Path, work: Path) -> str:
    """A command argument with the output and scratch directories written as $OUT / $WORK."""
    return arg.replace(str(work), "$WORK").replace(str(out), "$OUT")


def make_variant(name: str, work: Path, spm_model: Path, out: Path, updates: int) -> dict:
    joined, flags = VARIANTS[name]
    vdir = out / name
    vdir.mkdir()
    log: list[list[str]] = []
    bin_dir = vdir / "data-bin"
    pre = [
        tool("fairseq-preprocess"), "--source-lang", SRC, "--target-lang", TGT,
        "--trainpref", str(work / "train"), "--validpref", str(work / "valid"),
        "--testpref", str(work / "test"), "--destdir", str(bin_dir), "--workers", "1",
    ]  # fmt: skip
    run(pre + (["--joined-dictionary"] if joined else []), log)
    ckpt_dir = work / f"ckpt-{name}"
    train_flags = TINY + flags + TRAIN + ["--max-update", str(updates)]
    run([tool("fairseq-train"), str(bin_dir), "--save-dir", str(ckpt_dir)] + train_flags, log)
    shutil.copyfile(ckpt_dir / "checkpoint_last.pt", vdir / "checkpoint.pt")
    for lang in (SRC, TGT):
        shutil.copyfile(bin_dir / f"dict.{lang}.txt", vdir / f"dict.{lang}.txt")
        shutil.copyfile(work / f"test.raw.{lang}", vdir / f"test.{lang}")
    shutil.copyfile(spm_model, vdir / "spm.model")
    shutil.copyfile(spm_model.with_suffix(".vocab"), vdir / "spm.vocab")
    for beam in (1, 5):
        gen = [
            tool("fairseq-generate"), str(bin_dir), "--path", str(vdir / "checkpoint.pt"),
            "--gen-subset", "test", "--beam", str(beam), "--nbest", "1", "--batch-size", "16",
            "--required-batch-size-multiple", "1", "--bpe", "sentencepiece",
            "--sentencepiece-model", str(vdir / "spm.model"), "--cpu", "--seed", "1",
        ]  # fmt: skip
        run(gen, log, stdout=vdir / f"generate-beam{beam}.txt")
    shapes = reference_tensors(vdir, vdir / "reference")
    record = {
        "variant": name,
        "joined_dictionary": joined,
        "train_flags": train_flags,
        "reference_shapes": shapes,
        "reference_sentences": REF_SENTENCES,
        "commands": [[Path(c[0]).name] + [portable(a, out, work) for a in c[1:]] for c in log],
    }
    (vdir / "variant.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return record


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, required=True, help="xling corpus dir with the en-fr pair")
    p.add_argument("--out", type=Path, required=True, help="output dir (must not exist)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ", ".join(VARIANTS))
    p.add_argument("--updates", type=int, default=600, help="fairseq-train updates (default 600)")
    args = p.parse_args(argv)
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        sys.exit(f"make_tiny.py: unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    if args.out.exists():
        sys.exit(f"make_tiny.py: {args.out} exists; give a new directory")

    # fairseq 0.12 checkpoints hold an argparse.Namespace: torch >= 2.6 refuses them by default
    os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    import fairseq
    import sentencepiece
    import torch

    args.out.mkdir(parents=True)
    work = args.out / "_work"
    work.mkdir()
    spm_model = make_text(args.corpus, work)
    records = [make_variant(name, work, spm_model, args.out, args.updates) for name in names]
    shutil.rmtree(work)
    manifest = {
        "fairseq": fairseq.__version__,
        "torch": torch.__version__,
        "sentencepiece": sentencepiece.__version__,
        "languages": [SRC, TGT],
        "test_sentences": N_TEST,
        "updates": args.updates,
        "updates_note": "random init + this many fairseq-train updates (Adam, lr 0.01, 512-token batches)",
        "common_flags": TINY + TRAIN + ["--max-update", str(args.updates)],
        "variants": {r["variant"]: {"joined_dictionary": VARIANTS[r["variant"]][0], "flags": VARIANTS[r["variant"]][1]}
                     for r in records},
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
